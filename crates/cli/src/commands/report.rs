//! `retrain report`: the HTML page on a model and a labelled folder.

use super::{write_report, Global};
use crate::args::{Format, ReportArgs};
use anyhow::Result;

pub fn run(a: ReportArgs, g: Global) -> Result<()> {
    let labels = a.input.labels.source();
    let set = retrain::eval::Labelled::read(&a.data_dir, labels.as_ref(), &a.model, a.input.keep_duplicates)?;
    if let Some(src) = &labels {
        retrain::outputs::warn_unlisted(&set.unlisted, &a.data_dir, &src.file, g.quiet);
    }
    let (summary, line) = write_report(&a.out, a.input.pixels.limits(), g, |opts, bar| {
        retrain_report::build(&a.model, set, None, opts, bar)
    })?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        _ if !g.quiet => println!("{line}"),
        _ => {}
    }
    Ok(())
}
