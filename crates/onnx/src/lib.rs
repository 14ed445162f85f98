//! Writing and reading ONNX models: the protobuf messages and a small graph builder.
//!
//! retrain's model format is one `.onnx` file; this crate is the only place that knows its bytes.

mod builder;
pub mod proto;
pub mod quantize;
mod surgery;

pub use builder::{Attr, Dim, GraphBuilder};
pub use proto::ModelProto;
pub use surgery::{expose, fold_batchnorm, initializer_f32, prune, set_initializer_f32, truncate};

use prost::Message;
use std::path::{Path, PathBuf};

/// The opset retrain's graphs are written against (ONNX Runtime ≥ 1.15 runs it).
pub const OPSET: i64 = 17;
/// IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an ONNX model ({source})")]
    Decode { path: PathBuf, source: prost::DecodeError },
}

/// Serialises a model to bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Decodes a model from bytes; `path` only names the source in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<ModelProto, OnnxError> {
    ModelProto::decode(bytes).map_err(|source| OnnxError::Decode { path: path.to_path_buf(), source })
}

/// Reads and decodes an `.onnx` file.
pub fn read(path: &Path) -> Result<ModelProto, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Read { path: path.to_path_buf(), source })?;
    decode(&bytes, path)
}

/// Writes a model atomically: a temporary file beside the target, then a rename, so an
/// interrupted write never leaves a half model under the user's name.
pub fn write(model: &ModelProto, path: &Path) -> Result<(), OnnxError> {
    let err = |source| OnnxError::Write { path: path.to_path_buf(), source };
    let tmp = path.with_extension("onnx.partial");
    std::fs::write(&tmp, encode(model)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// The value of a `metadata_props` entry.
pub fn metadata<'a>(model: &'a ModelProto, key: &str) -> Option<&'a str> {
    model.metadata_props.iter().find(|p| p.key == key).map(|p| p.value.as_str())
}
