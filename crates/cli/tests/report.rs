//! `retrain report` and `train --html` on hymenoptera: the page is one self-contained file whose
//! figures agree with `retrain eval`, its top losses are the worst photos, a fine-tuned model
//! gets its fine-tuning curves, and headless Chromium renders it with its pictures.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn count(page: &str, needle: &str) -> usize {
    page.matches(needle).count()
}

/// Every `src="…"` of the page.
fn sources(page: &str) -> Vec<&str> {
    page.split("src=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).collect()
}

fn assert_self_contained(page: &str) {
    assert!(page.to_ascii_lowercase().starts_with("<!doctype html>"), "{}", &page[..100.min(page.len())]);
    assert!(page.trim_end().ends_with("</html>"));
    for banned in ["<script", "<link", "<iframe", "url(http", "src=\"http", "href=\"http"] {
        assert!(!page.contains(banned), "the page has {banned}");
    }
    let srcs = sources(page);
    assert!(!srcs.is_empty());
    for s in srcs {
        assert!(s.starts_with("data:image/png;base64,") || s.starts_with("data:image/jpeg;base64,"), "{}", &s[..60]);
    }
}

#[test]
fn report_is_one_page_that_agrees_with_eval() {
    let t = tempfile::tempdir().unwrap();
    let data = shared("data/hymenoptera");
    let model = t.path().join("hym.onnx");
    let page_path = t.path().join("page.html");
    succeeds(
        train(t.path(), &data, &model, &["--html"]).arg(&page_path).arg("--report").arg(t.path().join("train.json")),
    );
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert_self_contained(&page);

    let out = succeeds(
        retrain(t.path())
            .arg("report")
            .arg(&model)
            .arg(&data)
            .args(["--format", "json", "-q", "--out"])
            .arg(t.path().join("again.html")),
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = succeeds(retrain(t.path()).arg("eval").arg(&model).arg(&data).args(["--format", "json"]));
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["images", "accuracy", "confusion_matrix", "class_names", "per_class", "data"] {
        assert_eq!(summary[key], eval[key], "{key}");
    }
    assert_eq!(summary["images"], 153);
    assert_eq!(summary["method"], "class activation map");
    let accuracy = summary["accuracy"].as_f64().unwrap();
    let interval: Vec<f64> =
        summary["accuracy_interval"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(interval[0] < accuracy && accuracy < interval[1] && interval[1] - interval[0] < 0.15, "{interval:?}");
    // The page written by `train --html` and by `report` show the same figures.
    assert!(page.contains(&format!("{:.1}%", accuracy * 100.0)), "accuracy {accuracy} not on the page");

    // Top losses: worst first, loss = -ln p(true), every wrong photo before any right one.
    let matrix = summary["confusion_matrix"].as_array().unwrap();
    let wrong: u64 = (0..2).map(|i| matrix[i][1 - i].as_u64().unwrap()).sum();
    assert!(wrong > 0 && wrong < 12, "{wrong}");
    let losses = summary["top_losses"].as_array().unwrap();
    assert_eq!(losses.len(), 12);
    let mut previous = f64::INFINITY;
    for (i, l) in losses.iter().enumerate() {
        let loss = l["loss"].as_f64().unwrap();
        let p_true = l["true_probability"].as_f64().unwrap();
        assert!(loss <= previous + 1e-6, "not sorted at {i}");
        assert!((loss + p_true.ln()).abs() < 1e-3, "{l}");
        assert_eq!(l["true"] != l["predicted"], (i as u64) < wrong, "{i}: {l}");
        let path = PathBuf::from(l["path"].as_str().unwrap());
        assert!(path.starts_with(data.join("val")) && path.exists(), "{}", path.display());
        assert!(path.parent().unwrap().ends_with(l["true"].as_str().unwrap()));
        previous = loss;
    }
    let pairs: u64 = summary["confused_pairs"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(pairs, wrong);

    // The page: a card per top loss, each with its photo and heatmap; a point per photo on the
    // map, the wrong ones marked; the sections a reader looks for.
    assert_eq!(count(&page, "class=\"loss\""), 12);
    assert_eq!(count(&page, "class=\"pt"), 153);
    assert_eq!(count(&page, "class=\"pt wrong\"") as u64, wrong);
    for h in ["Per class", "Confusion matrix", "Top losses", "Training", "What the layers see", "Feature map"] {
        assert!(page.contains(&format!("<h2>{h}")), "no section {h}");
    }
    let worst = Path::new(losses[0]["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap();
    assert!(page.contains(worst), "the worst photo {worst} is not named");
    // The head's curves come from the model file: `report` on it alone shows them as well.
    let again = std::fs::read_to_string(t.path().join("again.html")).unwrap();
    assert_self_contained(&again);
    assert!(again.contains("<h2>Training") && !again.contains("<h3>Fine-tuning"));
}

#[test]
fn fine_tuned_model_report_has_its_fine_tuning_curves() {
    let t = tempfile::tempdir().unwrap();
    let data = mini_split(t.path());
    let model = t.path().join("ft.onnx");
    let page_path = t.path().join("ft.html");
    succeeds(train(t.path(), &data, &model, &["--strategy", "finetune", "--epochs", "2", "--html"]).arg(&page_path));
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert_self_contained(&page);
    assert!(page.contains("<h3>Fine-tuning"), "no fine-tuning curves");
    assert!(page.contains("Fine-tuned"), "the method card does not say fine-tuned");
    assert_eq!(count(&page, "class=\"pt"), 12, "one map point per val photo");
}

/// Headless Chromium with its own profile (kept alive by the returned folder) and window size.
fn headless(chromium: &Path, size: &str) -> (Command, tempfile::TempDir) {
    let profile = tempfile::tempdir().unwrap();
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--window-size={size}"));
    (c, profile)
}

/// Headless Chromium's screenshot of `url`, and what it logged to the console.
fn screenshot(chromium: &Path, url: &str, shot: &Path, size: &str) -> (image::RgbImage, Vec<String>) {
    let (mut c, _profile) = headless(chromium, size);
    let out = c
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && shot.exists(), "chromium failed on {url}: {stderr}");
    let console = stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
    (image::open(shot).unwrap().to_rgb8(), console)
}

/// Distinct colours and the share of pixels that are not near white.
fn looks(img: &image::RgbImage) -> (usize, f64) {
    let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let inked = img.pixels().filter(|p| p.0.iter().any(|&c| c < 240)).count();
    (colours.len(), inked as f64 / (img.width() * img.height()) as f64)
}

#[test]
fn chromium_renders_the_report_with_its_pictures() {
    let Some(chromium) = chromium() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = shared("data/hymenoptera");
    let model = t.path().join("hym.onnx");
    let page = t.path().join("report.html");
    succeeds(train(t.path(), &data, &model, &["--html"]).arg(&page));

    // Photos, heatmaps and layer pictures give a screenshot hundreds of thousands of colours; the
    // same page with its pictures missing has about two thousand (text and charts), measured.
    let (shot, console) =
        screenshot(&chromium, &format!("file://{}", page.display()), &t.path().join("report.png"), "1280,4000");
    assert!(console.is_empty(), "console: {console:?}");
    let (colours, inked) = looks(&shot);
    assert!(
        colours > 50_000 && inked > 0.15,
        "the report renders blank or without pictures: {colours} colours, {inked:.2} inked"
    );
    let text_only = std::fs::read_to_string(&page).unwrap().replace("src=\"data:", "src=\"x-missing:");
    let broken = t.path().join("broken.html");
    std::fs::write(&broken, text_only).unwrap();
    let (shot, _) =
        screenshot(&chromium, &format!("file://{}", broken.display()), &t.path().join("broken.png"), "1280,4000");
    let (few, _) = looks(&shot);
    assert!(few * 10 < colours, "the test cannot tell a page without pictures: {few} vs {colours} colours");

    // An explained photo opened in the browser, as a user would.
    let photo = data.join("val/bees/1032546534_06907fe3b3.jpg");
    let out_dir = t.path().join("explained");
    succeeds(retrain(t.path()).arg("explain").arg(&model).arg(&photo).arg("--out").arg(&out_dir).arg("-q"));
    let png = out_dir.join("1032546534_06907fe3b3.png");
    let (shot, console) =
        screenshot(&chromium, &format!("file://{}", png.display()), &t.path().join("explained.png"), "800,800");
    assert!(console.is_empty(), "console: {console:?}");
    let (colours, inked) = looks(&shot);
    assert!(colours > 5_000 && inked > 0.3, "the explained picture renders blank: {colours} colours, {inked:.2} inked");
}

/// The page's width in Chromium against the window's, from a script added to a copy of it.
fn page_width(chromium: &Path, page: &Path, width: u32) -> (u64, u64) {
    let html = std::fs::read_to_string(page).unwrap().replace(
        "</body>",
        "<script>document.title='width '+document.documentElement.scrollWidth+' '+document.documentElement.clientWidth</script></body>",
    );
    let probe = page.with_extension("probe.html");
    std::fs::write(&probe, html).unwrap();
    let (mut c, _profile) = headless(chromium, &format!("{width},900"));
    let out = c.arg("--dump-dom").arg(format!("file://{}", probe.display())).output().expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let title = dom.split("<title>width ").nth(1).and_then(|t| t.split("</title>").next()).expect("the probe ran");
    let mut n = title.split(' ').map(|v| v.parse::<u64>().unwrap());
    (n.next().unwrap(), n.next().unwrap())
}

#[test]
fn long_folder_names_wrap_inside_the_page() {
    let Some(chromium) = chromium() else { return };
    let t = tempfile::tempdir().unwrap();
    let long = t.path().join("photos_collected_at_the_field_station_in_the_northern_highlands_in_the_summer_survey");
    std::fs::create_dir_all(&long).unwrap();
    let data = mini_split(&long);
    let (model, page) = (t.path().join("m.onnx"), t.path().join("m.html"));
    succeeds(train(t.path(), &data, &model, &["--html"]).arg(&page));
    let (scroll, window) = page_width(&chromium, &page, 1024);
    assert!(scroll <= window, "the page is {scroll} pixels wide in a {window}-pixel window: a path does not wrap");
}
