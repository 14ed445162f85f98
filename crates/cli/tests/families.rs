//! `explain`, `explain --layers` and `report` on every CNN family of the zoo, with the parity
//! fixtures' synthetic torchvision-named weights (no downloads; ../shared holds real weights for
//! MobileNetV2 and EfficientNet-Lite0 only, tested in explain.rs and report.rs). The pictures of
//! random weights mean nothing; what is checked is that each family's graph gives the right
//! method, a heatmap over its own crop, a picture per stage from early to late, and the page.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

/// (zoo name, heatmap method, crop size, fewest stages): families that end in a global average
/// pool under the head get the exact class activation map; AlexNet and VGG (fully connected
/// layers after the pool) and ConvNeXt (LayerNorm after it) get occlusion.
const FAMILIES: [(&str, &str, u64, usize); 8] = [
    ("alexnet", "occlusion", 224, 3),
    ("resnet18", "class activation map", 224, 5),
    ("inception_v3", "class activation map", 299, 5),
    ("densenet121", "class activation map", 224, 5),
    ("squeezenet1_1", "class activation map", 224, 4),
    ("mobilenet_v3_small", "class activation map", 224, 5),
    ("efficientnet_b0", "class activation map", 224, 5),
    ("convnext_tiny", "occlusion", 224, 4),
];

fn family(t: &Path, data: &Path, (name, method, crop, stages): (&str, &str, u64, usize)) {
    let dir = t.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let weights = synthetic_weights(&dir, name);
    let model = dir.join("m.onnx");
    let mut c = retrain(t);
    c.arg("train").arg(data).args(["--model", name, "--quiet", "--weights"]).arg(&weights).arg("--out").arg(&model);
    succeeds(&mut c);
    std::fs::remove_file(&weights).unwrap();

    let photo = data.join("val/daisy").read_dir().unwrap().next().unwrap().unwrap().path();
    let out = succeeds(
        retrain(t).arg("explain").arg(&model).arg(&photo).args(["--format", "json", "-q", "--out"]).arg(dir.join("x")),
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &e[0];
    assert_eq!(e["method"], method, "{name}");
    assert_eq!(e["crop"]["size"], serde_json::json!([crop, crop]), "{name}");
    let heat: Vec<f64> = e["heatmap"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(heat.len() >= 9 && heat.iter().all(|v| (0.0..=1.0).contains(v)), "{name}: {} cells", heat.len());
    let low = heat.iter().cloned().fold(1.0, f64::min);
    assert!(heat.iter().any(|&v| v > 0.999) && low < 0.9, "{name}: a flat heatmap {heat:?}");
    assert!(Path::new(e["picture"].as_str().unwrap()).exists(), "{name}");

    let out = succeeds(
        retrain(t)
            .args(["explain", "--layers"])
            .arg(&model)
            .arg(&photo)
            .args(["--format", "json", "-q", "--out"])
            .arg(dir.join("layers")),
    );
    let l: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sizes: Vec<u64> = l["stages"].as_array().unwrap().iter().map(|s| s["size"][0].as_u64().unwrap()).collect();
    assert!(sizes.len() >= stages, "{name}: stages {sizes:?}");
    assert!(sizes.windows(2).all(|w| w[0] > w[1]), "{name}: not early to late {sizes:?}");
    for s in l["stages"].as_array().unwrap() {
        assert!(Path::new(s["picture"].as_str().unwrap()).exists(), "{name}");
    }
    assert!(Path::new(l["filters"].as_str().unwrap()).exists(), "{name}: no filters picture");

    let page = dir.join("report.html");
    let out =
        succeeds(retrain(t).arg("report").arg(&model).arg(data).args(["--format", "json", "-q", "--out"]).arg(&page));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["method"], method, "{name}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script") && html.contains("<h2>What the layers see") && html.contains("<h2>Top losses"),
        "{name}"
    );
    // The features' map has every validation photo, occlusion models too (the head's input).
    assert_eq!(html.matches("class=\"pt").count(), 6, "{name}");
    std::fs::remove_file(&model).unwrap();
}

#[test]
fn every_cnn_family_explains_shows_its_layers_and_reports() {
    let t = tempfile::tempdir().unwrap();
    // 4 training and 2 validation photos per class: the report's occlusion maps (49 forward
    // passes a photo) stay few.
    let data = t.path().join("data");
    let all = flowers_mini(&t.path().join("all"), 6);
    for class in std::fs::read_dir(&all).unwrap().map(|e| e.unwrap().path()) {
        let mut photos: Vec<_> = class.read_dir().unwrap().map(|e| e.unwrap().path()).collect();
        photos.sort();
        for (i, p) in photos.iter().enumerate() {
            let to = data.join(if i < 4 { "train" } else { "val" }).join(class.file_name().unwrap());
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    for f in FAMILIES {
        let start = std::time::Instant::now();
        family(t.path(), &data, f);
        eprintln!("{}: {:.1} s", f.0, start.elapsed().as_secs_f64());
    }
}
