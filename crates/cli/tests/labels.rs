//! `--labels FILE`: photos described by a table instead of class folders. A CSV or JSON-lines
//! export of the bundled flowers-mini folders must train the same model as the folders do.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

const CLASSES: [&str; 3] = ["daisy", "dandelion", "sunflower"];

/// Every flowers-mini photo in one flat folder `photos/`, renamed so no name tells its class,
/// and the (class, relative path) of each in the order a folder walk gives.
fn flat(dir: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    let mut rows = Vec::new();
    for class in CLASSES {
        for (i, f) in mini_photos(class).iter().enumerate() {
            let name = format!("photos/{}{i:02}.jpg", &class[..3]);
            std::fs::copy(f, dir.join(&name)).unwrap();
            rows.push((class.to_string(), name));
        }
    }
    rows
}

fn probabilities(home: &Path, model: &Path, data: &Path) -> Vec<Vec<f64>> {
    let out = succeeds(retrain(home).args(["predict", "-q", "--top", "3", "--format", "json"]).arg(model).arg(data));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows: Vec<(String, Vec<f64>)> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = Path::new(e["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap().to_string();
            let mut p: Vec<(String, f64)> = e["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["class"].as_str().unwrap().to_string(), t["probability"].as_f64().unwrap()))
                .collect();
            p.sort_by(|a, b| a.0.cmp(&b.0));
            (name, p.into_iter().map(|(_, x)| x).collect())
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, p)| p).collect()
}

fn eval_accuracy(home: &Path, model: &Path, data: &Path, extra: &[&str]) -> (f64, u64) {
    let out = succeeds(retrain(home).args(["eval", "-q", "--format", "json"]).arg(model).arg(data).args(extra));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["accuracy"].as_f64().unwrap(), v["images"].as_u64().unwrap())
}

#[test]
fn a_label_file_trains_what_its_folders_train() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let folders = flowers_mini(&t.join("folders"), 16);
    let data = t.join("table");
    let rows = flat(&data);
    // Header names in another case and order, as a labelling tool exports them.
    let csv: String =
        std::iter::once("Label,Filename\n".to_string()).chain(rows.iter().map(|(c, p)| format!("{c},{p}\n"))).collect();
    let labels = data.join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    let lp = labels.to_str().unwrap();

    let (m_folders, m_table) = (t.join("folders.onnx"), t.join("table.onnx"));
    let (r_folders, r_table) = (t.join("folders.json"), t.join("table.json"));
    succeeds(&mut train(t, &folders, &m_folders, &["--report", r_folders.to_str().unwrap()]));
    let out = succeeds(&mut train(t, &data, &m_table, &["--labels", lp, "--report", r_table.to_str().unwrap()]));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a, b) = (read_json(&r_folders), read_json(&r_table));
    assert_eq!(a["val_accuracy"], b["val_accuracy"]);
    assert_eq!(a["confusion_matrix"], b["confusion_matrix"]);
    assert_eq!(a["class_names"], b["class_names"]);
    // Same split, same features, same head: the same answers on every photo.
    let (pa, pb) = (probabilities(t, &m_folders, &folders), probabilities(t, &m_table, &folders));
    assert_eq!(pa.len(), 48);
    for (x, y) in pa.iter().zip(&pb) {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() < 1e-6, "{x:?} vs {y:?}");
        }
    }
    // eval and report read the same table; without a split column, every row is scored.
    let by_folders = eval_accuracy(t, &m_table, &folders, &[]);
    assert_eq!(by_folders, eval_accuracy(t, &m_table, &data, &["--labels", lp]));
    assert_eq!(by_folders.1, 48);
    let page = t.join("report.html");
    succeeds(retrain(t).args(["report", "-q"]).arg(&m_table).arg(&data).args(["--labels", lp, "--out"]).arg(&page));
    assert!(std::fs::read_to_string(&page).unwrap().contains("dandelion"));

    // The audit reads the table too; its decisions are not carried out on class folders.
    let sugg = t.join("suggested.json");
    let out = succeeds(
        retrain(t)
            .args(["audit", "-q", "--format", "json", "--weights"])
            .arg(mnv2())
            .arg(&data)
            .args(["--labels", lp, "--out"])
            .arg(t.join("audit.html"))
            .arg("--suggested")
            .arg(&sugg),
    );
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(audit["images"], 48, "{audit}");
    assert_eq!(read_json(&sugg)["labels"], labels.canonicalize().unwrap().to_str().unwrap());
    fails(retrain(t).args(["audit", "apply"]).arg(&sugg), "does not edit label files yet");

    // JSON lines with a split column: the split is the file's.
    let jsonl: String = rows
        .iter()
        .enumerate()
        .map(|(i, (c, p))| {
            let split = if i % 16 < 12 { "train" } else { "val" };
            format!("{{\"path\": \"{p}\", \"labels\": [\"{c}\"], \"split\": \"{split}\"}}\n")
        })
        .collect();
    let jl = data.join("labels.jsonl");
    std::fs::write(&jl, jsonl).unwrap();
    let r_json = t.join("jsonl.json");
    succeeds(&mut train(
        t,
        &data,
        &t.join("jsonl.onnx"),
        &["--labels", jl.to_str().unwrap(), "--report", r_json.to_str().unwrap()],
    ));
    let r = read_json(&r_json);
    let val: u64 = r["per_class"].as_array().unwrap().iter().map(|c| c["support"].as_u64().unwrap()).sum();
    assert_eq!(val, 12, "{r}");
    let split = mini_split(&t.join("split"));
    let r_split = t.join("split.json");
    succeeds(&mut train(t, &split, &t.join("split.onnx"), &["--report", r_split.to_str().unwrap()]));
    assert_eq!(read_json(&r_split)["val_accuracy"], r["val_accuracy"]);
    // eval of a table with a split scores its val rows.
    assert_eq!(eval_accuracy(t, &t.join("jsonl.onnx"), &data, &["--labels", jl.to_str().unwrap()]).1, 12);
}

#[test]
fn what_a_label_file_gets_wrong_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("table");
    let rows = flat(&data);
    let labels = data.join("labels.csv");
    let write = |extra: &str| {
        let body: String = rows.iter().map(|(c, p)| format!("{p},{c}\n")).collect();
        std::fs::write(&labels, format!("path,label\n{body}{extra}")).unwrap();
    };
    let lp = labels.to_str().unwrap();
    let model = t.join("m.onnx");

    // A photo the file does not list is left out and said; a listed photo not there stops the
    // run, naming it and its line, unless --skip-missing.
    std::fs::copy(mini_photos("daisy")[0].clone(), data.join("photos/stray.jpg")).unwrap();
    write("photos/gone.jpg,daisy\n");
    let e = fails(&mut train(t, &data, &model, &["--labels", lp]), "1 listed photo is not found");
    assert!(e.contains("line 50: ") && e.contains("gone.jpg"), "{e}");
    assert!(!model.exists());
    let r = t.join("r.json");
    succeeds(&mut train(t, &data, &model, &["--labels", lp, "--skip-missing", "--report", r.to_str().unwrap()]));
    let report = read_json(&r);
    let skipped: Vec<&Value> = report["skipped"].as_array().unwrap().iter().collect();
    assert!(skipped.iter().any(|s| s["path"].as_str().unwrap().ends_with("gone.jpg")), "{report}");
    let mut loud = retrain(t);
    loud.args(["train", data.to_str().unwrap(), "--weights"]).arg(mnv2()).args([
        "--out",
        model.to_str().unwrap(),
        "--labels",
        lp,
        "--skip-missing",
    ]);
    let out = succeeds(&mut loud);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("1 file in ") && said.contains("is not listed in") && said.contains("stray.jpg"), "{said}");

    std::fs::remove_file(&model).unwrap();
    write("photos/dai00.jpg,sunflower\n");
    fails(
        &mut train(t, &data, &model, &["--labels", lp]),
        "photos/dai00.jpg is listed twice, differently: line 2 says daisy",
    );
    write("photos/extra.jpg,daisy|sunflower\n");
    std::fs::copy(mini_photos("daisy")[1].clone(), data.join("photos/extra.jpg")).unwrap();
    // Several labels train one sigmoid per class unless the user asked for one label a photo.
    fails(
        &mut train(t, &data, &model, &["--labels", lp, "--task", "single-label"]),
        "has 2 labels (daisy, sunflower) but --task single-label gives each photo one",
    );
    write("photos/extra.jpg,\n");
    fails(&mut train(t, &data, &model, &["--labels", lp]), "line 50: photos/extra.jpg has no label");
    std::fs::write(&labels, "name,class\nphotos/dai00.jpg,daisy\n").unwrap();
    fails(&mut train(t, &data, &model, &["--labels", lp]), "has no path column");
    assert!(!model.exists());

    // eval: a label the model does not know is refused, naming the line.
    write("");
    succeeds(&mut train(t, &data, &model, &["--labels", lp]));
    write("photos/extra.jpg,tulip\n");
    fails(
        retrain(t).args(["eval", "-q"]).arg(&model).arg(&data).args(["--labels", lp]),
        "line 50: the label `tulip` is not one of the model's classes",
    );
    // A one-label model is not scored on several labels a photo.
    write("photos/extra.jpg,daisy|sunflower\n");
    let e = fails(
        retrain(t).args(["eval", "-q"]).arg(&model).arg(&data).args(["--labels", lp]),
        "photos/extra.jpg has 2 labels (daisy, sunflower) but the model gives each photo one",
    );
    assert!(e.contains("line 50: "), "{e}");
    // --labels and --val are one or the other.
    let out = run(&mut train(t, &data, &model, &["--labels", lp, "--val", data.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2));
}
