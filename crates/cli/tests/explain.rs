//! `retrain explain` on hymenoptera: the heatmaps are faithful (a deletion test), and the
//! command's pictures and JSON are what it says.

mod common;

use common::*;
use retrain_explain::{Explainer, GREY};
use std::path::{Path, PathBuf};

fn hymenoptera_model(t: &Path, extra: &[&str]) -> PathBuf {
    let out = t.join(format!("hym{}.onnx", extra.join("")));
    succeeds(&mut train(t, &shared("data/hymenoptera"), &out, extra));
    out
}

/// A crop with the pixels `hide` marks painted grey.
fn masked(crop: &[u8], hide: &[bool]) -> Vec<u8> {
    let mut out = crop.to_vec();
    for (i, _) in hide.iter().enumerate().filter(|(_, h)| **h) {
        out[i * 3..i * 3 + 3].copy_from_slice(&GREY);
    }
    out
}

/// Mean loss of the explained class's margin when the hottest fifth of each crop is hidden,
/// and when a random fifth (a square at a random place, three times) is.
fn deletion(ex: &mut Explainer, photos: &[PathBuf]) -> (f32, f32, f32) {
    let bar = indicatif::ProgressBar::hidden();
    let explained: Vec<_> = ex.explain(photos, None, &bar).unwrap().into_iter().map(Result::unwrap).collect();
    let (mut hot_loss, mut random_loss, mut wins) = (0.0, 0.0, 0.0);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for e in &explained {
        let size = e.crop.size[0];
        let heat = retrain_explain::upsample(&e.heatmap, size);
        let mut order: Vec<usize> = (0..heat.len()).collect();
        order.sort_by(|&a, &b| heat[b].total_cmp(&heat[a]));
        let mut hot = vec![false; heat.len()];
        for &i in &order[..heat.len() / 5] {
            hot[i] = true;
        }
        let hot_crop = masked(&e.pixels, &hot);
        let mut randoms = Vec::new();
        for _ in 0..3 {
            // A square of a fifth of the crop at a random place: one region, as a hot one is.
            let side = ((size * size / 5) as f64).sqrt().round() as usize;
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % (size - side + 1) as u64) as usize
            };
            let (top, left) = (next(), next());
            let hide: Vec<bool> = (0..size * size)
                .map(|i| (top..top + side).contains(&(i / size)) && (left..left + side).contains(&(i % size)))
                .collect();
            randoms.push(masked(&e.pixels, &hide));
        }
        let mut crops: Vec<&[u8]> = vec![&e.pixels, &hot_crop];
        crops.extend(randoms.iter().map(Vec::as_slice));
        let m = ex.margins(&crops, e.class_index).unwrap();
        let (h, r) = (m[0] - m[1], m[0] - (m[2] + m[3] + m[4]) / 3.0);
        hot_loss += h;
        random_loss += r;
        wins += f32::from(h > r);
    }
    let n = explained.len() as f32;
    (hot_loss / n, random_loss / n, wins / n)
}

#[test]
fn hiding_the_hottest_fifth_hurts_the_class_far_more_than_a_random_fifth() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let model = hymenoptera_model(t, &[]);
    let photos = hymenoptera_val(15);
    for occlusion in [false, true] {
        let mut ex = Explainer::open(&model, 2, occlusion).unwrap();
        let (hot, random, wins) = deletion(&mut ex, &photos);
        eprintln!(
            "{}: margin lost, hottest fifth {hot:.3}, random fifth {random:.3}; hot worse on {wins:.2}",
            ex.method.name()
        );
        assert!(hot > 1.6 * random.max(0.0) && wins >= 0.8, "{}: hot {hot} random {random}", ex.method.name());
    }
}

#[test]
fn explain_writes_a_picture_and_json_per_photo_for_an_int8_model() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let model = hymenoptera_model(t, &["--precision", "int8"]);
    let photos = t.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for p in hymenoptera_val(2) {
        std::fs::copy(&p, photos.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff not really").unwrap();
    let out = t.join("pictures");
    let run_json = |extra: &[&str]| {
        let o = succeeds(
            retrain(t)
                .arg("explain")
                .arg(&model)
                .arg(&photos)
                .arg("--out")
                .arg(&out)
                .args(["--format", "json"])
                .args(extra),
        );
        (
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (rows, err) = run_json(&[]);
    assert!(err.contains("skipped") && err.contains("broken.jpg"), "the broken file is reported: {err}");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        // The int8 model keeps the pooled map's structure: one exact map per photo.
        assert_eq!(r["method"], "class activation map");
        assert_eq!(r["crop"]["size"], serde_json::json!([224, 224]));
        let heat = r["heatmap"].as_array().unwrap();
        assert_eq!((heat.len(), heat[0].as_array().unwrap().len()), (7, 7));
        let values: Vec<f64> =
            heat.iter().flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap())).collect();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)) && values.contains(&1.0));
        assert_eq!(r["class"], r["top"][0]["class"], "by default the top class is explained");
        let png = image::open(r["picture"].as_str().unwrap()).unwrap();
        // The crop and its heatmap side by side, each shown at twice 224 pixels.
        assert!(png.width() == 3 * 12 + 2 * 448 && png.height() > 448, "{}×{}", png.width(), png.height());
    }
    // Another class on request; an unknown one is a clear error naming the classes.
    let (rows, _) = run_json(&["--class", "bees"]);
    assert!(rows.as_array().unwrap().iter().all(|r| r["class"] == "bees"));
    let o = run(retrain(t).arg("explain").arg(&model).arg(&photos).args(["--class", "wasps"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no class `wasps`") && err.contains("ants, bees"), "{err}");

    // What the layers see: MobileNetV2's five stages, early (large maps, few channels) to late.
    let photo = &hymenoptera_val(1)[1];
    let layers = t.join("layers");
    let o = succeeds(
        retrain(t).args(["explain", "--layers", "--format", "json"]).arg(&model).arg(photo).arg("--out").arg(&layers),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages = v["stages"].as_array().unwrap();
    let sizes: Vec<u64> = stages.iter().map(|s| s["size"][0].as_u64().unwrap()).collect();
    assert_eq!(sizes, [112, 56, 28, 14, 7]);
    let channels: Vec<u64> = stages.iter().map(|s| s["channels"].as_u64().unwrap()).collect();
    assert!(channels.windows(2).all(|w| w[1] >= w[0]) && channels[4] == 1280, "{channels:?}");
    for s in stages {
        assert_eq!(s["top_channels"].as_array().unwrap().len(), 8);
        let png = image::open(s["picture"].as_str().unwrap()).unwrap();
        assert!(png.width() > 9 * 112, "the photo and eight maps");
    }
    // The first convolution: 32 filters of 3×3 over RGB, as a grid of 6×6 cells.
    let filters = image::open(v["filters"].as_str().unwrap()).unwrap().to_rgb8();
    assert!(filters.height() > 6 * 48);
    // Coloured, not grey: the filters weigh the three channels differently.
    assert!(filters.pixels().any(|p| p[0].abs_diff(p[1]) > 40));
    let o = run(retrain(t).args(["explain", "--layers"]).arg(&model).arg(&photos));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--layers takes MODEL.onnx and one photo"));
}
