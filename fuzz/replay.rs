#![allow(dead_code)]

//! Replaying a fuzz target's kept inputs (`tests/fuzz/<target>/`) in a test, for the corpus
//! tests of the crates that include it (each sits at `crates/<name>/tests/`).

use std::path::PathBuf;

pub fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz").join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{}: no inputs", dir.display());
    v
}

/// Runs `run` on every input of `target`, naming the one that fails, as the fuzzer would have
/// failed; how many there were.
pub fn replay(target: &str, run: fn(&[u8])) -> usize {
    let inputs = inputs(target);
    for p in &inputs {
        let data = std::fs::read(p).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{} fails its fuzz target", p.display());
        }
    }
    inputs.len()
}
