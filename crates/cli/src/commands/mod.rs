//! One module per subcommand: each turns its arguments into the library's types, calls it and
//! prints what it returns. What several share (failures, pictures, the HTML report) is here.

mod audit;
mod eval;
mod explain;
mod export;
mod features;
mod models;
mod predict;
mod report;
mod serve;
mod study;
mod train;

use crate::args::{Cli, Command};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What every command gets besides its own arguments.
#[derive(Clone, Copy)]
pub struct Global {
    pub threads: usize,
    pub quiet: bool,
}

pub fn run(cli: Cli) -> Result<()> {
    let g = Global { threads: cli.threads.unwrap_or_else(retrain::default_threads), quiet: cli.quiet };
    match cli.command {
        Command::Train(a) => train::run(a, g),
        Command::Features(a) => features::run(a, g),
        Command::Predict(a) => predict::run(a, g),
        Command::Explain(a) => explain::run(a, g),
        Command::Report(a) => report::run(a, g),
        Command::Study(a) => study::run(a, g),
        Command::Serve(a) => serve::run(a, g),
        Command::Eval(a) => eval::run(a, g),
        Command::Audit(a) => audit::run(a, g),
        Command::Export { target } => export::run(target, g),
        Command::Models { action, format } => models::run(action, format, g),
    }
}

/// Warns of files skipped inside folders; fails on files named on the command line that could
/// not be read, or when no image was found at all.
fn failures(fails: &[retrain::predict::Failure], found: usize, inputs: &[PathBuf], quiet: bool) -> Result<()> {
    for f in fails.iter().filter(|f| !f.explicit && !quiet) {
        eprintln!("warning: skipped {}: {}", f.path.display(), f.reason);
    }
    let explicit: Vec<String> =
        fails.iter().filter(|f| f.explicit).map(|f| format!("{}: {}", f.path.display(), f.reason)).collect();
    if !explicit.is_empty() {
        bail!("{}", explicit.join("; "));
    }
    if found == 0 {
        bail!("no images found in {}", inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

fn create_folder(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))
}

/// Creates the folder a file goes into, when it names one.
fn create_parent(file: &Path) -> Result<()> {
    match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => create_folder(dir),
        None => Ok(()),
    }
}

/// Encodes and writes a picture whole.
fn write_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot encode", path.display()))?;
    Ok(retrain::outputs::write_file(path, &bytes)?)
}

/// Draws an HTML report with `build` and writes it whole; returns its figures and a line
/// saying where it went.
fn write_report(
    out: &Path,
    limits: retrain::Limits,
    g: Global,
    build: impl FnOnce(
        retrain_report::Options,
        &indicatif::ProgressBar,
    ) -> retrain_report::Result<(String, retrain_report::Summary)>,
) -> Result<(retrain_report::Summary, String)> {
    let quiet = g.quiet;
    create_parent(out)?;
    let opts = retrain_report::Options { threads: g.threads, limits, ..Default::default() };
    let bar = retrain::progress_bar(0, "report", quiet);
    let (page, summary) = build(opts, &bar)?;
    bar.finish_and_clear();
    retrain::outputs::write_file(out, page.as_bytes())?;
    for s in summary.skipped.iter().filter(|_| !quiet) {
        eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
    }
    let [lo, hi] = summary.accuracy_interval;
    let scores = match &summary.multi_label {
        Some(m) => format!(
            "mAP {:.4}, macro F1 {:.4}, every label right {:.4} (95% interval {lo:.3}–{hi:.3})",
            m.metrics.mean_average_precision, m.metrics.macro_f1, summary.accuracy
        ),
        None => format!("accuracy {:.4} (95% interval {lo:.3}–{hi:.3})", summary.accuracy),
    };
    let line = format!(
        "{}: {scores} on {} photos; wrote {} ({} KB) in {:.1}s",
        summary.data.display(),
        summary.images,
        out.display(),
        page.len() / 1024,
        summary.seconds
    );
    Ok((summary, line))
}

/// Fine-tuning allocates and frees activation-sized buffers (megabytes) in every layer of every
/// step. glibc's malloc serves those from fresh mmaps and trims the heap after them, so each is
/// page-faulted and zeroed anew: a sixth of a fine-tuning run. Keeping freed memory for reuse
/// costs about 0.6 GB more peak memory there; feature extraction keeps glibc's defaults.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds and is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
