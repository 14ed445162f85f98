//! Everything a run writes or says on the way: files the user asked for (whole or not at all),
//! the early check that they can be written, and warnings.

use crate::{dataset, Error, Result};
use std::path::Path;

/// Writes a file the user asked for (a model, a report, a run's options) whole or not at all.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    retrain_files::write_atomic(path, bytes, true).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

/// Writes a model file, sealed with its checksum.
pub fn write_model(model: &retrain_onnx::ModelProto, out: &Path) -> Result<()> {
    write_file(out, &retrain_onnx::encode_sealed(model))
}

/// Fails early, before minutes of work, if `out` cannot be written where asked.
pub fn check_writable(out: &Path) -> Result<()> {
    let target = retrain_files::link_target(out).map_err(|source| Error::Write { path: out.to_path_buf(), source })?;
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    retrain_files::check_writable(dir).map_err(|source| Error::Write { path: out.to_path_buf(), source })
}

pub fn warn(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("warning: {msg}");
    }
}

/// One warning line each for label conflicts and leaks, with the first example.
pub fn warn_duplicates(ds: &dataset::Dataset, kept: bool, quiet: bool) {
    let action = |what: &str| if kept { "kept (--keep-duplicates)" } else { what }.to_string();
    if let Some(line) = dataset::duplicates::describe_conflicts(&ds.conflicts) {
        let what = action("left out of training and validation");
        warn(quiet, &format!("{line}: {what}; the report lists them under `conflicts`"));
    }
    if let Some(line) = dataset::duplicates::describe_leaks(&ds.leaks) {
        let what = action("left out of the validation score");
        warn(quiet, &format!("{line}: {what}; the report lists them under `leaks`"));
    }
}

/// With a label file, the files of the data folder `dir` it does not list: they are left out,
/// and said (a few named) so that a typo in the file does not go unseen.
pub fn warn_unlisted(unlisted: &[std::path::PathBuf], dir: &Path, file: &Path, quiet: bool) {
    if unlisted.is_empty() {
        return;
    }
    let shown: Vec<String> = unlisted.iter().take(3).map(|p| retrain_files::names::shown(p).into_owned()).collect();
    let more = unlisted.len() - shown.len();
    let one = unlisted.len() == 1;
    warn(
        quiet,
        &format!(
            "{} file{} in {} {} not listed in {} and left out: {}{}",
            unlisted.len(),
            if one { "" } else { "s" },
            retrain_files::names::shown(dir),
            if one { "is" } else { "are" },
            retrain_files::names::shown(file),
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
    );
}
