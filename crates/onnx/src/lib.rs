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

/// The metadata key of a model file's checksum.
pub const CHECKSUM_KEY: &str = "retrain.checksum";

/// How a checksum entry is encoded inside the file: the key field, then the value field's
/// tag and length (64 hex digits), then the digits.
fn checksum_marker() -> Vec<u8> {
    let mut m = vec![0x0a, CHECKSUM_KEY.len() as u8];
    m.extend_from_slice(CHECKSUM_KEY.as_bytes());
    m.extend_from_slice(&[0x12, 64]);
    m
}

/// Encodes `model` with a BLAKE3 checksum of the whole file in its metadata: the digits are
/// computed over the encoded file with the digits themselves as zeros, then written in place
/// (same length, so the encoding stays valid). Graph, weights and metadata are all covered.
pub fn encode_sealed(model: &ModelProto) -> Vec<u8> {
    let mut m = model.clone();
    m.metadata_props.retain(|p| p.key != CHECKSUM_KEY);
    m.metadata_props.push(proto::StringStringEntryProto { key: CHECKSUM_KEY.into(), value: "0".repeat(64) });
    let mut bytes = encode(&m);
    if let Some(at) = checksum_at(&bytes) {
        let digest = sealed_digest(&bytes, at);
        bytes[at..at + 64].copy_from_slice(digest.as_bytes());
    }
    bytes
}

/// Where the checksum's 64 digits are in an encoded file, if it has one.
fn checksum_at(bytes: &[u8]) -> Option<usize> {
    let marker = checksum_marker();
    let at = bytes.windows(marker.len()).rposition(|w| w == marker.as_slice())? + marker.len();
    (at + 64 <= bytes.len()).then_some(at)
}

fn sealed_digest(bytes: &[u8], at: usize) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&bytes[..at]);
    h.update(&[b'0'; 64]);
    h.update(&bytes[at + 64..]);
    h.finalize().to_hex().to_string()
}

/// Checks the checksum [`encode_sealed`] wrote: `Ok(true)` when it matches, `Ok(false)` when
/// the file has none (written elsewhere, or by an older retrain), and `Err` with both digests
/// when the file changed after it was written.
pub fn verify_sealed(bytes: &[u8]) -> Result<bool, (String, String)> {
    let Some(at) = checksum_at(bytes) else { return Ok(false) };
    let stored = String::from_utf8_lossy(&bytes[at..at + 64]).into_owned();
    let actual = sealed_digest(bytes, at);
    if stored == actual {
        Ok(true)
    } else {
        Err((stored, actual))
    }
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

/// Writes a model whole or not at all (see [`retrain_files::write_atomic`]).
pub fn write(model: &ModelProto, path: &Path) -> Result<(), OnnxError> {
    retrain_files::write_atomic(path, &encode(model), true)
        .map_err(|source| OnnxError::Write { path: path.to_path_buf(), source })
}

/// The value of a `metadata_props` entry.
pub fn metadata<'a>(model: &'a ModelProto, key: &str) -> Option<&'a str> {
    model.metadata_props.iter().find(|p| p.key == key).map(|p| p.value.as_str())
}
