//! `retrain audit` end to end: on a copy of hymenoptera with planted problems (photos filed
//! under the other class, a resized and recompressed copy in validation and one under the other
//! class, a cup of coffee and a rocket among the bees, a file that is not a photo), the audit finds them; the
//! decisions it suggests are applied and undone, leaving the folder byte for byte as it was;
//! stale or foreign decisions are refused; and in Chromium a person's ticks on the page become
//! the decisions file that `apply` carries out.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file below `dir` (relative) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk_all(dir)
        .into_iter()
        .map(|f| (f.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&f).unwrap()))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for f in walk_all(from) {
        let dst = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&f, dst).unwrap();
    }
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    f.sort();
    f
}

/// `src` resized to 90% and saved as a JPEG of quality 80 at `to`.
fn near_copy(src: &Path, to: &Path) {
    let img = image::open(src).unwrap().to_rgb8();
    let (w, h) = (img.width() * 9 / 10, img.height() * 9 / 10);
    let small = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80).encode_image(&small).unwrap();
    std::fs::write(to, bytes).unwrap();
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| Path::new(e[key].as_str().unwrap()).file_name().unwrap().to_str().unwrap().to_string())
        .collect()
}

fn audit(home: &Path, data: &Path, extra: &[&str]) -> Value {
    let out = succeeds(
        retrain(home)
            .args(["audit", data.to_str().unwrap(), "--quiet", "--format", "json", "--weights"])
            .arg(mnv2())
            .args(extra),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_audit_finds_planted_problems_and_its_suggestions_apply_and_undo() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("hym");
    copy_dir(&shared("data/hymenoptera"), &data);
    let (ants, bees) = (data.join("train/ants"), data.join("train/bees"));
    let (ant_files, bee_files) = (sorted_files(&ants), sorted_files(&bees));
    // Two ants filed as bees and two bees as ants.
    let mut planted = BTreeMap::new();
    for (f, to, truth) in [
        (&ant_files[0], &bees, "ants"),
        (&ant_files[1], &bees, "ants"),
        (&bee_files[0], &ants, "bees"),
        (&bee_files[1], &ants, "bees"),
    ] {
        let name = f.file_name().unwrap();
        std::fs::rename(f, to.join(name)).unwrap();
        planted.insert(name.to_str().unwrap().to_string(), truth);
    }
    // A near-copy of a training ant in validation (a leak), another's under bees (a conflict).
    near_copy(&ant_files[3], &data.join("val/ants/leak.jpg"));
    near_copy(&ant_files[4], &bees.join("conflict.jpg"));
    // A cup of coffee and a rocket among the bees, and a file that is not a photo.
    let coffee = shared("images/coffee.png");
    let rocket = shared("images/rocket.jpg");
    for f in [&coffee, &rocket] {
        std::fs::copy(f, bees.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(ants.join("broken.jpg"), "not a photo").unwrap();
    // Photos nobody labelled yet.
    let unlabelled = t.path().join("new");
    std::fs::create_dir_all(&unlabelled).unwrap();
    for f in hymenoptera_val(8).iter().chain(&sorted_files(&shared("data/flowers/tulip"))[..2]) {
        std::fs::copy(f, unlabelled.join(f.file_name().unwrap())).unwrap();
    }

    let (page, suggested, oof) =
        (t.path().join("audit.html"), t.path().join("suggested.json"), t.path().join("oof.csv"));
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let a = audit(
        t.path(),
        &data,
        &[
            "--out",
            &p(&page),
            "--suggested",
            &p(&suggested),
            "--out-of-fold",
            &p(&oof),
            "--unlabelled",
            &p(&unlabelled),
            "--count",
            "4",
        ],
    );

    // Mislabelled: the planted photos, each suggested its true class.
    let m = &a["mislabelled"];
    let found: BTreeMap<String, String> = m
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = Path::new(e["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap().to_string();
            (name, e["suggested"].as_str().unwrap().to_string())
        })
        .collect();
    let action = |name: &str| {
        m.as_array().unwrap().iter().find(|e| e["path"].as_str().unwrap().ends_with(name)).unwrap()["action"].clone()
    };
    let right = planted.iter().filter(|(n, truth)| found.get(*n).map(String::as_str) == Some(**truth)).count();
    assert!(right >= 3, "planted {planted:?}, found {found:?}");
    assert!(m.as_array().unwrap().len() <= 12, "{m}");
    for e in m.as_array().unwrap() {
        assert!(e["score"].as_f64().unwrap() > 0.5 && e["label"] != e["suggested"], "{e}");
        assert!(e["action"] == "move" || e["action"] == "set_aside", "{e}");
        assert_eq!(e["nearest_label"].as_array().unwrap().len(), 3);
        assert_eq!(e["nearest_suggested"].as_array().unwrap().len(), 3);
    }

    // Near-duplicates: the leak and the conflict, each with its original.
    let dups = a["duplicates"].as_array().unwrap();
    let group = |copy: &str| {
        dups.iter()
            .find(|d| d["paths"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with(copy)))
            .unwrap_or_else(|| panic!("{copy} not found among {dups:?}"))
    };
    let leak = group("leak.jpg");
    assert_eq!(leak["kind"], "leak");
    assert!(leak["paths"].to_string().contains(ant_files[3].file_name().unwrap().to_str().unwrap()), "{leak}");
    let conflict = group("conflict.jpg");
    assert_eq!(conflict["kind"], "conflict");
    assert!(conflict["paths"].to_string().contains(ant_files[4].file_name().unwrap().to_str().unwrap()));

    // Strays: both (and hymenoptera's own "image not found" picture).
    let strays = names(&a["strays"], "path");
    for f in [&coffee, &rocket, &PathBuf::from("imageNotFound.gif")] {
        assert!(strays.contains(&f.file_name().unwrap().to_str().unwrap().to_string()), "{strays:?}");
    }
    assert!(a["skipped"].to_string().contains("broken.jpg"), "{}", a["skipped"]);
    assert_eq!(a["classes"][0]["name"], "ants");
    assert_eq!(a["images"].as_u64().unwrap() as usize + 1, std::fs::read_to_string(&oof).unwrap().lines().count());
    assert!(std::fs::read_to_string(&oof).unwrap().starts_with("path,split,label,ants,bees\n"));
    // What to label next: four of the new photos, best first.
    let next = a["next"].as_array().unwrap();
    assert_eq!(next.len(), 4);
    let scores: Vec<f64> = next.iter().map(|s| s["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(next.iter().all(|s| Path::new(s["path"].as_str().unwrap()).starts_with(&unlabelled)));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Label these next (4)") && html.contains("id=\"audit-data\""));

    // Bad requests: a missing folder of unlabelled photos, no one backbone.
    let home = t.path();
    fails(
        retrain(home)
            .args(["audit", "-q"])
            .arg(&data)
            .arg("--weights")
            .arg(mnv2())
            .args(["--unlabelled", "/nonexistent"]),
        "not a folder of unlabelled photos",
    );
    fails(retrain(home).args(["audit", "-q", "--model", "auto"]).arg(&data), "needs one backbone");

    // Apply every suggestion, then undo: the folder is as it was, byte for byte.
    let before = snapshot(&data);
    let out = succeeds(retrain(t.path()).args(["audit", "apply"]).arg(&suggested).arg("--data").arg(&data));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("moved to another class") && said.contains("set aside"), "{said}");
    let quarantine = t.path().join("hym.quarantine");
    assert!(quarantine.join("train/bees/coffee.png").is_file());
    for (name, truth) in &planted {
        if found.get(name).map(String::as_str) == Some(*truth) {
            let wrong = if *truth == "ants" { "bees" } else { "ants" };
            let to = match action(name).as_str() {
                Some("move") => data.join("train").join(truth).join(name),
                _ => quarantine.join("train").join(wrong).join(name),
            };
            assert!(to.is_file(), "{name} not at {}", to.display());
        }
    }
    // Applying the same file again: its photos have moved, so it is refused, nothing changes.
    let moved = snapshot(&data);
    fails(retrain(t.path()).args(["audit", "apply"]).arg(&suggested), "not one of the folder's photos");
    assert_eq!(snapshot(&data), moved);
    succeeds(retrain(t.path()).args(["audit", "undo"]).arg(&data));
    assert_eq!(snapshot(&data), before);
    fails(retrain(t.path()).args(["audit", "undo"]).arg(&data), "nothing to undo");

    // A photo changed since the audit, or decisions for another folder: refused, nothing moves.
    let d: Value = read_json(&suggested);
    let first = data.join(d["decisions"][0]["path"].as_str().unwrap());
    let mut bytes = std::fs::read(&first).unwrap();
    bytes.push(0);
    std::fs::write(&first, &bytes).unwrap();
    let changed = snapshot(&data);
    fails(retrain(t.path()).args(["audit", "apply"]).arg(&suggested), "changed since the audit");
    fails(retrain(t.path()).args(["audit", "apply"]).arg(&suggested).arg("--data").arg(&unlabelled), "made for");
    assert_eq!(snapshot(&data), changed);
    assert_eq!(
        walk_all(&quarantine),
        vec![quarantine.join("audit-log.json")],
        "nothing left in quarantine but the log"
    );
}

#[test]
fn ticks_on_the_page_in_chromium_become_decisions_that_apply_and_undo() {
    let Some(chromium) = playwright() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = flowers_mini(&t.path().join("mini"), 16);
    // A daisy filed as a sunflower, and an ant among the dandelions.
    let daisy = sorted_files(&data.join("daisy"))[0].clone();
    std::fs::rename(&daisy, data.join("sunflower").join(daisy.file_name().unwrap())).unwrap();
    let ant = sorted_files(&shared("data/hymenoptera/train/ants"))[5].clone();
    std::fs::copy(&ant, data.join("dandelion").join(ant.file_name().unwrap())).unwrap();
    let page = t.path().join("audit.html");
    let a = audit(t.path(), &data, &["--out", page.to_str().unwrap()]);
    assert!(!a["mislabelled"].as_array().unwrap().is_empty(), "{a}");

    let (decisions, shot) = (t.path().join("decisions.json"), t.path().join("audit.png"));
    let out = succeeds(
        std::process::Command::new("node")
            .arg(root().join("tests/browser/audit_page.cjs"))
            .arg(&chromium)
            .arg(&page)
            .arg(&decisions)
            .arg(&shot),
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["problems"], Value::Array(vec![]), "{seen}");
    assert_eq!(seen["before"], "0 decisions");
    assert_eq!(seen["after"], "2 decisions");
    assert_eq!(seen["suggested"], "audit-decisions.json");
    assert!(seen["asideName"].is_string(), "{seen}");
    let d = read_json(&decisions);
    let list = d["decisions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{d}");
    let moved = list.iter().find(|e| e["action"] == "move").unwrap();
    assert_eq!(moved["to"], seen["moveTo"]);
    let aside = list.iter().find(|e| e["action"] == "set_aside").unwrap();

    let before = snapshot(&data);
    succeeds(retrain(t.path()).args(["audit", "apply"]).arg(&decisions).arg("--data").arg(&data));
    let from = data.join(moved["path"].as_str().unwrap());
    assert!(!from.exists());
    assert!(data.join(moved["to"].as_str().unwrap()).join(from.file_name().unwrap()).is_file());
    assert!(t.path().join("mini.quarantine").join(aside["path"].as_str().unwrap()).is_file());
    succeeds(retrain(t.path()).args(["audit", "undo"]).arg(&data));
    assert_eq!(snapshot(&data), before);
}
