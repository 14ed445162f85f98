//! Files: the first stage of the flow. Finds the photos of a labelled folder ([`walk`]),
//! assigns them to classes and a train/validation split ([`dataset`]), and finds photos
//! whose content appears more than once ([`duplicates`]): under two classes (a label
//! conflict) or in both training and validation (a leak).

pub mod dataset;
pub mod duplicates;
pub mod walk;

pub use dataset::{class_folders, few_shot, scan, stratified_folds, Dataset, Sample};
pub use duplicates::{Conflict, Leak};
pub use walk::{files_below, Walk};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A file or folder that was not used, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("--val-fraction must be between 0 and 1 (exclusive), got {0}")]
    ValFraction(f64),
}

pub type Result<T, E = FilesError> = std::result::Result<T, E>;

fn data_err(path: &std::path::Path, reason: impl Into<String>) -> FilesError {
    FilesError::Data { path: path.to_path_buf(), reason: reason.into() }
}

/// Writes `bytes` to `path` so that no reader ever sees half of it: into a uniquely named
/// hidden temporary file in the same folder (so that walks pass it over and two writers
/// never share it), then renamed over `path`. With `durable`, the data reaches the disk
/// before the rename, so a power cut leaves the old file or the new one; the feature
/// cache skips that (its entries carry a checksum instead), as thousands of syncs cost
/// more than recomputing a torn entry.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut b = tempfile::Builder::new();
    b.prefix(".retrain-").suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile's default (0600) would make a model or report unreadable to others.
        b.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut f = b.tempfile_in(dir)?;
    f.write_all(bytes)?;
    if durable {
        f.as_file().sync_data()?;
    }
    f.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("model.onnx");
        super::write_atomic(&p, b"first", true).unwrap();
        super::write_atomic(&p, b"second", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        }
        let e = super::write_atomic(&d.path().join("no/such/dir/x"), b"", false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
