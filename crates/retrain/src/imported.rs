//! Bring your own backbone: any ONNX image model registered under a name, then usable with
//! `--model NAME` like the zoo's (feature extraction and a trained head on top).

use crate::{Error, Result};
use retrain_features::Session;
use retrain_weights::WeightsSpec;
pub use retrain_zoo::Layout;
use retrain_zoo::{Backbone, Family, Imported, Preprocess};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `retrain models import` was told.
#[derive(Clone, Debug)]
pub struct ImportSpec {
    pub name: String,
    pub input_size: u32,
    pub resize: u32,
    /// On 0..255 values.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Default: the model's first output.
    pub feature_output: Option<String>,
    pub layout: Layout,
}

/// What is stored beside the imported model.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    name: String,
    preprocess: Preprocess,
    feature_dim: usize,
    feature_output: String,
    layout: Layout,
    source: PathBuf,
    sha256: String,
}

fn root() -> PathBuf {
    retrain_weights::cache_dir().join("imported")
}

fn err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data { path: path.to_path_buf(), reason: reason.into() }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Imported backbones live for the whole process, like the built-in registry.
fn backbone(r: &Record, dir: &Path) -> &'static Backbone {
    Box::leak(Box::new(Backbone {
        name: leak(r.name.clone()),
        family: Family::Imported,
        preprocess: r.preprocess,
        feature_dim: r.feature_dim,
        feature_layer: leak(r.feature_output.clone()),
        blocks: Vec::new(),
        imagenet_top1: f32::NAN,
        params: 0,
        weights: WeightsSpec { file_name: "model.onnx", sha256: leak(r.sha256.clone()), sources: &[] },
        license: "as the imported model's",
        imported: Some(Imported {
            onnx: dir.join("model.onnx"),
            layout: r.layout,
            feature_output: r.feature_output.clone(),
        }),
    }))
}

/// Every imported backbone, by name.
pub fn list() -> Vec<&'static Backbone> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root()) else { return out };
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("backbone.json")) else { continue };
        if let Ok(r) = serde_json::from_str::<Record>(&text) {
            out.push(backbone(&r, &dir));
        }
    }
    out
}

pub fn find(name: &str) -> Option<&'static Backbone> {
    let dir = root().join(name);
    let r: Record = serde_json::from_str(&std::fs::read_to_string(dir.join("backbone.json")).ok()?).ok()?;
    Some(backbone(&r, &dir))
}

/// Registers `file` under `spec.name`: checks it is an ONNX graph, finds the feature value,
/// runs it once on a blank image to learn the feature size, and stores a copy in the cache.
pub fn import(file: &Path, spec: &ImportSpec, threads: usize) -> Result<&'static Backbone> {
    let valid = !spec.name.is_empty() && spec.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(err(file, format!("--name `{}`: use letters, digits, `_` and `-`", spec.name)));
    }
    if retrain_zoo::find(&spec.name).is_ok() {
        return Err(err(file, format!("--name `{}` is a built-in model; choose another name", spec.name)));
    }
    let model = retrain_onnx::read(file)?;
    let graph = model.graph.as_ref().ok_or_else(|| err(file, "not an ONNX model: it holds no graph"))?;
    let feature_output = match &spec.feature_output {
        Some(f) => f.clone(),
        None => graph.output.first().map(|o| o.name.clone()).ok_or_else(|| err(file, "the graph has no output"))?,
    };
    let dir = root().join(&spec.name);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
    let copy = dir.join("model.onnx");
    std::fs::copy(file, &copy).map_err(|source| Error::Write { path: copy.clone(), source })?;
    let mut record = Record {
        name: spec.name.clone(),
        preprocess: Preprocess {
            resize: spec.resize.max(spec.input_size),
            crop: spec.input_size,
            mean: spec.mean,
            std: spec.std,
            interpolation: retrain_pixels::Filter::Bilinear,
        },
        feature_dim: 0,
        feature_output,
        layout: spec.layout,
        source: file.canonicalize().unwrap_or_else(|_| file.to_path_buf()),
        sha256: retrain_weights::sha256_file(file)?,
    };
    let probe = || -> Result<usize> {
        let b = backbone(&record, &dir);
        let g = retrain_zoo::build(
            b,
            &Default::default(),
            &retrain_zoo::GraphOutputs { features: true, ..Default::default() },
            &[],
        )
        .map_err(|e| err(file, e.to_string()))?;
        let mut s = Session::new(&retrain_onnx::encode(&g), &file.display().to_string(), threads)?;
        let n = spec.input_size as usize;
        let out = s.run(vec![0u8; n * n * 3], 1, n)?;
        let (_, shape, _) =
            out.into_iter().find(|(name, _, _)| name == "features").ok_or_else(|| err(file, "no features output"))?;
        Ok(shape[1])
    };
    match probe() {
        Ok(d) => record.feature_dim = d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    }
    let json = serde_json::to_string_pretty(&record).expect("record serialises");
    let meta = dir.join("backbone.json");
    crate::outputs::write_file(&meta, json.as_bytes())?;
    Ok(backbone(&record, &dir))
}
