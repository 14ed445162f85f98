#![allow(dead_code)]
use std::path::{Path, PathBuf};

/// `../shared` beside the checkout (read-only test data; never a product dependency).
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
}
