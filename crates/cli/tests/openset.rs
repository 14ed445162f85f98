//! "Not one of my classes", end to end: a hymenoptera model (ants, bees) says "unknown" for
//! flowers in `predict` (text, JSON, CSV), `eval` and `serve` (retrain's JSON and KServe v2),
//! at the threshold it chose on its own training photos; its `ood_score` is inside the graph,
//! for linear, int8 and fine-tuned models; `--reject` changes the threshold or turns it off.

mod common;

use common::server::*;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `n` flowers photos (none of hymenoptera's classes), a few of each species.
fn flowers(n: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for class in ["daisy", "dandelion", "rose", "sunflower", "tulip"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(shared("data/flowers").join(class)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        out.extend(files.into_iter().take(n.div_ceil(5)));
    }
    out.truncate(n);
    out
}

fn predictions(out: &std::process::Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["predictions"].as_array().unwrap().clone()
}

fn open_set(model: &Path) -> Value {
    let (_, info) = retrain::model::read(model).unwrap();
    serde_json::to_value(info.open_set.expect("the model has an open-set score")).unwrap()
}

#[test]
fn flowers_are_unknown_to_a_hymenoptera_model_everywhere_the_answer_is_shown() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("hym.onnx");
    let report = t.path().join("report.json");
    let data = shared("data/hymenoptera");
    succeeds(&mut train(t.path(), &data, &m, &["--report", report.to_str().unwrap()]));

    // The threshold, chosen on the training photos out of fold, accepts about 95% of them,
    // and about as many of the validation photos; the temperature lowered the calibration error.
    let r = read_json(&report);
    let os = &r["open_set"];
    assert_eq!(os["folds"], 5);
    assert_eq!(os["bank"], r["train_images"], "a small set is stored whole");
    assert!((os["acceptance"].as_f64().unwrap() - 0.95).abs() < 0.01, "{os}");
    let val_acceptance = os["val_acceptance"].as_f64().unwrap();
    assert!((0.88..=1.0).contains(&val_acceptance), "{os}");
    assert!(os["val_accuracy_accepted"].as_f64().unwrap() >= r["val_accuracy"].as_f64().unwrap(), "{os}");
    let c = &r["calibration"];
    assert!(c["ece_after"].as_f64().unwrap() <= c["ece_before"].as_f64().unwrap() + 1e-9, "{c}");
    let threshold = os["threshold"].as_f64().unwrap();
    assert!((open_set(&m)["threshold"].as_f64().unwrap() - threshold).abs() < 1e-6);

    // predict: flowers are "unknown", hymenoptera validation photos mostly are not.
    let fl = flowers(20);
    let val = hymenoptera_val(10);
    let out = succeeds(retrain(t.path()).arg("predict").arg(&m).args(&fl).args(&val).args(["--format", "json"]));
    let preds = predictions(&out);
    let unknown = |ps: &[Value]| ps.iter().filter(|p| p["known"] == false).count();
    assert!(unknown(&preds[..20]) >= 18, "flowers taken for ants or bees: {}", 20 - unknown(&preds[..20]));
    assert!(unknown(&preds[20..]) <= 3, "hymenoptera photos rejected: {}", unknown(&preds[20..]));
    for p in &preds {
        let s = p["ood_score"].as_f64().unwrap();
        assert_eq!(p["known"] == true, s <= threshold, "{p}");
    }
    let text =
        String::from_utf8(succeeds(retrain(t.path()).arg("predict").arg(&m).arg(&fl[0]).args(["--top", "2"])).stdout)
            .unwrap();
    assert!(text.contains("\tunknown (nearest: "), "{text}");
    let csv = String::from_utf8(
        succeeds(retrain(t.path()).arg("predict").arg(&m).arg(&fl[0]).arg(&val[1]).args(["--format", "csv"])).stdout,
    )
    .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "path,rank,class,probability,known,ood_score");
    assert!(lines[1].contains(",false,"), "{csv}");
    // --reject off: no verdict, the score still shown; a threshold of 2 accepts everything.
    let off = predictions(&succeeds(
        retrain(t.path()).arg("predict").arg(&m).args(&fl[..3]).args(["--format", "json", "--reject", "off"]),
    ));
    assert!(off.iter().all(|p| p.get("known").is_none() && p["ood_score"].is_number()), "{off:?}");
    let all = predictions(&succeeds(
        retrain(t.path()).arg("predict").arg(&m).args(&fl[..3]).args(["--format", "json", "--reject", "2"]),
    ));
    assert!(all.iter().all(|p| p["known"] == true), "{all:?}");
    let bad = run(retrain(t.path()).arg("predict").arg(&m).arg(&fl[0]).args(["--reject", "maybe"]));
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected auto, off or an ood_score threshold from 0 to 2"));
    // A model without the score (here a backbone's own ImageNet classifier) refuses a threshold.
    fails(
        retrain(t.path())
            .args(["predict", "--model", "mobilenet_v2", "--weights"])
            .arg(mnv2())
            .arg(&fl[0])
            .args(["--reject", "0.3"]),
        "no `ood_score` output",
    );

    // eval: the share accepted and the accuracy on them; --ood: AUROC against flowers.
    let ood = t.path().join("ood");
    std::fs::create_dir(&ood).unwrap();
    for f in flowers(60) {
        std::fs::copy(&f, ood.join(f.file_name().unwrap())).unwrap();
    }
    let out =
        succeeds(retrain(t.path()).arg("eval").arg(&m).arg(&data).arg("--ood").arg(&ood).args(["--format", "json"]));
    let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &ev["open_set"];
    assert!((e["acceptance"].as_f64().unwrap() - val_acceptance).abs() < 1e-9, "{e}");
    assert_eq!(e["ood"]["images"], 60);
    assert!(e["ood"]["auroc"].as_f64().unwrap() >= 0.97, "{e}");
    assert!(e["ood"]["fpr_at_95"].as_f64().unwrap() <= 0.15, "{e}");
    assert!(e["ood"]["rejected"].as_f64().unwrap() >= 0.85, "{e}");
    let text =
        String::from_utf8(succeeds(retrain(t.path()).arg("eval").arg(&m).arg(&data).arg("--ood").arg(&ood)).stdout)
            .unwrap();
    assert!(
        text.contains("accepted as one of the classes (ood_score ≤ ")
            && text.contains("60 photos of none of the classes"),
        "{text}"
    );

    // ONNX Runtime alone: a training photo is in the bank (score ≈ 0 but for half-precision
    // rounding); the flower scores above the threshold.
    let (bytes, info) = retrain::model::read(&m).unwrap();
    let train_photo = std::fs::read_dir(data.join("train/ants")).unwrap().next().unwrap().unwrap().path();
    let mut px = retrain_pixels::load(&train_photo, info.geometry(), retrain::Limits::default()).unwrap();
    px.extend(retrain_pixels::load(&fl[0], info.geometry(), retrain::Limits::default()).unwrap());
    let mut session = retrain_features::Session::new(&bytes, "test", 1).unwrap();
    let outs = session.run(px.clone(), 2, 224).unwrap();
    let (_, shape, score) = outs.iter().find(|(n, _, _)| n == "ood_score").unwrap();
    assert_eq!(shape, &[2]);
    assert!(score[0].abs() < 2e-3 && score[1] as f64 > threshold, "{score:?}");

    // serve: retrain's JSON and the v2 output say the same.
    let server = Server::start(t.path(), &[&m], &[]);
    let u = &server.url;
    let (status, got, _) = post(&format!("{u}/v1/predict"), "image/jpeg", &std::fs::read(&fl[0]).unwrap());
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["known"], false, "{got}");
    assert!((got["ood_score"].as_f64().unwrap() - preds[0]["ood_score"].as_f64().unwrap()).abs() < 1e-5, "{got}");
    let (_, list) = get(&format!("{u}/v1/models"));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert!((list["models"][0]["reject"].as_f64().unwrap() - threshold).abs() < 1e-6, "{list}");
    let meta: Value = serde_json::from_str(&get(&format!("{u}/v2/models/hym")).1).unwrap();
    assert_eq!(meta["outputs"][1], serde_json::json!({"name": "ood_score", "datatype": "FP32", "shape": [-1]}));
    let request = serde_json::json!({
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [2, 224, 224, 3], "data": px}],
        "outputs": [{"name": "ood_score"}],
    });
    let (status, got, _) =
        post(&format!("{u}/v2/models/hym/infer"), "application/json", request.to_string().as_bytes());
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["outputs"][0]["shape"], serde_json::json!([2]));
    let data: Vec<f64> = got["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(data.iter().zip(score).all(|(a, b)| (a - *b as f64).abs() < 1e-5), "{data:?} vs {score:?}");
    assert!(server.stop().success());
    // --reject off: no verdict in the answer.
    let server = Server::start(t.path(), &[&m], &["--reject", "off"]);
    let (_, got, _) = post(&format!("{}/v1/predict", server.url), "image/jpeg", &std::fs::read(&fl[0]).unwrap());
    assert!(got.get("known").is_none() && got["ood_score"].is_number(), "{got}");
    assert!(server.stop().success());

    // Triton's repository declares the output, one value per image.
    let repo = t.path().join("triton");
    succeeds(retrain(t.path()).args(["export", "triton"]).arg(&m).arg(&repo));
    let config = std::fs::read_to_string(repo.join("hym/config.pbtxt")).unwrap();
    assert!(
        config.contains("name: \"ood_score\"\n    data_type: TYPE_FP32\n    dims: [ 1 ]\n    reshape: { shape: [ ] }"),
        "{config}"
    );
}

/// int8 and fine-tuned models get the score too, fitted on their own features: each
/// model's training photos score near zero through the model itself.
#[test]
fn int8_and_fine_tuned_models_get_their_own_ood_score() {
    let t = tempfile::tempdir().unwrap();
    let data = mini_split(t.path());
    // Ants and bees are none of flowers-mini's classes.
    let others = hymenoptera_val(3);
    for (name, extra) in [
        ("int8", &["--precision", "int8"][..]),
        ("finetune", &["--strategy", "finetune", "--epochs", "1", "--patience", "5"][..]),
    ] {
        let m = t.path().join(format!("{name}.onnx"));
        let report = t.path().join(format!("{name}.json"));
        let mut args = extra.to_vec();
        args.extend(["--report", report.to_str().unwrap()]);
        succeeds(&mut train(t.path(), &data, &m, &args));
        let os = open_set(&m);
        assert_eq!(os["bank"], 36, "{name}: {os}");
        let r = read_json(&report);
        assert!(r["calibration"]["temperature"].as_f64().unwrap() > 0.0, "{name}");
        let train_photos: Vec<PathBuf> = walk_all(&data.join("train")).into_iter().take(4).collect();
        let out = succeeds(
            retrain(t.path()).arg("predict").arg(&m).args(&train_photos).args(&others).args(["--format", "json"]),
        );
        let preds = predictions(&out);
        for p in &preds[..4] {
            assert!(p["ood_score"].as_f64().unwrap() < 2e-3, "{name}: a training photo is in the bank: {p}");
        }
        let mean = |ps: &[Value]| ps.iter().map(|p| p["ood_score"].as_f64().unwrap()).sum::<f64>() / ps.len() as f64;
        assert!(mean(&preds[4..]) > 0.05, "{name}: {preds:?}");
    }
}
