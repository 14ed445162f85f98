#![allow(dead_code)]
use std::path::{Path, PathBuf};

/// `../shared` beside the checkout (read-only test data; never a product dependency).
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
}

/// The synthetic torchvision-named state dict of a zoo parity fixture
/// (`tests/fixtures/parity/MODEL.json`, written by tools/make_parity_fixtures.py), and the fixture.
pub fn fixture_state_dict(model: &str) -> (retrain_weights::StateDict, serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity").join(format!("{model}.json"));
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut sd = retrain_weights::StateDict::new();
    for t in fx["tensors"].as_array().unwrap() {
        let name = t[0].as_str().unwrap();
        let shape: Vec<usize> = t[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        sd.insert(name.to_string(), retrain_weights::synthetic(name, &shape));
    }
    (sd, fx)
}
