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
