//! The same commands give the same models and reports as the reference run saved in
//! `tests/fixtures/reference/hymenoptera.json`: five trainings on `../shared/data/hymenoptera`
//! (linear, fine-tuning and from scratch for one epoch, int8, `--model auto`). A change to the
//! code's layout must leave every model byte equal (but for the version string) and every
//! report figure equal (`--model auto`: each candidate's figures; which one wins a near-tie is
//! timed). `RETRAIN_BLESS=1` rewrites the reference after a deliberate change.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

const RUNS: &[(&str, &[&str])] = &[
    ("linear", &[]),
    ("finetune", &["--strategy", "finetune", "--epochs", "1"]),
    ("scratch", &["--strategy", "scratch", "--epochs", "1"]),
    ("int8", &["--precision", "int8"]),
    ("auto", &["--model", "auto", "--candidates", "mobilenet_v2,efficientnet_lite0"]),
];

/// The model's bytes without what may change without changing the model: the version of
/// retrain that wrote it, and the file checksum that covers that version.
fn model_digest(path: &Path) -> String {
    let mut m = retrain_onnx::read(path).unwrap();
    m.producer_version.clear();
    m.metadata_props.retain(|p| p.key != retrain_onnx::CHECKSUM_KEY);
    blake3::hash(&retrain_onnx::encode(&m)).to_hex().to_string()
}

/// The report without timings, cache counts (they depend on what ran before) and the
/// machine's folders.
fn normalised(report: &Path, out: &Path) -> Value {
    let text = std::fs::read_to_string(report).unwrap();
    let shared_root = shared("").canonicalize().unwrap();
    let text =
        text.replace(&shared_root.display().to_string(), "<shared>").replace(&out.display().to_string(), "<out>");
    let mut r: Value = serde_json::from_str(&text).unwrap();
    let o = r.as_object_mut().unwrap();
    for k in ["timings", "features_cached", "features_computed"] {
        o.remove(k);
    }
    if let Some(f) = o.get_mut("finetune") {
        for e in f["curve"].as_array_mut().unwrap() {
            e.as_object_mut().unwrap().retain(|k, _| k != "seconds" && k != "images_per_second");
        }
    }
    if let Some(s) = o.get_mut("model_selection") {
        for c in s["candidates"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("images_per_second");
        }
    }
    r
}

#[test]
fn models_and_reports_equal_the_saved_reference() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().canonicalize().unwrap();
    let data = shared("data/hymenoptera").canonicalize().unwrap();
    let lite0 = format!("efficientnet_lite0={}", shared("weights/efficientnet-lite0-57934424.pth").display());
    let mut got = serde_json::Map::new();
    for (name, extra) in RUNS {
        let (model, report) = (out.join(format!("{name}.onnx")), out.join(format!("{name}.json")));
        let mut c = retrain(&out);
        c.args(["train", data.to_str().unwrap(), "--quiet", "--threads", "2", "--weights"]);
        c.arg(format!("mobilenet_v2={}", mnv2().canonicalize().unwrap().display()));
        c.args(["--weights", &lite0, "--cache"]).arg(out.join("cache"));
        succeeds(c.args(*extra).arg("--out").arg(&model).arg("--report").arg(&report));
        got.insert(name.to_string(), json!({"model": model_digest(&model), "report": normalised(&report, &out)}));
    }
    let got = Value::Object(got);
    let file = root().join("tests/fixtures/reference/hymenoptera.json");
    if std::env::var_os("RETRAIN_BLESS").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want = read_json(&file);
    for (name, _) in RUNS {
        let (g, w) = (&got[name], &want[name]);
        if *name == "auto" {
            // Candidates within a point of the best are chosen by speed, which the machine's
            // load decides: what must not change is each candidate's cross-validated accuracy.
            let cv = |v: &Value| v["report"]["model_selection"]["candidates"].clone();
            assert_eq!(cv(g), cv(w), "auto: the candidates' accuracies differ from the reference");
            continue;
        }
        assert_eq!(g["report"], w["report"], "{name}: the report differs from the reference");
        assert_eq!(g["model"], w["model"], "{name}: the model file differs from the reference");
    }
}
