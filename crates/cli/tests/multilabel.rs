//! Photos with several labels (`--task multi-label`): 2×2 mosaics of ../shared flowers photos,
//! each labelled with the species it shows, trained from a label file; the thresholds in the
//! model file, `predict`, `eval` and `serve` agreeing on every photo's labels.

mod common;

use common::server::*;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

const SPECIES: [&str; 5] = ["daisy", "dandelion", "rose", "sunflower", "tulip"];

/// `count` mosaics in `dir/m/`, each of 1–3 species (seeded; every photo used once), and
/// `dir/labels.csv` (`path,labels`).
fn mosaics(dir: &Path, count: usize) -> Vec<BTreeSet<String>> {
    std::fs::create_dir_all(dir.join("m")).unwrap();
    let mut photos: Vec<Vec<std::path::PathBuf>> = SPECIES
        .iter()
        .map(|s| {
            let mut v: Vec<_> =
                std::fs::read_dir(shared("data/flowers").join(s)).unwrap().map(|e| e.unwrap().path()).collect();
            v.sort();
            v
        })
        .collect();
    let mut state = 7u64;
    let mut rnd = |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % n as u64) as usize
    };
    let (mut csv, mut sets) = (String::from("path,labels\n"), Vec::new());
    for i in 0..count {
        let k = 1 + rnd(3);
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < k {
            let s = rnd(SPECIES.len());
            if !chosen.contains(&s) {
                chosen.push(s);
            }
        }
        let mut quarters: Vec<usize> = chosen.clone();
        while quarters.len() < 4 {
            quarters.push(chosen[rnd(k)]);
        }
        let mut canvas = image::RgbImage::new(224, 224);
        for (q, &s) in quarters.iter().enumerate() {
            let photo = photos[s].pop().unwrap();
            let tile = image::open(&photo).unwrap().resize_exact(112, 112, image::imageops::FilterType::Triangle);
            image::imageops::replace(&mut canvas, &tile.to_rgb8(), (q % 2) as i64 * 112, (q / 2) as i64 * 112);
        }
        let name = format!("m/{i:03}.jpg");
        canvas.save(dir.join(&name)).unwrap();
        let set: BTreeSet<String> = chosen.iter().map(|&s| SPECIES[s].to_string()).collect();
        csv += &format!("{name},{}\n", set.iter().cloned().collect::<Vec<_>>().join("|"));
        sets.push(set);
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    sets
}

/// Each photo's labels (file name → set) from `predict --format json`, checking that they are
/// exactly the classes at or above their thresholds.
fn predicted(home: &Path, model: &Path, files: &Path) -> Vec<(String, BTreeSet<String>)> {
    let out = succeeds(retrain(home).args(["predict", "-q", "--format", "json", "--top", "5"]).arg(model).arg(files));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows: Vec<(String, BTreeSet<String>)> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = Path::new(p["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap().to_string();
            let labels: BTreeSet<String> =
                p["labels"].as_array().unwrap().iter().map(|l| l["class"].as_str().unwrap().to_string()).collect();
            for l in p["labels"].as_array().unwrap() {
                assert!(l["probability"].as_f64() >= l["threshold"].as_f64(), "{l}");
            }
            (name, labels)
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn mosaics_train_a_model_whose_labels_predict_eval_and_serve_agree_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, data) = (tmp.path(), tmp.path().join("mosaics"));
    let sets = mosaics(&data, 160);
    assert!(sets.iter().any(|s| s.len() > 1) && sets.iter().any(|s| s.len() == 1));
    let labels = data.join("labels.csv");
    let lp = labels.to_str().unwrap();
    let (model, report) = (t.join("ml.onnx"), t.join("ml.json"));

    // Chosen from the file, and said.
    let out = succeeds(retrain(t).args(["train", data.to_str().unwrap(), "--weights"]).arg(mnv2()).args([
        "--out",
        model.to_str().unwrap(),
        "--labels",
        lp,
        "--report",
        report.to_str().unwrap(),
    ]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("several labels") && said.contains("--task multi-label"), "{said}");
    let r = read_json(&report);
    let ml = &r["multi_label"];
    let thresholds: Vec<f64> = ml["thresholds"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    assert_eq!(thresholds.len(), 5);
    assert!(thresholds.iter().all(|&t| t > 0.0 && t < 1.0), "{thresholds:?}");
    // Real photos: far better than chance (the average precision of random scores is each
    // label's share, about 0.4).
    let map = ml["metrics"]["mean_average_precision"].as_f64().unwrap();
    assert!(map > 0.7, "mAP {map}");
    assert_eq!(r["val_accuracy"], ml["metrics"]["subset_accuracy"]);
    assert_eq!(r["confusion_matrix"], serde_json::json!([]));

    // eval: a label file without a split column is scored whole, every photo's labels read.
    let out =
        succeeds(retrain(t).args(["eval", "-q", "--format", "json"]).arg(&model).arg(&data).args(["--labels", lp]));
    let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["images"].as_u64().unwrap() as usize, sets.len());
    assert!(ev["accuracy"].is_null(), "no single-label accuracy: {ev}");
    let per_class = ev["multi_label"]["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 5);
    for (c, s) in per_class.iter().zip(SPECIES) {
        let support = sets.iter().filter(|set| set.contains(s)).count();
        assert_eq!(c["support"].as_u64().unwrap() as usize, support, "{c}");
    }

    // The HTML report on the same photos: eval's figures, which labels come together, and the
    // photos with the most wrong labels, each explained for the label it got most wrong.
    let page = t.join("ml.html");
    let out = succeeds(
        retrain(t)
            .args(["report", "-q", "--format", "json"])
            .arg(&model)
            .arg(&data)
            .args(["--labels", lp, "--out"])
            .arg(&page),
    );
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ml = &rep["multi_label"];
    for key in ["mean_average_precision", "macro_f1", "micro_f1", "subset_accuracy"] {
        let (a, b) = (ml["metrics"][key].as_f64().unwrap(), ev["multi_label"][key].as_f64().unwrap());
        assert!((a - b).abs() < 0.01, "{key}: report {a}, eval {b}");
    }
    assert!(rep["confusion_matrix"].is_null() && rep["per_class"].is_null(), "no one-label metrics: {rep}");
    let together = ml["co_occurrence"].as_array().unwrap();
    for (a, sa) in SPECIES.iter().enumerate() {
        for (b, sb) in SPECIES.iter().enumerate() {
            let both = sets.iter().filter(|set| set.contains(*sa) && set.contains(*sb)).count();
            assert_eq!(together[a][b].as_u64().unwrap() as usize, both, "{sa} with {sb}");
        }
    }
    let wrong = ml["most_wrong"].as_array().unwrap();
    assert_eq!(wrong.len(), 12, "{ml}");
    let count = |w: &Value| w["missed"].as_array().unwrap().len() + w["added"].as_array().unwrap().len();
    for (w, next) in wrong.iter().zip(wrong.iter().skip(1)) {
        assert!(count(w) >= count(next) && count(w) > 0, "most wrong first: {w} {next}");
    }
    for w in wrong {
        let name = Path::new(w["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap().to_string();
        let i: usize = name.trim_end_matches(".jpg").parse().unwrap();
        let labels: BTreeSet<String> =
            w["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
        assert_eq!(labels, sets[i], "{w}");
        let explained = w["explained"].as_str().unwrap();
        assert!(w["missed"].as_array().unwrap().iter().chain(w["added"].as_array().unwrap()).any(|l| l == explained));
    }
    let html = std::fs::read_to_string(&page).unwrap();
    for needle in ["Mean average precision", "Per label", "Labels together", "Photos with the most wrong labels"] {
        assert!(html.contains(needle), "{needle}");
    }
    assert_eq!(html.matches("alt=\"heatmap\"").count(), 12);

    // predict: every label at or above its threshold; CSV has a row per class.
    let got = predicted(t, &model, &data.join("m"));
    assert_eq!(got.len(), 160);
    assert!(got.iter().any(|(_, l)| l.len() > 1), "some photo gets several labels");
    let out = succeeds(retrain(t).args(["predict", "-q", "--format", "csv"]).arg(&model).arg(data.join("m/000.jpg")));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("path,class,probability,threshold,label\n"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 5);

    // explain: one picture per label a photo is given, each named by its label.
    let (name, labels) = got.iter().find(|(_, l)| l.len() > 1).unwrap();
    let why = t.join("why");
    let o = succeeds(
        retrain(t)
            .args(["explain", "--format", "json"])
            .arg(&model)
            .arg(data.join("m").join(name))
            .arg("--out")
            .arg(&why),
    );
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let explained: BTreeSet<String> = rows.iter().map(|r| r["class"].as_str().unwrap().to_string()).collect();
    assert_eq!(rows.len(), labels.len(), "{rows:?}");
    assert_eq!(&explained, labels);
    let pictures: BTreeSet<&str> = rows.iter().map(|r| r["picture"].as_str().unwrap()).collect();
    assert_eq!(pictures.len(), rows.len());
    for r in &rows {
        let class = r["class"].as_str().unwrap();
        assert!(r["picture"].as_str().unwrap().ends_with(&format!("-{class}.png")), "{r}");
        assert!(Path::new(r["picture"].as_str().unwrap()).is_file());
    }

    // serve answers from the graph's own `labels` output: the same labels as predict.
    let server = Server::start(t, &[&model], &[]);
    let u = &server.url;
    for (name, want) in got.iter().take(12) {
        let (status, ans, _) =
            post(&format!("{u}/v1/predict"), "image/jpeg", &std::fs::read(data.join("m").join(name)).unwrap());
        assert_eq!(status, 200, "{ans}");
        let labels: BTreeSet<String> = ans["labels"]
            .as_array()
            .unwrap_or_else(|| panic!("{ans}"))
            .iter()
            .map(|l| l["class"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(&labels, want, "{name}: {ans}");
    }
    // Several files in one form: each gets its labels.
    let (a, b) = (&got[0], &got[1]);
    let read = |n: &str| std::fs::read(data.join("m").join(n)).unwrap();
    let (ct, body) = multipart(&[(&a.0, &read(&a.0)), (&b.0, &read(&b.0))]);
    let (status, ans, _) = post(&format!("{u}/v1/predict"), &ct, &body);
    assert_eq!(status, 200, "{ans}");
    for (r, (_, want)) in ans["results"].as_array().unwrap().iter().zip([a, b]) {
        let labels: BTreeSet<String> =
            r["labels"].as_array().unwrap().iter().map(|l| l["class"].as_str().unwrap().to_string()).collect();
        assert_eq!(&labels, want, "{r}");
    }
    let meta: Value = serde_json::from_str(&get(&format!("{u}/v2/models/ml")).1).unwrap();
    assert_eq!(meta["parameters"]["task"], "multi-label", "{meta}");
    assert!(meta["outputs"].as_array().unwrap().iter().any(|o| o["name"] == "labels"), "{meta}");
    server.stop();
}

#[test]
fn the_task_can_be_forced_either_way_and_what_reads_one_label_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, data) = (tmp.path(), tmp.path().join("mosaics"));
    mosaics(&data, 40);
    let lp = data.join("labels.csv");
    let lp = lp.to_str().unwrap();
    let out = t.join("x.onnx");
    let se = fails(&mut train(t, &data, &out, &["--labels", lp, "--task", "single-label"]), "--task multi-label");
    assert!(se.contains("labels.csv"), "{se}");
    assert!(!out.exists());
    // Fine-tuning trains with binary cross-entropy and tunes the thresholds again on the
    // fine-tuned features: the model file carries its own.
    let r = t.join("ft.json");
    succeeds(&mut train(
        t,
        &data,
        &out,
        &["--labels", lp, "--strategy", "finetune", "--epochs", "1", "--report", r.to_str().unwrap()],
    ));
    let ft = read_json(&r);
    let th = ft["multi_label"]["thresholds"].as_array().unwrap().clone();
    assert_eq!(th.len(), 5, "{ft}");
    assert_eq!(ft["finetune"]["epochs_run"], 1);
    let proto = retrain_onnx::read(&out).unwrap();
    let stored: Value = serde_json::from_str(
        proto.metadata_props.iter().find(|p| p.key == "retrain.multi_label").unwrap().value.as_str(),
    )
    .unwrap();
    assert_eq!(stored["thresholds"].as_array().unwrap(), &th);
    let got = predicted(t, &out, &data.join("m"));
    assert_eq!(got.len(), 40);
    fails(
        retrain(t).args(["audit", data.to_str().unwrap(), "-q", "--labels", lp, "--weights"]).arg(mnv2()),
        "several labels",
    );

    // Folders, one label each, trained as several-labels: one sigmoid per class.
    let folders = flowers_mini(&t.join("mini"), 16);
    let (m, r) = (t.join("mini.onnx"), t.join("mini.json"));
    succeeds(&mut train(t, &folders, &m, &["--task", "multi-label", "--report", r.to_str().unwrap()]));
    assert_eq!(read_json(&r)["multi_label"]["thresholds"].as_array().unwrap().len(), 3);
    let out = succeeds(retrain(t).args(["predict", "-q", "--format", "json"]).arg(&m).arg(folders.join("daisy")));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["predictions"][0]["labels"].is_array(), "{v}");
    // explain: the probabilities are predict's sigmoids, not a softmax over the classes.
    let o = succeeds(
        retrain(t)
            .args(["explain", "--format", "json"])
            .arg(&m)
            .arg(folders.join("daisy"))
            .arg("--out")
            .arg(t.join("why")),
    );
    let why: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut sum = 0.0;
    let by_path = |p: &Value| Path::new(p["path"].as_str().unwrap()).file_name().unwrap().to_owned();
    for e in why.as_array().unwrap() {
        let p = v["predictions"].as_array().unwrap().iter().find(|p| by_path(p) == by_path(e)).unwrap();
        assert_eq!(e["top"][0]["class"], p["top"][0]["class"], "{e}");
        let (a, b) = (e["top"][0]["probability"].as_f64().unwrap(), p["top"][0]["probability"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-3, "explain {a}, predict {b}");
        sum += e["top"].as_array().unwrap().iter().map(|r| r["probability"].as_f64().unwrap()).sum::<f64>();
    }
    assert!((sum / v["predictions"].as_array().unwrap().len() as f64 - 1.0).abs() > 1e-3, "not a softmax: {why}");
    // A Triton repository carries the graph's `labels` output, named by labels.txt.
    let repo = t.join("triton");
    succeeds(retrain(t).args(["export", "triton", "-q"]).arg(&m).arg(&repo));
    let config = std::fs::read_to_string(repo.join("mini/config.pbtxt")).unwrap();
    assert!(config.contains("Several labels per photo"), "{config}");
    assert!(
        config.contains("name: \"labels\"\n    data_type: TYPE_FP32\n    dims: [ 3 ]\n    label_filename"),
        "{config}"
    );

    // A model from elsewhere (no checksum) whose thresholds do not fit it, or that lost them.
    let mut proto = retrain_onnx::read(&m).unwrap();
    proto.metadata_props.retain(|p| p.key != "retrain.checksum");
    let at = proto.metadata_props.iter().position(|p| p.key == "retrain.multi_label").unwrap();
    let (foreign, photo) = (t.join("foreign.onnx"), mini_photos("daisy")[0].clone());
    for (value, says) in [
        (r#"{"thresholds":[0.5,0.5]}"#, "one threshold from 0 to 1 per class (3 classes, 2 thresholds)"),
        (r#"{"thresholds":[0.5,1.5,0.5]}"#, "one threshold from 0 to 1 per class"),
        (r#"{"thresholds":"half"}"#, "bad `retrain.multi_label`"),
    ] {
        proto.metadata_props[at].value = value.into();
        std::fs::write(&foreign, retrain_onnx::encode(&proto)).unwrap();
        fails(retrain(t).arg("predict").arg(&foreign).arg(&photo), says);
    }
    proto.metadata_props.remove(at);
    std::fs::write(&foreign, retrain_onnx::encode(&proto)).unwrap();
    fails(retrain(t).arg("predict").arg(&foreign).arg(&photo), "disagree on the `labels` output");

    // train --html draws the several-labels page on the validation photos.
    let page = t.join("mini.html");
    succeeds(&mut train(
        t,
        &folders,
        &t.join("mini2.onnx"),
        &["--task", "multi-label", "--html", page.to_str().unwrap()],
    ));
    assert!(std::fs::read_to_string(&page).unwrap().contains("Labels together"));
}

/// Each card of a page (`serve`'s or an exported one) against `predict`: the labels line, and
/// every class's bar with its threshold marked where the threshold is, on exactly for the labels.
fn check_cards(cards: &[Value], want: &[(String, BTreeSet<String>)], thresholds: &[f64], rows_key: &str, at_key: &str) {
    for (name, labels) in want {
        let card = cards.iter().find(|c| c["name"] == name.as_str()).unwrap_or_else(|| panic!("no card for {name}"));
        let line = card["labels"].as_str().unwrap_or_else(|| panic!("{name}: no labels line: {card}"));
        let shown: BTreeSet<String> = match line.strip_prefix("Labels: ") {
            Some(l) => l.split(", ").map(String::from).collect(),
            None => {
                assert_eq!(line, "No label reached its threshold", "{name}");
                BTreeSet::new()
            }
        };
        assert_eq!(&shown, labels, "{name}: {card}");
        let rows = card[rows_key].as_array().unwrap();
        assert_eq!(rows.len(), SPECIES.len(), "every class's bar: {card}");
        for r in rows {
            let class = r["class"].as_str().unwrap();
            let want_t = thresholds[SPECIES.iter().position(|s| *s == class).unwrap()];
            assert!((r["threshold"].as_f64().unwrap() - want_t).abs() < 1e-6, "{name}: {r}");
            let at = r[at_key].as_f64().unwrap_or_else(|| panic!("{name}: no threshold mark: {r}"));
            assert!((at - want_t).abs() < 0.02, "{name}: the mark of {class} at {at}, its threshold {want_t}");
            assert_eq!(r["on"].as_bool().unwrap(), labels.contains(class), "{name}: {r}");
        }
    }
}

#[test]
fn the_pages_show_every_label_with_its_threshold_marked() {
    let Some(chromium) = playwright() else { return };
    let Some((ort_dir, _)) = ort_web() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (t, data) = (tmp.path(), tmp.path().join("mosaics"));
    mosaics(&data, 60);
    let lp = data.join("labels.csv");
    let model = t.join("ml.onnx");
    succeeds(&mut train(t, &data, &model, &["--labels", lp.to_str().unwrap()]));
    let proto = retrain_onnx::read(&model).unwrap();
    let stored: Value = serde_json::from_str(
        proto.metadata_props.iter().find(|p| p.key == "retrain.multi_label").unwrap().value.as_str(),
    )
    .unwrap();
    let thresholds: Vec<f64> = stored["thresholds"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    let photos = t.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..6 {
        std::fs::copy(data.join(format!("m/{i:03}.jpg")), photos.join(format!("{i:03}.jpg"))).unwrap();
    }
    let want = predicted(t, &model, &photos);
    assert!(want.iter().any(|(_, l)| l.len() > 1), "a photo with several labels among {want:?}");
    let files: Vec<std::path::PathBuf> = want.iter().map(|(n, _)| photos.join(n)).collect();
    let not_a_photo = t.join("notes.txt");
    std::fs::write(&not_a_photo, "not a photo").unwrap();

    // serve's page.
    let server = Server::start(t, &[&model], &[]);
    let list: Value = serde_json::from_str(&get(&format!("{}/v1/models", server.url)).1).unwrap();
    assert_eq!(list["models"][0]["thresholds"].as_array().unwrap().len(), 5, "{list}");
    let out = succeeds(
        std::process::Command::new("node")
            .arg(root().join("tests/browser/serve_page.cjs"))
            .arg(&chromium)
            .arg(&server.url)
            .arg(t.join("serve.png"))
            .args(&files)
            .arg(&not_a_photo),
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_cards(seen["cards"].as_array().unwrap(), &want, &thresholds, "rows", "mark");
    assert!(server.stop().success());

    // The exported page: the thresholds in model.json, the labels from the graph in the browser.
    let site = t.join("site");
    succeeds(retrain(t).args(["export", "web", "-q"]).arg(&model).arg(&site).arg("--ort-web").arg(&ort_dir));
    let cfg = read_json(&site.join("model.json"));
    let exported: Vec<f64> = cfg["thresholds"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    assert!(exported.iter().zip(&thresholds).all(|(a, b)| (a - b).abs() < 1e-6), "{exported:?} {thresholds:?}");
    let mut cmd = retrain(t);
    cmd.args(["serve", "--static"]).arg(&site).args(["--port", "0"]);
    let server = Server::started(Server::spawn_command(cmd));
    let out = succeeds(
        std::process::Command::new("node")
            .arg(root().join("tests/browser/web_page.cjs"))
            .arg(&chromium)
            .arg(&server.url)
            .arg(t.join("web.png"))
            .arg(server.child.id().to_string())
            .args(&files),
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["problems"], Value::Array(vec![]), "{seen}");
    check_cards(seen["picked"].as_array().unwrap(), &want, &thresholds, "marks", "at");
    let _ = server.stop();
}
