//! `retrain train`.

use super::{keep_freed_memory, write_report, Global};
use crate::args::TrainArgs;
use anyhow::{bail, Result};
use retrain::spec::RunFile;
use retrain::{BackboneSpec, RunSettings, Strategy, TrainReport, TrainSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub fn run(a: TrainArgs, g: Global) -> Result<()> {
    let settings = RunSettings { threads: g.threads, quiet: g.quiet, ..RunSettings::default() };
    let (spec, mut settings) = match (&a.resume, &a.data_dir) {
        (Some(dir), _) => RunFile::resume(dir, settings)?,
        (None, Some(data_dir)) => {
            let spec = TrainSpec {
                data: retrain::DataSpec { task: a.task.into(), ..a.input.data(data_dir, &a.split) },
                backbone: backbone(&a)?,
                recipe: a.recipe(),
                out: a.out.clone(),
            };
            (spec, RunSettings { cache: a.cache.root(), run_dir: a.run_dir.clone(), ..settings })
        }
        (None, None) => bail!("give DATA_DIR, or --resume RUN_DIR"),
    };
    if spec.recipe.strategy != Strategy::Linear {
        keep_freed_memory();
        settings.stop = Some(stop_on_ctrl_c()?);
    }
    let r = retrain::train::train(&spec, &settings)?;
    if let Some(path) = &a.report {
        retrain::outputs::write_file(path, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    if !g.quiet {
        print_summary(&r);
    }
    if let Some(page) = &a.html {
        let (_, line) =
            write_report(page, spec.data.limits(), g, |opts, bar| retrain_report::build_after_training(&r, opts, bar))?;
        if !g.quiet {
            println!("{line}");
        }
    }
    Ok(())
}

/// The backbone spec: `--model`, `--weights`, and what only train has.
fn backbone(a: &TrainArgs) -> Result<BackboneSpec> {
    let mut b = a.backbone.spec()?;
    b.candidates = a.candidates.clone().unwrap_or_default();
    b.cut = a.cut;
    b.precision = a.precision.precision.into();
    Ok(b)
}

fn print_summary(r: &TrainReport) {
    if let Some(sel) = &r.model_selection {
        println!("--model auto: {}-fold cross-validation on the {} training photos", sel.folds, sel.train_images);
        for c in &sel.candidates {
            println!(
                "  {:<20} accuracy {:.3} ± {:.3}  {:>6.0} images/s  {:>6.1} MB{}",
                c.model,
                c.cv_accuracy,
                c.cv_sd,
                c.images_per_second,
                c.model_mb,
                if c.model == sel.chosen { "  <- chosen" } else { "" }
            );
        }
        println!("chose {}: {}", sel.chosen, sel.reason);
    }
    println!(
        "{}: {} classes, {} train / {} val images ({} skipped{}), features {} computed / {} cached",
        r.backbone,
        r.class_names.len(),
        r.train_images,
        r.val_images,
        r.skipped.len(),
        duplicates_note(r),
        r.features_computed,
        r.features_cached
    );
    // Several labels: mAP and F1 at the tuned thresholds; `val_accuracy` is the subset accuracy.
    let scored = match &r.multi_label {
        Some(m) => format!(
            "val mAP {:.4}, macro F1 {:.4}, micro F1 {:.4}, subset accuracy {:.4}",
            m.metrics.mean_average_precision, m.metrics.macro_f1, m.metrics.micro_f1, r.val_accuracy
        ),
        None => format!("val accuracy {:.4}", r.val_accuracy),
    };
    match &r.finetune {
        Some(f) => println!(
            "{scored} (train {:.4}{}), best epoch {} of {} ({}: {} block(s) from {}); checkpoints in {}",
            r.train_accuracy,
            if f.best_epoch > 0 { ", augmented" } else { ", linear head" },
            f.best_epoch,
            f.epochs_run,
            match f.strategy {
                Strategy::Scratch => "from scratch",
                s => s.described(),
            },
            f.unfrozen_blocks,
            f.first_trained_block,
            f.run_dir.display()
        ),
        None => println!("{scored} (train {:.4}), best step {} of {}", r.train_accuracy, r.best_step, r.steps_run),
    }
    if r.multi_label.is_some() {
        println!("labels at per-class thresholds tuned for F1 on the training split (in the model file)");
    }
    println!("wrote {} in {:.2}s", r.model.display(), r.timings.total);
}

/// ", 4 label conflicts left out" for the summary line, when there were any.
fn duplicates_note(r: &TrainReport) -> String {
    let verb = if r.duplicates_kept { "kept" } else { "left out" };
    let mut parts = Vec::new();
    if !r.conflicts.is_empty() {
        parts.push(format!("{} label conflict(s) {verb}", r.conflicts.len()));
    }
    if !r.leaks.is_empty() {
        parts.push(format!("{} train/val leak(s) {verb}", r.leaks.len()));
    }
    parts.iter().map(|p| format!(", {p}")).collect()
}

/// Ctrl-C once: finish the current batch, checkpoint, exit. Twice: exit at once.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this batch (Ctrl-C again to quit without a checkpoint)");
    })?;
    Ok(stop)
}
