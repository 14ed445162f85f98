//! `retrain study`, `train --strategy scratch` and `train --model auto`, end to end on real data.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn lite0() -> PathBuf {
    shared("weights/efficientnet-lite0-57934424.pth")
}

fn weights_args() -> Vec<String> {
    vec![
        "--weights".into(),
        format!("mobilenet_v2={}", mnv2().display()),
        "--weights".into(),
        format!("efficientnet_lite0={}", lite0().display()),
    ]
}

/// Two classes told apart by colour: reddish and bluish noise, 64×64.
fn toy(dir: &Path) -> PathBuf {
    let mut seed = 1u64;
    let mut noise = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) % 121) as i32 - 60
    };
    for (split, n) in [("train", 16), ("val", 8)] {
        for (class, base) in [("red", [200, 40, 40]), ("blue", [40, 40, 200])] {
            let d = dir.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(64, 64, |_, _| {
                    image::Rgb(base.map(|c: i32| (c + noise()).clamp(0, 255) as u8))
                });
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    dir.to_path_buf()
}

#[test]
fn scratch_learns_a_two_class_toy_set_from_random_weights() {
    let t = tempfile::tempdir().unwrap();
    let data = toy(&t.path().join("toy"));
    let (m, r) = (t.path().join("m.onnx"), t.path().join("r.json"));
    // No weights are given or cached: scratch needs none.
    let mut c = retrain(t.path());
    c.args(["train", data.to_str().unwrap(), "--quiet", "--strategy", "scratch", "--epochs", "4", "--batch", "8"]);
    succeeds(c.arg("--out").arg(&m).arg("--report").arg(&r));
    let report = read_json(&r);
    let f = &report["finetune"];
    assert_eq!(f["strategy"], "scratch");
    assert_eq!(f["first_trained_block"], "the stem");
    assert_eq!(f["config"]["batchnorm"], "train");
    let curve = f["curve"].as_array().unwrap();
    let loss = |e: &Value| e["train_loss"].as_f64();
    let (first, last) = (loss(&curve[1]).unwrap(), loss(curve.last().unwrap()).unwrap());
    assert!(last < 0.5 * first, "training loss falls: {first} → {last}");
    // The written model answers: validation accuracy is measured on it, by ONNX Runtime.
    let acc = report["val_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.75, "above chance (0.5): {acc}");
    assert!(report["weights_sha256"].as_str().unwrap().starts_with("random-init"));
}

fn study(home: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = retrain(home);
    c.args(["study", shared("data/hymenoptera").to_str().unwrap(), "--models", "mobilenet_v2"]);
    c.args(["--weights", &format!("mobilenet_v2={}", mnv2().display())]).arg("--out").arg(out).args(extra);
    succeeds(&mut c)
}

#[test]
fn study_rows_cover_every_cell_and_a_second_run_continues_the_first() {
    let t = tempfile::tempdir().unwrap();
    let (out, page) = (t.path().join("study.json"), t.path().join("study.html"));
    let args = ["--strategies", "linear,scratch", "--shots", "2,5", "--repeats", "1", "--epochs", "1", "--html"];
    study(t.path(), &out, &[&args[..], &[page.to_str().unwrap()]].concat());
    let s = read_json(&out);
    let rows = s["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (strategy, shots) in [("linear", 2), ("linear", 5), ("scratch", 2), ("scratch", 5)] {
        let row = rows.iter().find(|r| r["strategy"] == strategy && r["shots"] == shots).unwrap();
        assert_eq!(row["model"], "mobilenet_v2");
        assert_eq!(row["repeat"], 0);
        assert_eq!(row["train_images"], 2 * shots, "{row}");
        let acc = row["val_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc) && row["seconds"].as_f64().unwrap() > 0.0, "{row}");
    }
    let linear5 = rows.iter().find(|r| r["strategy"] == "linear" && r["shots"] == 5).unwrap();
    assert!(linear5["val_accuracy"].as_f64().unwrap() >= 0.75, "5 photos per class transfer: {linear5}");
    assert_eq!(s["val_images"], 153, "the whole validation split scores every row");
    assert_eq!(s["summary"].as_array().unwrap().len(), 4);
    assert!(s["reading"].as_str().unwrap().contains("With 5 photos per class the linear head on mobilenet_v2"));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg") && html.contains("<polyline") && !html.contains("<script"));

    // Asked again with one more shots value: the four rows stay as they were, one run is added.
    let more = study(t.path(), &out, &["--strategies", "linear", "--shots", "2,5,10", "--repeats", "1"]);
    let again = read_json(&out);
    let rows2 = again["results"].as_array().unwrap();
    for strategy_shots in [2, 5] {
        let pick = |rows: &[Value]| {
            rows.iter().find(|r| r["strategy"] == "linear" && r["shots"] == strategy_shots).cloned().unwrap()
        };
        assert_eq!(pick(rows), pick(rows2), "kept, not retrained");
    }
    assert_eq!(rows2.len(), 3, "the study holds the cells asked for: {rows2:?}");
    assert!(rows2.iter().any(|r| r["shots"] == 10));
    assert!(String::from_utf8_lossy(&more.stdout).contains("mobilenet_v2"));

    // Another seed, or other data, with the same --out: refused, and the file keeps its rows.
    let refused = |c: &mut std::process::Command, needle: &str| {
        let err = fails(c.arg("--out").arg(&out).args(["--strategies", "linear", "--shots", "2"]), needle);
        assert!(err.contains("study.json") && err.contains("give another --out"), "{err}");
        assert_eq!(read_json(&out), again, "the study file is untouched");
    };
    let hym = shared("data/hymenoptera");
    let w = format!("mobilenet_v2={}", mnv2().display());
    let mut c = retrain(t.path());
    c.args(["study", hym.to_str().unwrap(), "--models", "mobilenet_v2", "--weights", &w, "--seed", "7"]);
    refused(&mut c, "seed 7");
    let toy = toy(&t.path().join("toy"));
    let mut c = retrain(t.path());
    c.args(["study", toy.to_str().unwrap(), "--models", "mobilenet_v2", "--weights", &w]);
    refused(&mut c, "toy");
    // The same folder with photos added since is other data too (caught once it is read).
    let small = t.path().join("small.json");
    let mut c = retrain(t.path());
    c.args(["study", toy.to_str().unwrap(), "--models", "mobilenet_v2", "--weights", &w, "--strategies", "linear"]);
    succeeds(c.args(["--shots", "2", "--out"]).arg(&small));
    std::fs::copy(toy.join("train/red/0.png"), toy.join("train/red/extra.png")).unwrap();
    let mut c = retrain(t.path());
    c.args(["study", toy.to_str().unwrap(), "--models", "mobilenet_v2", "--weights", &w, "--strategies", "linear"]);
    let err = fails(c.args(["--shots", "2", "--out"]).arg(&small), "32 training");
    assert!(err.contains("33 training"), "{err}");
}

/// hymenoptera with its validation labels swapped: `val/ants` holds the bees and `val/bees` the ants.
fn poisoned(dir: &Path) -> PathBuf {
    let d = dir.join("poisoned");
    std::fs::create_dir_all(d.join("train")).unwrap();
    std::fs::create_dir_all(d.join("val")).unwrap();
    for (class, other) in [("ants", "bees"), ("bees", "ants")] {
        std::os::unix::fs::symlink(shared("data/hymenoptera/train").join(class), d.join("train").join(class)).unwrap();
        std::os::unix::fs::symlink(shared("data/hymenoptera/val").join(other), d.join("val").join(class)).unwrap();
    }
    d
}

fn auto(home: &Path, data: &Path, report: &Path) -> Value {
    let mut c = retrain(home);
    c.args(["train", data.to_str().unwrap(), "--quiet", "--model", "auto"]);
    c.args(["--candidates", "mobilenet_v2,efficientnet_lite0"]).args(weights_args());
    succeeds(c.arg("--out").arg(home.join("auto.onnx")).arg("--report").arg(report));
    read_json(report)
}

#[test]
fn auto_chooses_by_cross_validation_on_the_training_split_alone() {
    let t = tempfile::tempdir().unwrap();
    let clean = auto(t.path(), &shared("data/hymenoptera"), &t.path().join("clean.json"));
    let bad = auto(t.path(), &poisoned(t.path()), &t.path().join("bad.json"));
    let (a, b) = (&clean["model_selection"], &bad["model_selection"]);
    assert_eq!(a["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(a["folds"], 5);
    assert_eq!(a["train_images"], 245);
    for (x, y) in a["candidates"].as_array().unwrap().iter().zip(b["candidates"].as_array().unwrap()) {
        assert_eq!(x["model"], y["model"]);
        // The same folds of the same training photos: the same figures to the last bit.
        assert_eq!(x["fold_accuracies"], y["fold_accuracies"], "the validation labels changed a CV figure");
        assert!(x["cv_accuracy"].as_f64().unwrap() > 0.85, "{x}");
    }
    // The only other input is each backbone's speed, timed on this machine (and so as noisy as
    // its load, with the other tests running): among the candidates within a point of the best,
    // which the identical figures make the same set in both runs, the faster one is chosen.
    let rule = |sel: &Value| -> Value {
        let c = sel["candidates"].as_array().unwrap();
        let best = c.iter().map(|x| x["cv_accuracy"].as_f64().unwrap()).fold(0.0, f64::max);
        let tied = c.iter().filter(|x| x["cv_accuracy"].as_f64().unwrap() >= best - 0.01);
        tied.max_by(|x, y| {
            x["images_per_second"].as_f64().unwrap().total_cmp(&y["images_per_second"].as_f64().unwrap())
        })
        .unwrap()["model"]
            .clone()
    };
    assert_eq!(a["chosen"], rule(a));
    assert_eq!(b["chosen"], rule(b));
    assert_eq!(clean["backbone"], a["chosen"]);
    assert_eq!(bad["backbone"], b["chosen"]);
    // The poison did reach the validation score: the swapped labels are scored wrong.
    let (good, poisoned) = (clean["val_accuracy"].as_f64().unwrap(), bad["val_accuracy"].as_f64().unwrap());
    assert!(good > 0.9 && poisoned < 0.3, "{good} vs {poisoned}");
    assert!(a["reason"].as_str().unwrap().contains(a["chosen"].as_str().unwrap()));
}

#[test]
fn layers_measure_every_stage_and_cut_trains_on_the_one_asked_for() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("layers.json");
    study(t.path(), &out, &["--shots", "all", "--layers"]);
    let s = read_json(&out);
    let layers = s["layers"].as_array().unwrap();
    let sizes: Vec<u64> = layers.iter().map(|l| l["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [112, 56, 28, 14, 7], "MobileNetV2's stages, early to late");
    let acc: Vec<f64> = layers.iter().map(|l| l["val_accuracy"].as_f64().unwrap()).collect();
    // The last stage pooled is the backbone's features: the same score as the linear row.
    let linear = s["results"][0]["val_accuracy"].as_f64().unwrap();
    assert!((acc[4] - linear).abs() <= 0.02, "{acc:?} vs {linear}");
    assert!(acc[0] < acc[4] - 0.1, "edges and blobs transfer less than objects here: {acc:?}");
    assert!(s["reading"].as_str().unwrap().contains("Stage by stage on mobilenet_v2"));

    // --cut 3: a linear head on the 28×28 stage, in a model file that answers on its own.
    let (m, r) = (t.path().join("cut.onnx"), t.path().join("cut.json"));
    succeeds(&mut train(t.path(), &shared("data/hymenoptera"), &m, &["--cut", "3", "--report", r.to_str().unwrap()]));
    let report = read_json(&r);
    assert!((report["val_accuracy"].as_f64().unwrap() - acc[2]).abs() < 0.1, "{report} vs {acc:?}");
    let model = retrain_onnx::read(&m).unwrap();
    assert!(retrain_onnx::metadata(&model, "retrain.cut").unwrap().starts_with("after stage 3"));
    let out = succeeds(
        retrain(t.path())
            .args(["predict", m.to_str().unwrap(), "--format", "json"])
            .arg(shared("data/hymenoptera/val/bees")),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("bees"));
    let bad = run(&mut train(t.path(), &shared("data/hymenoptera"), &m, &["--cut", "9"]));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--cut 9") && err.contains("5 (1280×7×7)"), "{err}");
}
