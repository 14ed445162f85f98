//! The backbones built by retrain, run in ONNX Runtime, give PyTorch's ImageNet logits on
//! the shared test photos (reference computed with torchvision and PIL).

mod common;
use common::shared;
use retrain::backbone::LoadedBackbone;
use retrain_features::Session;

fn parity(model: &str) {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shared("reference/imagenet_logits.json")).unwrap()).unwrap();
    let r = &reference["models"][model];
    let weights = shared(&format!("weights/{}", r["weights"].as_str().unwrap()));
    let backbone = LoadedBackbone::load(model, Some(&weights), true).unwrap();
    assert_eq!(backbone.weights_sha256, r["sha256"].as_str().unwrap());
    let p = backbone.info.preprocess;
    assert_eq!((p.resize, p.crop), (r["resize"].as_u64().unwrap() as u32, r["crop"].as_u64().unwrap() as u32));
    for (i, m) in r["mean"].as_array().unwrap().iter().enumerate() {
        assert!((p.mean[i] as f64 - m.as_f64().unwrap()).abs() < 1e-3);
        assert!((p.std[i] as f64 - r["std"][i].as_f64().unwrap()).abs() < 1e-3);
    }
    let mut session = Session::new(&backbone.imagenet_model().unwrap(), model, 2).unwrap();
    let images = r["images"].as_object().unwrap();
    assert_eq!(images.len(), 8);
    let mut worst = 0f32;
    for (name, want) in images {
        let px =
            retrain_pixels::load(&shared(&format!("images/{name}")), backbone.geometry(), Default::default()).unwrap();
        let out = session.run(px, 1, p.crop as usize).unwrap();
        let (_, shape, got) = out.into_iter().find(|(n, _, _)| n == "imagenet_logits").unwrap();
        assert_eq!(shape, vec![1, 1000]);
        let want: Vec<f32> = want["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let top = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(top(&got), top(&want), "{model} {name}: top-1 differs");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        worst = worst.max(diff / scale);
        // PNG pixels are bit-exact with PIL's, so the graph itself must match to float
        // rounding. JPEG decoders (zune-jpeg here, libjpeg-turbo in PIL) differ by a level
        // or two in some pixels, which moves logits by up to ~1.5% of their range.
        let tol = if name.ends_with(".png") { 1e-3 } else { 0.03 };
        assert!(diff <= tol * scale, "{model} {name}: max |Δlogit| {diff} vs max |logit| {scale}");
    }
    eprintln!("{model}: worst max|Δlogit| / max|logit| = {worst:.5}");
}

#[test]
fn mobilenet_v2_matches_torchvision() {
    parity("mobilenet_v2");
}

#[test]
fn efficientnet_lite0_matches_reference() {
    parity("efficientnet_lite0");
}
