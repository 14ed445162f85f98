//! Files: the first stage of the flow. Finds the photos of a labelled folder ([`walk`]),
//! assigns them to classes and a train/validation split ([`dataset`]), and finds photos
//! whose content appears more than once ([`duplicates`]): under two classes (a label
//! conflict) or in both training and validation (a leak).

pub mod dataset;
pub mod duplicates;
pub mod label_file;
pub mod names;
pub mod walk;

pub use dataset::{class_folders, few_shot, scan, scan_labels, stratified_folds, Dataset, Sample};
pub use duplicates::{Conflict, Leak};
pub use label_file::LabelSource;
pub use walk::{files_below, Walk};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A file or folder that was not used, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    #[serde(with = "names::json")]
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{}: {reason}", names::shown(path))]
    Data { path: PathBuf, reason: String },
    #[error("--val-fraction must be between 0 and 1 (exclusive), got {0}")]
    ValFraction(f64),
}

pub type Result<T, E = FilesError> = std::result::Result<T, E>;

fn data_err(path: &std::path::Path, reason: impl Into<String>) -> FilesError {
    FilesError::Data { path: path.to_path_buf(), reason: reason.into() }
}

/// How [`write_atomic`]'s temporary files are named: hidden, so walks pass them over.
const TEMP_PREFIX: &str = ".retrain-";
const TEMP_SUFFIX: &str = ".partial";

/// Whether `name` is one of [`write_atomic`]'s temporary files (a killed writer's leftover,
/// or a live writer's file about to be renamed).
pub fn is_temporary(name: &std::ffi::OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.starts_with(TEMP_PREFIX.as_bytes()) && b.ends_with(TEMP_SUFFIX.as_bytes())
}

/// Whether [`write_atomic`] can write in `dir`: it makes one of its uniquely named temporary
/// files there and removes it (so any number of processes can ask at once, and nothing of
/// anyone else's is touched).
pub fn check_writable(dir: &std::path::Path) -> std::io::Result<()> {
    tempfile::Builder::new().prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX).tempfile_in(dir)?.close()
}

/// Writes `bytes` to `path` so that no reader ever sees half of it: into a uniquely named
/// hidden temporary file in the same folder (so that walks pass it over and two writers
/// never share it), then renamed over `path`. With `durable`, the data reaches the disk
/// before the rename, so a power cut leaves the old file or the new one; the feature
/// cache skips that (its entries carry a checksum instead), as thousands of syncs cost
/// more than recomputing a torn entry.
///
/// What `path` names is kept as the user made it: a symbolic link is written through (its
/// target is replaced, the link stays), an existing file keeps its permissions, and anything
/// that is not a regular file (a FIFO, a device, a folder) is refused, never replaced.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let target = link_target(path)?;
    let existing = match std::fs::metadata(&target) {
        Ok(m) if m.is_file() => Some(m.permissions()),
        Ok(m) => {
            let what = if m.is_dir() { "a folder" } else { "not a regular file (a pipe, socket or device)" };
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is {what}: retrain writes only regular files and leaves it as it is", target.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut b = tempfile::Builder::new();
    b.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile's default (0600) would make a model or report unreadable to others.
        b.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut f = b.tempfile_in(dir)?;
    f.write_all(bytes)?;
    if let Some(p) = existing {
        f.as_file().set_permissions(p)?;
    }
    if durable {
        f.as_file().sync_data()?;
    }
    f.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

/// Where a chain of symbolic links at `path` ends (`path` itself when it is no link); the
/// end need not exist yet. Relative targets are read from the link's folder, as the kernel does.
pub fn link_target(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: too many levels of links", path.display())))
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

    #[cfg(unix)]
    #[test]
    fn links_are_written_through_modes_kept_and_special_files_refused() {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("releases")).unwrap();
        let release = d.path().join("releases/v1.onnx");
        std::fs::write(&release, b"v1").unwrap();
        std::fs::set_permissions(&release, std::fs::Permissions::from_mode(0o600)).unwrap();
        let current = d.path().join("current.onnx");
        std::os::unix::fs::symlink("releases/v1.onnx", &current).unwrap();
        super::write_atomic(&current, b"v2", true).unwrap();
        assert!(std::fs::symlink_metadata(&current).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&release).unwrap(), b"v2");
        assert_eq!(std::fs::metadata(&release).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(d.path().join("releases")).unwrap().count(), 1);
        let fifo = d.path().join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = super::write_atomic(&fifo, b"x", false).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        let e = super::write_atomic(d.path(), b"x", false).unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");
    }
}
