//! `retrain eval`.

use super::Global;
use crate::args::{EvalArgs, Format};
use anyhow::Result;
use retrain_files::names::shown;

pub fn run(a: EvalArgs, g: Global) -> Result<()> {
    let mut c = retrain::model::Classifier::open(&a.model, g.threads)?;
    c.limits = a.input.pixels.limits();
    let bar = retrain::progress_bar(0, "eval", g.quiet);
    let threshold = c.threshold(a.reject.reject)?;
    let labels = a.input.labels.source();
    let ev = retrain::eval::evaluate(
        &mut c,
        &a.data_dir,
        labels.as_ref(),
        a.input.keep_duplicates,
        threshold,
        a.ood.as_deref(),
        &bar,
    )?;
    bar.finish_and_clear();
    if let Some(src) = &labels {
        retrain::outputs::warn_unlisted(&ev.unlisted, &a.data_dir, &src.file, g.quiet);
    }
    if let Some(line) = retrain::dataset::duplicates::describe_conflicts(&ev.conflicts).filter(|_| !g.quiet) {
        let what = if ev.duplicates_kept {
            "kept (--keep-duplicates)"
        } else {
            "left out of the metrics; --format json lists them under `conflicts`"
        };
        eprintln!("warning: {line}: {what}");
    }
    for s in ev.skipped.iter().filter(|_| !g.quiet) {
        eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&ev)?),
        Format::Csv => match (&ev.metrics, &ev.multi_label) {
            (Some(m), _) => print!("{}", m.to_csv()),
            (None, Some(m)) => print!("{}", m.to_csv()),
            (None, None) => {}
        },
        Format::Text => {
            println!("{} images in {}", ev.images, shown(&ev.data));
            match (&ev.metrics, &ev.multi_label) {
                (Some(m), _) => print!("{}", m.to_text()),
                (None, Some(m)) => print!("{}", m.to_text()),
                (None, None) => {}
            }
            if let Some(o) = &ev.open_set {
                print!("{}", o.to_text());
            }
        }
    }
    Ok(())
}
