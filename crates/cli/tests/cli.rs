//! End-to-end tests: the real `retrain` binary on the real datasets in `../shared`.

mod common;

use common::{fails, mini_split, mnv2, read_json, retrain, root, run, shared, succeeds, synthetic_weights};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&succeeds(cmd).stdout).to_string()
}

/// The model's probabilities from Python's onnxruntime (tests/python/ort_predict.py): path →
/// class → probability.
fn python_probabilities(model: &Path, images: &[PathBuf]) -> Value {
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "run `bash setup.sh` first: it installs onnxruntime into .venv");
    let out =
        Command::new(&python).arg(root().join("tests/python/ort_predict.py")).arg(model).args(images).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn hymenoptera_train_eval_predict_and_python_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("ants.onnx");
    let report = tmp.path().join("report.json");
    let data = shared("data/hymenoptera");
    let train = |r: &Path| {
        let mut c = retrain(tmp.path());
        c.args(["train", data.to_str().unwrap(), "--model", "mobilenet_v2", "--quiet", "--weights"])
            .arg(mnv2())
            .arg("--out")
            .arg(&model)
            .arg("--report")
            .arg(r);
        ok(&mut c)
    };
    train(&report);
    let first_model = std::fs::read(&model).unwrap();
    let r = read_json(&report);
    let acc = r["val_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.94, "val accuracy {acc}");
    assert_eq!(r["class_names"], serde_json::json!(["ants", "bees"]));
    assert_eq!(r["val_images"], 153);
    assert_eq!(r["train_images"], 245);
    assert_eq!(r["features_computed"], 398);
    for k in ["scan", "weights", "features", "head", "export", "total"] {
        assert!(r["timings"][k].as_f64().is_some(), "timing {k}");
    }
    let cm = &r["confusion_matrix"];
    let total: u64 =
        cm.as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 153);
    assert_eq!(r["per_class"][0]["support"].as_u64().unwrap() + r["per_class"][1]["support"].as_u64().unwrap(), 153);

    // A second run reads every feature from the cache and trains the same head.
    let report2 = tmp.path().join("report2.json");
    train(&report2);
    let r2 = read_json(&report2);
    assert_eq!(r2["features_cached"], 398);
    assert_eq!(r2["features_computed"], 0);
    assert_eq!(r2["val_accuracy"], r["val_accuracy"]);
    assert_eq!(r2["confusion_matrix"], r["confusion_matrix"]);
    assert!(std::fs::read(&model).unwrap() == first_model, "same data and seed must give the same model file");

    // eval on the written model gives what training reported.
    let mut c = retrain(tmp.path());
    c.args(["eval", "--format", "json", "--quiet"]).arg(&model).arg(&data);
    let ev: Value = serde_json::from_str(&ok(&mut c)).unwrap();
    assert_eq!(ev["images"], 153);
    assert!((ev["accuracy"].as_f64().unwrap() - acc).abs() < 1e-9, "eval {} vs train {acc}", ev["accuracy"]);
    assert_eq!(ev["confusion_matrix"], r["confusion_matrix"]);

    // predict, then the same model in Python's onnxruntime: the same probabilities.
    let images = ["images/chelsea.png", "images/coffee.png", "images/dog.jpg", "images/eagle.jpg"].map(shared);
    let mut c = retrain(tmp.path());
    c.args(["predict", "--format", "json", "--top", "2", "--quiet"]).arg(&model).args(&images);
    let pred: Value = serde_json::from_str(&ok(&mut c)).unwrap();
    let preds = pred["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 4);
    let py = python_probabilities(&model, &images);
    for p in preds {
        let path = p["path"].as_str().unwrap();
        for ranked in p["top"].as_array().unwrap() {
            let class = ranked["class"].as_str().unwrap();
            let ours = ranked["probability"].as_f64().unwrap();
            let theirs = py[path][class].as_f64().unwrap();
            // PNG pixels are bit-exact with PIL; JPEG decoders may differ by a level.
            let tol = if path.ends_with(".png") { 1e-5 } else { 2e-2 };
            assert!((ours - theirs).abs() <= tol, "{path} {class}: retrain {ours} vs python {theirs}");
        }
    }

    // Text and CSV formats.
    let mut c = retrain(tmp.path());
    c.args(["predict", "--format", "csv", "--quiet"]).arg(&model).arg(shared("data/hymenoptera/val/bees"));
    let csv = ok(&mut c);
    assert!(csv.starts_with("path,rank,class,probability,known,ood_score\n"), "{csv}");
    let bees = csv.lines().skip(1).filter(|l| l.contains(",1,bees,")).count();
    assert!(bees >= 70, "{bees} of 83 val bees predicted as bees");
}

#[test]
fn corrupt_files_are_skipped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for class in ["daisy", "dandelion", "sunflower"] {
        let dst = data.join(class);
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(root().join("examples/flowers-mini").join(class)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    let good = std::fs::read(shared("images/dog.jpg")).unwrap();
    std::fs::write(data.join("daisy/truncated.jpg"), &good[..600]).unwrap();
    std::fs::write(data.join("daisy/empty.jpg"), b"").unwrap();
    std::fs::write(data.join("dandelion/notes.txt"), b"not an image").unwrap();
    std::fs::write(data.join("sunflower/.hidden.jpg"), b"ignored").unwrap();
    let report = tmp.path().join("r.json");
    let mut c = retrain(tmp.path());
    c.args(["train"])
        .arg(&data)
        .arg("--weights")
        .arg(mnv2())
        .arg("--out")
        .arg(tmp.path().join("m.onnx"))
        .arg("--report")
        .arg(&report);
    let out = run(&mut c);
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{se}");
    assert!(se.contains("warning: skipped") && se.contains("empty.jpg") && se.contains("notes.txt"), "{se}");
    let r = read_json(&report);
    let skipped: Vec<String> =
        r["skipped"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap().to_string()).collect();
    assert!(skipped.iter().any(|p| p.ends_with("empty.jpg")));
    assert!(skipped.iter().any(|p| p.ends_with("notes.txt")));
    assert!(!skipped.iter().any(|p| p.contains(".hidden")));
    let reasons: Vec<&str> = r["skipped"].as_array().unwrap().iter().map(|s| s["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"empty file") && reasons.contains(&"not an image (unrecognised format)"), "{reasons:?}");
    assert_eq!(
        r["train_images"].as_u64().unwrap() + r["val_images"].as_u64().unwrap() + skipped.len() as u64,
        48 + 3 + usize::from(!skipped.iter().any(|p| p.ends_with("truncated.jpg"))) as u64
    );
    assert!(r["val_accuracy"].as_f64().unwrap() > 0.6);
}

#[test]
fn bad_input_gives_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("m.onnx");
    let train = |data: &Path| {
        let mut c = retrain(t);
        c.arg("train").arg(data).arg("--weights").arg(mnv2()).arg("--out").arg(&out).arg("--quiet");
        c
    };
    fails(&mut train(&t.join("missing")), "missing: no such folder");
    let empty = t.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails(&mut train(&empty), "no class folders");

    let one = t.join("one");
    std::fs::create_dir_all(one.join("cats")).unwrap();
    std::fs::copy(shared("images/chelsea.png"), one.join("cats/c.png")).unwrap();
    fails(&mut train(&one), "only one class");

    let unreadable = t.join("unreadable");
    for class in ["a", "b"] {
        std::fs::create_dir_all(unreadable.join(class)).unwrap();
    }
    for i in 0..3 {
        std::fs::copy(shared("images/chelsea.png"), unreadable.join(format!("a/{i}.png"))).unwrap();
        std::fs::write(unreadable.join(format!("b/{i}.jpg")), b"no pixels here").unwrap();
    }
    fails(&mut train(&unreadable), "class `b` has no readable image");

    let data = root().join("examples/flowers-mini");
    let mut c = train(&data);
    c.args(["--model", "resnet9000"]);
    fails(&mut c, "unknown model `resnet9000`; known models: alexnet, vgg16");

    let mut c = retrain(t);
    c.arg("train")
        .arg(&data)
        .args(["--model", "mobilenet_v2", "--quiet", "--weights"])
        .arg(shared("weights/efficientnet-lite0-57934424.pth"))
        .arg("--out")
        .arg(&out);
    let e = fails(&mut c, "these weights do not fit mobilenet_v2");
    assert!(e.contains("efficientnet-lite0-57934424.pth") && e.contains("features.0.0.weight"), "{e}");

    let corrupt = t.join("corrupt.pth");
    std::fs::write(&corrupt, &std::fs::read(mnv2()).unwrap()[..4096]).unwrap();
    let mut c = retrain(t);
    c.arg("train").arg(&data).args(["--quiet", "--weights"]).arg(&corrupt).arg("--out").arg(&out);
    fails(&mut c, "corrupt.pth");

    // Out-of-range numbers are command-line mistakes, caught by clap: exit code 2.
    for f in ["0", "1", "1.5", "-0.2", "nan"] {
        let out = run(train(&data).arg(format!("--val-fraction={f}")));
        let se = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{se}");
        assert!(se.contains("'--val-fraction <VAL_FRACTION>': must be finite, > 0 and < 1"), "{se}");
    }

    let mut c = retrain(t);
    c.arg("train").arg(&data).args(["--quiet", "--weights"]).arg(mnv2()).args(["--out", "/nonexistent-dir/m.onnx"]);
    fails(&mut c, "/nonexistent-dir/m.onnx: cannot write");

    // A real model, then predict on things that are not images, and models that are not models.
    ok(&mut train(&data));
    let text = t.join("notes.txt");
    std::fs::write(&text, b"hello").unwrap();
    let mut c = retrain(t);
    c.arg("predict").arg(&out).arg(&text);
    fails(&mut c, "notes.txt: not an image");
    let mut c = retrain(t);
    c.arg("predict").arg(mnv2()).arg(shared("images/dog.jpg"));
    fails(&mut c, "not a retrain model");
    // A valid ONNX file without retrain's metadata.
    let plain = t.join("plain.onnx");
    std::fs::write(&plain, strip_metadata(&std::fs::read(&out).unwrap())).unwrap();
    let mut c = retrain(t);
    c.arg("eval").arg(&plain).arg(&data);
    fails(&mut c, "plain.onnx: not a retrain model");
    let mut c = retrain(t);
    c.arg("predict").arg(t.join("nope.onnx")).arg(shared("images/dog.jpg"));
    fails(&mut c, "nope.onnx");
}

/// Re-encodes a model without its metadata_props (field 14 of ModelProto).
fn strip_metadata(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    let varint = |b: &[u8], i: &mut usize| -> u64 {
        let (mut v, mut s) = (0u64, 0);
        loop {
            let x = b[*i];
            *i += 1;
            v |= ((x & 0x7f) as u64) << s;
            s += 7;
            if x < 0x80 {
                return v;
            }
        }
    };
    while i < bytes.len() {
        let start = i;
        let key = varint(bytes, &mut i);
        match key & 7 {
            0 => {
                varint(bytes, &mut i);
            }
            2 => {
                let len = varint(bytes, &mut i) as usize;
                i += len;
            }
            w => panic!("unexpected wire type {w}"),
        }
        if key >> 3 != 14 {
            out.extend_from_slice(&bytes[start..i]);
        }
    }
    out
}

#[test]
fn flowers_linear_probe_beats_the_pytorch_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("r.json");
    let mut c = retrain(tmp.path());
    c.arg("train")
        .arg(shared("data/flowers"))
        .args(["--val-fraction", "0.2", "--quiet", "--weights"])
        .arg(mnv2())
        .arg("--out")
        .arg(tmp.path().join("f.onnx"))
        .arg("--report")
        .arg(&report);
    ok(&mut c);
    let r = read_json(&report);
    let acc = r["val_accuracy"].as_f64().unwrap();
    // scikit-learn logistic regression on PyTorch MobileNetV2 features, same split rule: 0.744.
    assert!(acc >= 0.744, "flowers val accuracy {acc}");
    // The set's four photos filed under both rose and tulip are label conflicts: left out,
    // wherever the split put them.
    let conflicts = r["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 4, "{conflicts:#?}");
    assert!(conflicts.iter().all(|c| c["classes"] == serde_json::json!(["rose", "tulip"])));
    let leaked: usize = r["leaks"].as_array().unwrap().iter().map(|l| l["val"].as_array().unwrap().len()).sum();
    let (train, val) = (r["train_images"].as_u64().unwrap(), r["val_images"].as_u64().unwrap());
    assert_eq!(train + val + 8 + leaked as u64, 4317, "{train} + {val} + {leaked}");
    assert_eq!(val, 860);
}

#[test]
fn models_lists_the_zoo() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(retrain(tmp.path()).arg("models"));
    assert!(out.contains("mobilenet_v2") && out.contains("efficientnet_lite0"), "{out}");
    let json: Value = serde_json::from_str(&ok(retrain(tmp.path()).args(["models", "--format", "json"]))).unwrap();
    let m = json.as_array().unwrap().iter().find(|m| m["backbone"]["name"] == "mobilenet_v2").unwrap();
    assert_eq!(m["backbone"]["preprocess"]["crop"], 224);
    assert_eq!(m["cached"], false);
    assert_eq!(json.as_array().unwrap().len(), 23);

    // `models fetch` with the file already in the cache verifies it and says where it is
    // (no download happens in tests); a tampered copy is refused.
    let weights = tmp.path().join("retrain/weights");
    std::fs::create_dir_all(&weights).unwrap();
    std::fs::copy(mnv2(), weights.join("mobilenet_v2-b0353104.pth")).unwrap();
    let out = ok(retrain(tmp.path()).args(["models", "fetch", "mobilenet_v2"]));
    assert!(out.contains("retrain/weights/mobilenet_v2-b0353104.pth"), "{out}");
    let table = ok(retrain(tmp.path()).arg("models"));
    assert!(table.lines().any(|l| l.starts_with("mobilenet_v2 ") && l.contains(" yes ")), "{table}");
    std::fs::write(weights.join("mobilenet_v2-b0353104.pth"), b"tampered").unwrap();
    fails(retrain(tmp.path()).args(["models", "fetch", "mobilenet_v2"]), "sha256");
    fails(retrain(tmp.path()).args(["models", "fetch", "nonet"]), "unknown model `nonet`");
}

/// A small ONNX image model as a user might export it: float NCHW input `input` [N,3,32,32],
/// conv + ReLU + global pool (`pooled`), then a 10-way classifier output `logits`.
fn tiny_onnx(path: &Path) {
    use retrain_onnx::{Attr, Dim, GraphBuilder};
    let mut g = GraphBuilder::new("tiny");
    let x = g.input_f32("input", &[Dim::Named("n"), Dim::Fixed(3), Dim::Fixed(32), Dim::Fixed(32)]);
    let wconv: Vec<f32> = (0..16 * 3 * 9).map(|i| ((i * 37 % 17) as f32 - 8.0) / 20.0).collect();
    let wc = g.constant_f32("w", &[16, 3, 3, 3], &wconv);
    let y =
        g.node("Conv", &[&x, &wc], vec![Attr::Ints("kernel_shape", vec![3, 3]), Attr::Ints("pads", vec![1, 1, 1, 1])]);
    let y = g.node("Relu", &[&y], vec![]);
    let pooled = g.node("GlobalAveragePool", &[&y], vec![]);
    let f = g.node("Flatten", &[&pooled], vec![]);
    let wfc: Vec<f32> = (0..10 * 16).map(|i| ((i * 13 % 11) as f32 - 5.0) / 10.0).collect();
    let wf = g.constant_f32("fc", &[16, 10], &wfc);
    let logits = g.node("MatMul", &[&f, &wf], vec![]);
    g.output_f32(&logits, "logits", &[Dim::Named("n"), Dim::Fixed(10)]);
    // Expose the pooled value under a stable name, as `--feature-output` would name it.
    let mut m = g.finish(&[]);
    let graph = m.graph.as_mut().unwrap();
    for n in graph.node.iter_mut() {
        for o in n.output.iter_mut().chain(n.input.iter_mut()) {
            if *o == pooled {
                *o = "pooled".into();
            }
        }
    }
    retrain_onnx::write(&m, path).unwrap();
}

#[test]
fn import_an_onnx_backbone_and_train_on_it() {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("tiny.onnx");
    tiny_onnx(&onnx);
    let mut c = retrain(tmp.path());
    c.args(["models", "import"]).arg(&onnx).args([
        "--name",
        "tiny",
        "--input-size",
        "32",
        "--feature-output",
        "pooled",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
    ]);
    let out = ok(&mut c);
    assert!(out.contains("imported tiny (16 features"), "{out}");
    let list = ok(retrain(tmp.path()).arg("models"));
    assert!(list.lines().any(|l| l.starts_with("tiny ") && l.contains(" 16 ")), "{list}");

    let model = tmp.path().join("m.onnx");
    let report = tmp.path().join("r.json");
    let mut c = retrain(tmp.path());
    c.arg("train")
        .arg(root().join("examples/flowers-mini"))
        .args(["--model", "tiny", "--quiet", "--out"])
        .arg(&model)
        .arg("--report")
        .arg(&report);
    ok(&mut c);
    let r = read_json(&report);
    assert_eq!(r["backbone"], "tiny");
    let mut c = retrain(tmp.path());
    c.args(["eval", "--format", "json", "--quiet"]).arg(&model).arg(root().join("examples/flowers-mini"));
    let ev: Value = serde_json::from_str(&ok(&mut c)).unwrap();
    assert_eq!(ev["images"], 48);

    // The default feature value is the model's first output; a missing one is an error.
    let mut c = retrain(tmp.path());
    c.args(["models", "import"]).arg(&onnx).args(["--name", "tiny2", "--input-size", "32", "--feature-output", "nope"]);
    fails(&mut c, "no value named `nope`");
    let mut c = retrain(tmp.path());
    c.args(["models", "import"]).arg(&onnx).args(["--name", "resnet50", "--input-size", "32"]);
    fails(&mut c, "is a built-in model");
    let mut c = retrain(tmp.path());
    c.args(["models", "import"]).arg(mnv2()).args(["--name", "x", "--input-size", "32"]);
    fails(&mut c, "not an ONNX model");
}

#[test]
fn imagenet_predictions_from_a_bare_backbone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = retrain(tmp.path());
    c.args(["predict", "--model", "mobilenet_v2", "--top", "3", "--weights"])
        .arg(mnv2())
        .arg(shared("images/dog.jpg"))
        .arg(shared("images/chelsea.png"));
    let out = ok(&mut c);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // torchvision's top-1 for these photos (../shared/reference/imagenet_logits.json).
    assert!(lines[0].contains("dog.jpg") && lines[0].contains("\tmalamute "), "{out}");
    assert!(lines[1].contains("chelsea.png") && lines[1].contains("\tEgyptian cat "), "{out}");
}

#[test]
fn resnet50_trains_end_to_end_from_a_torchvision_format_file() {
    // Any torchvision-format ResNet-50 state dict: the synthetic one of the parity fixtures,
    // written as safetensors (the accuracy is meaningless; the pipeline is the point).
    let tmp = tempfile::tempdir().unwrap();
    let w = synthetic_weights(tmp.path(), "resnet50");
    let report = tmp.path().join("r.json");
    let mut c = retrain(tmp.path());
    c.arg("train")
        .arg(shared("data/hymenoptera"))
        .args(["--model", "resnet50", "--quiet", "--weights"])
        .arg(&w)
        .arg("--out")
        .arg(tmp.path().join("r50.onnx"))
        .arg("--report")
        .arg(&report);
    ok(&mut c);
    let r = read_json(&report);
    assert_eq!(r["backbone"], "resnet50");
    assert_eq!(r["val_images"], 153);
    // Wrong architecture: resnet50 weights for resnet18 list the mismatches by name and shape.
    let mut c = retrain(tmp.path());
    c.arg("train")
        .arg(root().join("examples/flowers-mini"))
        .args(["--model", "resnet18", "--quiet", "--weights"])
        .arg(&w)
        .arg("--out")
        .arg(tmp.path().join("x.onnx"));
    let e = fails(&mut c, "these weights do not fit resnet18");
    assert!(e.contains("layer1.0.conv1.weight has shape [64, 64, 1, 1], expected [64, 64, 3, 3]"), "{e}");
}

fn finetune_args(cmd: &mut Command, data: &Path, out: &Path) {
    cmd.arg("train").arg(data).arg("--weights").arg(mnv2()).args([
        "--strategy",
        "finetune",
        "--epochs",
        "4",
        "--batch",
        "4",
        "--patience",
        "10",
        "--seed",
        "3",
        "--augment",
        "standard",
        "--threads",
        "2",
        "--out",
    ]);
    cmd.arg(out);
}

#[test]
fn finetune_interrupted_and_resumed_ends_with_the_same_model_and_eval_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = mini_split(tmp.path());

    // Uninterrupted.
    let a = tmp.path().join("a.onnx");
    let report = tmp.path().join("a.json");
    let mut cmd = retrain(&cache);
    finetune_args(&mut cmd, &data, &a);
    let stdout = ok(cmd.arg("--report").arg(&report));
    assert!(stdout.contains("fine-tuning: 12 block(s) from features.7"), "{stdout}");
    let r = read_json(&report);
    let f = &r["finetune"];
    let curve = f["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 5, "epoch 0 (linear head) + 4 epochs");
    assert_eq!(f["epochs_run"], 4);
    for (i, e) in curve.iter().enumerate() {
        assert_eq!(e["epoch"], i);
        assert!(e["val_loss"].as_f64().unwrap().is_finite());
    }
    // The kept epoch is the one with the lowest validation loss.
    let best = f["best_epoch"].as_u64().unwrap() as usize;
    let min = curve.iter().map(|e| e["val_loss"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    assert_eq!(curve[best]["val_loss"].as_f64().unwrap(), min);
    // The default weight average is checkpointed, so the resume below depends on it too.
    let state = read_json(&a.with_extension("run").join("state.json"));
    let generation = a.with_extension("run").join(format!("checkpoint-{}", state["generation"]));
    assert!(generation.join("average.safetensors").is_file());
    assert_eq!(std::fs::read_dir(a.with_extension("run")).unwrap().count(), 3, "run.json, state.json, one generation");

    // `retrain eval` on the written model gives the reported validation accuracy.
    let ev: Value =
        serde_json::from_str(&ok(retrain(&cache).args(["eval", "--format", "json"]).arg(&a).arg(&data))).unwrap();
    assert_eq!(ev["accuracy"], r["val_accuracy"]);
    assert_eq!(ev["confusion_matrix"], r["confusion_matrix"]);
    assert_eq!(ev["images"], 12);

    // Interrupted with Ctrl-C (SIGINT) after the first epoch's checkpoint, then resumed.
    let b = tmp.path().join("b.onnx");
    let run_dir = b.with_extension("run");
    let mut cmd = retrain(&cache);
    finetune_args(&mut cmd, &data, &b);
    let child = cmd.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !run_dir.join("state.json").exists() {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{se}");
    assert!(se.contains("--resume"), "{se}");
    assert!(!se.contains("panicked"), "{se}");
    assert!(!b.exists(), "an interrupted run writes no model");
    let state = read_json(&run_dir.join("state.json"));
    assert!(!state["progress"]["finished"].as_bool().unwrap());
    assert!(state["progress"]["epoch"].as_u64().unwrap() < 4);

    // Damaged after it was written: resuming refuses, naming the file, and changes nothing.
    let committed = run_dir.join(format!("checkpoint-{}", state["generation"]));
    let copy = tmp.path().join("copy.run");
    std::fs::create_dir_all(copy.join(committed.file_name().unwrap())).unwrap();
    for f in ["run.json", "state.json"] {
        std::fs::copy(run_dir.join(f), copy.join(f)).unwrap();
    }
    for e in std::fs::read_dir(&committed).unwrap().map(Result::unwrap) {
        std::fs::copy(e.path(), copy.join(committed.file_name().unwrap()).join(e.file_name())).unwrap();
    }
    let weights = copy.join(committed.file_name().unwrap()).join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let err = fails(retrain(&cache).arg("train").arg("--resume").arg(&copy), "checksum differs");
    assert!(err.contains("weights.safetensors"), "{err}");
    assert!(!b.exists());
    // Killed in the middle of writing the next checkpoint: a generation folder `state.json`
    // does not name yet, with some of its files, one cut short. Resuming ignores it and ends
    // with the same model as the run that was never interrupted.
    let next = run_dir.join(format!("checkpoint-{}", state["generation"].as_u64().unwrap() + 1));
    std::fs::create_dir(&next).unwrap();
    // Another epoch's weights (the finished run's), as the next checkpoint would hold.
    std::fs::copy(generation.join("weights.safetensors"), next.join("weights.safetensors")).unwrap();
    let optim = std::fs::read(committed.join("optim_head.bpk")).unwrap();
    std::fs::write(next.join("optim_head.bpk"), &optim[..optim.len() / 2]).unwrap();
    ok(retrain(&cache).arg("train").arg("--resume").arg(&run_dir));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "resumed run ends with different weights");

    // Resuming something that is not a run directory names it.
    fails(retrain(&cache).arg("train").arg("--resume").arg(&data), "not a fine-tuning run directory");
    // Asking for more blocks than the backbone has lists them.
    let mut cmd = retrain(&cache);
    cmd.arg("train").arg(&data).arg("--weights").arg(mnv2()).args(["--strategy", "finetune", "--unfreeze", "40"]);
    fails(cmd.arg("--out").arg(tmp.path().join("c.onnx")), "--unfreeze must be 1..=19");
}

#[test]
fn int8_model_trains_evaluates_and_runs_in_python_like_fp32() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared("data/hymenoptera");
    let train = |precision: &str| {
        let (model, report) =
            (tmp.path().join(format!("{precision}.onnx")), tmp.path().join(format!("{precision}.json")));
        let mut c = retrain(tmp.path());
        c.args(["train", data.to_str().unwrap(), "--quiet", "--precision", precision, "--weights"])
            .arg(mnv2())
            .arg("--out")
            .arg(&model)
            .arg("--report")
            .arg(&report);
        ok(&mut c);
        (model, read_json(&report))
    };
    let (_, fp32) = train("fp32");
    let (model, int8) = train("int8");
    assert_eq!(int8["precision"], "int8");
    assert_eq!(fp32["precision"], "fp32");
    assert!(int8["timings"]["calibration"].as_f64().unwrap() > 0.0);
    // Its own features (not the fp32 cache's), within a point or so of fp32 (153 images: one
    // image is 0.65 points).
    assert_eq!(int8["features_computed"], 398);
    let (a, q) = (fp32["val_accuracy"].as_f64().unwrap(), int8["val_accuracy"].as_f64().unwrap());
    assert!(q >= a - 0.014 && q >= 0.94, "int8 {q} vs fp32 {a}");

    // Again: ranges and int8 features come from the cache, and the model is the same file.
    let first = std::fs::read(&model).unwrap();
    let (_, again) = train("int8");
    assert_eq!(again["features_cached"], 398);
    assert_eq!(again["val_accuracy"], int8["val_accuracy"]);
    assert!(std::fs::read(&model).unwrap() == first, "same data and seed must give the same int8 model");

    let m = retrain_onnx::read(&model).unwrap();
    let g = m.graph.as_ref().unwrap();
    assert!(g.node.iter().filter(|n| n.op_type == "QuantizeLinear").count() >= 60);
    assert!(retrain_onnx::metadata(&m, "retrain.precision").unwrap().starts_with("int8"));

    // eval of the int8 file gives what training reported; Python's onnxruntime runs it too.
    let mut c = retrain(tmp.path());
    c.args(["eval", "--format", "json", "--quiet"]).arg(&model).arg(&data);
    let ev: Value = serde_json::from_str(&ok(&mut c)).unwrap();
    assert!((ev["accuracy"].as_f64().unwrap() - q).abs() < 1e-9, "eval {} vs train {q}", ev["accuracy"]);
    assert_eq!(ev["confusion_matrix"], int8["confusion_matrix"]);
    let image = shared("images/chelsea.png");
    let mut c = retrain(tmp.path());
    c.args(["predict", "--format", "json", "--top", "2", "--quiet"]).arg(&model).arg(&image);
    let pred: Value = serde_json::from_str(&ok(&mut c)).unwrap();
    let py = python_probabilities(&model, std::slice::from_ref(&image));
    for ranked in pred["predictions"][0]["top"].as_array().unwrap() {
        let (class, ours) = (ranked["class"].as_str().unwrap(), ranked["probability"].as_f64().unwrap());
        let theirs = py[image.to_str().unwrap()][class].as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-5, "{class}: retrain {ours} vs python {theirs}");
    }

    // bf16 is refused before any work, with the reason.
    let mut c = retrain(tmp.path());
    c.args(["train", data.to_str().unwrap(), "--precision", "bf16", "--weights"])
        .arg(mnv2())
        .arg("--out")
        .arg(tmp.path().join("b.onnx"));
    let se = fails(&mut c, "--precision bf16: ONNX's Conv is defined for float16/float/double only");
    assert!(se.contains("--precision int8"), "{se}");
}

#[test]
fn finetune_with_batchnorm_in_training_mode_exports_it_folded_and_eval_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = mini_split(tmp.path());
    let run = |bn: &str| {
        let out = tmp.path().join(format!("{bn}.onnx"));
        let report = tmp.path().join(format!("{bn}.json"));
        let mut cmd = retrain(&cache);
        finetune_args(&mut cmd, &data, &out);
        ok(cmd.args(["--batchnorm", bn]).arg("--report").arg(&report));
        (out, read_json(&report))
    };
    let (frozen_model, frozen) = run("frozen");
    let (model, r) = run("train");
    assert_eq!(r["finetune"]["config"]["batchnorm"], "train");
    let (c0, c1) = (&frozen["finetune"]["curve"], &r["finetune"]["curve"]);
    // Epoch 0 evaluates the same linear head through BatchNorm nodes on their running statistics.
    let (l0, l1) = (c0[0]["val_loss"].as_f64().unwrap(), c1[0]["val_loss"].as_f64().unwrap());
    assert!((l0 - l1).abs() < 1e-5, "{l0} vs {l1}");
    // Training on batch statistics moves the running ones: epoch 1 differs.
    assert_ne!(c0[1]["val_loss"], c1[1]["val_loss"]);
    // The export folds them back into the convolutions: the same graph as the frozen model's.
    let bytes = std::fs::read(&model).unwrap();
    let has_bn = |b: &[u8]| b.windows(18).any(|w| w == b"BatchNormalization");
    assert!(!has_bn(&bytes) && !has_bn(&std::fs::read(&frozen_model).unwrap()));
    let ev: Value =
        serde_json::from_str(&ok(retrain(&cache).args(["eval", "--format", "json"]).arg(&model).arg(&data))).unwrap();
    assert_eq!(ev["accuracy"], r["val_accuracy"]);
    assert_eq!(ev["confusion_matrix"], r["confusion_matrix"]);
}

#[test]
fn a_run_directory_of_an_older_retrain_is_refused_clearly() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("old.run");
    std::fs::create_dir_all(&run).unwrap();
    // A run.json as retrain wrote it before run files had a version: one flat list of options.
    std::fs::copy(root().join("tests/fixtures/run-json-before-version.json"), run.join("run.json")).unwrap();
    let se = fails(retrain(t.path()).args(["train", "--resume"]).arg(&run), "run.json: written by an older retrain");
    assert!(se.contains("train again without --resume"), "{se}");
}
