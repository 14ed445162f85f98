//! Pixels to features: the frozen backbone run in ONNX Runtime, and an on-disk cache of
//! what it computed, keyed by backbone and file content.

mod cache;
mod calibrate;
mod extract;
mod runtime;

pub use cache::{content_hash, FeatureCache};
pub use calibrate::calibrate;
pub use extract::{extract, Extracted, Sessions};
pub use runtime::{
    runtime_check, runtime_failed, runtime_library, runtime_version, Outputs, Session, ORT_MIN_MINOR, ORT_VERSION,
};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(
        "ONNX Runtime not found; retrain looked for its library in:\n    {}\n  Install it into the environment retrain runs from: `{python} -m pip install onnxruntime=={ver}`\n  (or set ORT_DYLIB_PATH to a libonnxruntime file of version 1.{minor} or newer; in a retrain checkout, `bash setup.sh`)",
        searched.join("\n    "),
        ver = ORT_VERSION,
        minor = ORT_MIN_MINOR
    )]
    RuntimeMissing { searched: Vec<String>, python: String },
    #[error("{0}")]
    RuntimeUnavailable(String),
    #[error("{what}: ONNX Runtime failed: {reason}")]
    Ort { what: String, reason: String },
    #[error("{path}: feature cache: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
}
