//! Pixels to features: the frozen backbone run in ONNX Runtime, and an on-disk cache of
//! what it computed, keyed by backbone and file content.

mod cache;
mod calibrate;
mod extract;
mod runtime;

pub use cache::{content_hash, FeatureCache};
pub use calibrate::calibrate;
pub use extract::{extract, Extracted, Sessions};
pub use runtime::{runtime_library, Outputs, Session};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("ONNX Runtime library not found (searched: {searched}).\n  Install it with `python3 -m pip install onnxruntime==1.31.1` (or any version >= 1.31) and set\n  ORT_DYLIB_PATH to its capi/libonnxruntime.so.* file, or run `bash setup.sh` in the retrain checkout")]
    RuntimeMissing { searched: String },
    #[error("{0}")]
    RuntimeUnavailable(String),
    #[error("{what}: ONNX Runtime failed: {reason}")]
    Ort { what: String, reason: String },
    #[error("{path}: feature cache: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
}
