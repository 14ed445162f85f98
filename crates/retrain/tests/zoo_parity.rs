//! Every backbone of the zoo against torchvision itself: `tools/make_parity_fixtures.py` filled
//! torchvision's models with synthetic weights and stored their logits on synthetic inputs;
//! this regenerates the same weights and inputs, builds retrain's graph, runs it in ONNX
//! Runtime and compares. Tolerance: max |Δlogit| ≤ 1e-4 × max |logit| (the issue asks 1e-3).

use retrain_features::Session;
use retrain_weights::synthetic_bytes;
use std::path::Path;

mod common;

fn parity(model: &str) {
    let (sd, fx) = common::fixture_state_dict(model);
    let backbone = retrain_zoo::find(model).unwrap();
    let crop = fx["crop"].as_u64().unwrap() as usize;
    assert_eq!(backbone.preprocess.crop as usize, crop);
    let outputs = retrain_zoo::GraphOutputs { imagenet_logits: true, features: true, ..Default::default() };
    let graph = retrain_zoo::build(backbone, &sd, &outputs, &[]).unwrap();
    let mut session = Session::new(&retrain_onnx::encode(&graph), model, 2).unwrap();
    let pixels = synthetic_bytes(&format!("input:{model}"), 2 * crop * crop * 3);
    let out = session.run(pixels, 2, crop).unwrap();
    let (_, shape, got) = out.iter().find(|(n, _, _)| n == "imagenet_logits").unwrap();
    assert_eq!(shape, &vec![2, 1000]);
    let (_, fshape, _) = out.iter().find(|(n, _, _)| n == "features").unwrap();
    assert_eq!(fshape, &vec![2, backbone.feature_dim]);
    assert_eq!(fx["imagenet_logits"].as_array().unwrap().len(), 2);
    let want: Vec<f32> = fx["imagenet_logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{model}: max|Δ| {diff:.3e}, max|logit| {scale:.3e}, ratio {:.2e}", diff / scale);
    // The issue asks for 1e-3; every family lands near 1e-6, so 1e-4 still catches a wrong
    // BatchNorm epsilon or padding that 1e-3 might let through.
    assert!(diff <= 1e-4 * scale, "{model}: max |Δlogit| {diff} > 1e-4 × {scale}");
}

macro_rules! parity_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            parity(stringify!($name));
        }
    )*};
}

parity_tests!(
    alexnet,
    vgg16,
    vgg16_bn,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    inception_v3,
    densenet121,
    squeezenet1_1,
    mobilenet_v2,
    mobilenet_v3_large,
    mobilenet_v3_small,
    efficientnet_b0,
    efficientnet_b1,
    efficientnet_b2,
    efficientnet_b3,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
    convnext_tiny,
    vit_b_16,
);

#[test]
fn every_registry_entry_has_a_fixture() {
    for b in retrain_zoo::registry() {
        let f =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity").join(format!("{}.json", b.name));
        assert!(f.exists(), "no parity fixture for {}", b.name);
    }
}
