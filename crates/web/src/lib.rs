//! `retrain export web`: a model as a static folder any web server serves as is: a page that
//! classifies photos and camera frames in the browser with ONNX Runtime Web (WebAssembly), no
//! server behind it, offline after the first visit. The model file is copied unchanged; the
//! preprocessing is a second small graph ([`preprocess`]) so the browser resizes as retrain
//! does. `retrain.js` sets `window.retrain` (`classify`, `classes`), which the page uses and
//! other pages can embed.

pub mod icon;
pub mod ort_web;
pub mod preprocess;

use retrain_report::escape;
use serde::Serialize;
use sha2::Digest;
use std::path::{Path, PathBuf};

/// Written into every export; a folder holding it (and made by us) may be exported into again.
pub const CONFIG: &str = "model.json";
const MADE_BY: &str = "retrain export web";
/// Pixels of one photo the page decodes at most (its RGBA copy is 4 bytes a pixel).
pub const MAX_PIXELS: u64 = 50_000_000;
const MAX_TITLE: usize = 120;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/retrain.js");
const APP: &str = include_str!("../assets/app.js");
const WORKER: &str = include_str!("../assets/sw.js");

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Retrain(#[from] retrain::Error),
    #[error(transparent)]
    Weights(#[from] retrain_weights::WeightsError),
    #[error("--ort-web {}: {reason}", path.display())]
    OrtWeb { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {reason}", path.display())]
    Folder { path: PathBuf, reason: String },
    #[error("--title: {0}")]
    Title(String),
}

pub struct WebOptions {
    /// The page's heading and the name a phone gives it on the home screen.
    pub title: Option<String>,
    /// A local copy of onnxruntime-web (see [`ort_web::files`]).
    pub ort_web: Option<PathBuf>,
    pub quiet: bool,
}

/// What was written: each file (relative to the folder) and its size.
#[derive(Debug)]
pub struct Exported {
    pub files: Vec<(String, u64)>,
    pub title: String,
}

impl Exported {
    /// What a first visit downloads.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.1).sum()
    }
}

/// What the page reads first: everything it needs to know about the model.
#[derive(Serialize)]
struct Config<'a> {
    made_by: &'a str,
    retrain: &'a str,
    title: &'a str,
    classes: &'a [String],
    resize: u32,
    crop: u32,
    filter: retrain_pixels::Filter,
    /// The `ood_score` above which a photo is "unknown" (none: the model has no open-set score).
    threshold: Option<f32>,
    has_ood_score: bool,
    /// Several labels per photo: each class's threshold for its label (none: one label a photo).
    thresholds: Option<&'a [f32]>,
    max_pixels: u64,
    ort_web: &'a str,
    model: &'a str,
    preprocess: &'a str,
}

pub fn export(model: &Path, dir: &Path, opts: &WebOptions) -> Result<Exported, WebError> {
    let (bytes, info) = retrain::model::read(model)?;
    let title = match &opts.title {
        Some(t) => check_title(t)?,
        None => model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "retrain".into()),
    };
    let title: String = title.chars().filter(|c| !c.is_control()).take(MAX_TITLE).collect();
    check_folder(dir)?;
    let ort = ort_web::files(opts.ort_web.as_deref(), opts.quiet)?;
    // A model has the `ood_score` output exactly when its metadata carries the open set.
    let has_ood_score = info.open_set.is_some();
    let threshold = retrain::model::threshold(&info, model, retrain::model::Reject::Auto)?;
    let preprocess = retrain_onnx::encode(&preprocess::graph(info.preprocess.interpolation));
    let config = Config {
        made_by: MADE_BY,
        retrain: env!("CARGO_PKG_VERSION"),
        title: &title,
        classes: &info.class_names,
        resize: info.preprocess.resize,
        crop: info.preprocess.crop,
        filter: info.preprocess.interpolation,
        threshold,
        has_ood_score,
        thresholds: info.multi_label.as_ref().map(|m| m.thresholds.as_slice()),
        max_pixels: MAX_PIXELS,
        ort_web: ort_web::VERSION,
        model: "model.onnx",
        preprocess: "preprocess.onnx",
    };
    let manifest = serde_json::json!({
        "name": title,
        "short_name": title.chars().take(12).collect::<String>(),
        "start_url": "./",
        "scope": "./",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1f6feb",
        "icons": [
            {"src": "icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any maskable"},
            {"src": "icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any maskable"},
        ],
    });
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("index.html".into(), INDEX.replace("{{TITLE}}", &escape(&title)).into_bytes()),
        ("retrain.js".into(), SCRIPT.as_bytes().to_vec()),
        ("app.js".into(), APP.as_bytes().to_vec()),
        ("manifest.webmanifest".into(), serde_json::to_vec_pretty(&manifest).expect("json")),
        ("icon-192.png".into(), icon::png(192)),
        ("icon-512.png".into(), icon::png(512)),
        (CONFIG.into(), serde_json::to_vec_pretty(&config).expect("json")),
        ("model.onnx".into(), bytes),
        ("preprocess.onnx".into(), preprocess),
    ];
    files.extend(ort.into_iter().map(|(name, b)| (format!("ort/{name}"), b)));
    // The service worker caches every file under a name that changes with their contents, so
    // a new export replaces what a phone kept of the old one.
    let mut h = sha2::Sha256::new();
    for (name, b) in &files {
        h.update(name.as_bytes());
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
    let cache = format!("retrain-{}", &hex::encode(h.finalize())[..16]);
    let mut list: Vec<String> = vec!["./".into()];
    list.extend(files.iter().map(|(n, _)| format!("./{n}")));
    let worker = WORKER
        .replace("\"{{CACHE}}\"", &serde_json::to_string(&cache).expect("json"))
        .replace("[\"{{FILES}}\"]", &serde_json::to_string(&list).expect("json"));
    files.push(("sw.js".into(), worker.into_bytes()));

    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WebError::Io { path, source }
    };
    std::fs::create_dir_all(dir.join("ort")).map_err(io(&dir.join("ort")))?;
    // The configuration last: a folder cut short by a crash is not taken for a finished export
    // unless an older one was there.
    files.sort_by_key(|(n, _)| n == CONFIG);
    for (name, b) in &files {
        let path = dir.join(name);
        retrain_files::write_atomic(&path, b, true).map_err(io(&path))?;
    }
    let mut written: Vec<(String, u64)> = files.iter().map(|(n, b)| (n.clone(), b.len() as u64)).collect();
    written.sort();
    Ok(Exported { files: written, title })
}

fn check_title(t: &str) -> Result<String, WebError> {
    if t.trim().is_empty() {
        return Err(WebError::Title("empty".into()));
    }
    if t.chars().count() > MAX_TITLE {
        return Err(WebError::Title(format!("longer than {MAX_TITLE} characters")));
    }
    if t.chars().any(char::is_control) {
        return Err(WebError::Title("holds a control character (a line break?)".into()));
    }
    Ok(t.to_string())
}

/// A folder we may write into: new, empty, or an earlier export (its `model.json` says so).
/// Anything else may be the user's own: nothing is written there.
fn check_folder(dir: &Path) -> Result<(), WebError> {
    let folder = |reason: String| WebError::Folder { path: dir.to_path_buf(), reason };
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(folder("exists and is not a folder".into()));
    }
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| WebError::Io { path: dir.to_path_buf(), source })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let ours = std::fs::read(dir.join(CONFIG))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["made_by"] == MADE_BY);
    if ours {
        return Ok(());
    }
    entries.sort();
    let more = if entries.len() > 3 { format!(" and {} more", entries.len() - 3) } else { String::new() };
    entries.truncate(3);
    Err(folder(format!(
        "holds files that an earlier `retrain export web` did not write ({}{more}): give a new or empty folder",
        entries.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_one_line_of_text_and_escaped_in_the_page() {
        assert!(check_title("Leaf diseases").is_ok());
        assert!(check_title("  ").is_err());
        assert!(check_title("a\nb").unwrap_err().to_string().contains("control character"));
        assert!(check_title(&"x".repeat(MAX_TITLE + 1)).is_err());
        assert_eq!(escape("<b>\"A&B's\"</b>"), "&lt;b&gt;&quot;A&amp;B&#39;s&quot;&lt;/b&gt;");
    }

    #[test]
    fn only_a_new_empty_or_earlier_export_folder_is_written_into() {
        let t = tempfile::tempdir().unwrap();
        assert!(check_folder(&t.path().join("new")).is_ok());
        assert!(check_folder(t.path()).is_ok());
        for i in 0..5 {
            std::fs::write(t.path().join(format!("f{i}")), "x").unwrap();
        }
        let e = check_folder(t.path()).unwrap_err().to_string();
        assert!(e.contains("(f0, f1, f2 and 2 more)"), "{e}");
        std::fs::write(t.path().join(CONFIG), r#"{"made_by": "someone else"}"#).unwrap();
        assert!(check_folder(t.path()).is_err());
        std::fs::write(t.path().join(CONFIG), format!(r#"{{"made_by": "{MADE_BY}"}}"#)).unwrap();
        assert!(check_folder(t.path()).is_ok());
        let e = check_folder(&t.path().join("f0")).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
    }

    #[test]
    fn the_icons_are_pngs_of_their_size() {
        for size in [192, 512] {
            let img = image::load_from_memory(&icon::png(size)).unwrap();
            assert_eq!((img.width(), img.height()), (size, size));
        }
    }

    #[test]
    fn the_assets_hold_the_placeholders_export_fills() {
        assert!(INDEX.matches("{{TITLE}}").count() == 2);
        assert!(WORKER.contains("\"{{CACHE}}\"") && WORKER.contains("[\"{{FILES}}\"]"));
    }
}
