//! Replays every input kept under `tests/fuzz/<target>/` (seeds, and what the fuzzers
//! found) through the same code the fuzz targets run (`fuzz/harness.rs`): a crash found
//! once stays fixed. CI runs this; fuzzing itself runs by hand (`cargo +nightly fuzz run`).

#[path = "../../../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz").join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{}: no inputs", dir.display());
    v
}

fn replay(target: &str, run: fn(&[u8])) {
    for p in inputs(target) {
        let data = std::fs::read(&p).unwrap();
        // Name the input that fails, then fail as the fuzzer would have.
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{} fails its fuzz target", p.display());
        }
    }
}

#[test]
fn decode_corpus() {
    replay("decode", harness::decode);
}

#[test]
fn pth_corpus() {
    replay("pth", harness::weights);
}

#[test]
fn safetensors_corpus() {
    replay("safetensors", harness::weights);
}

#[test]
fn model_corpus() {
    replay("model", harness::model);
    // The seed model is read as a model; an empty file is refused as one.
    let tiny = std::fs::read(inputs("model").into_iter().find(|p| p.ends_with("tiny.onnx")).unwrap()).unwrap();
    let info = retrain::model::inspect(&tiny, std::path::Path::new("tiny.onnx")).unwrap();
    assert_eq!(info.class_names, ["ants", "bees"]);
    let e = retrain::model::inspect(b"", std::path::Path::new("e.onnx")).unwrap_err().to_string();
    assert!(e.contains("e.onnx") && e.contains("empty file"), "{e}");
}

#[test]
fn walk_corpus() {
    replay("walk", harness::walk);
}
