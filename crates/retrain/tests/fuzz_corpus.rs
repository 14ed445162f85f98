//! Replays every input kept under `tests/fuzz/<target>/` (seeds, and what the fuzzers
//! found) through the same code the fuzz targets run (`fuzz/harness.rs`): a crash found
//! once stays fixed. CI runs this; fuzzing itself runs by hand (`cargo +nightly fuzz run`).

#[path = "../../../fuzz/harness.rs"]
mod harness;

#[path = "../../../fuzz/replay.rs"]
mod replay;
use replay::{inputs, replay};

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
