//! The model file: one `.onnx` holding backbone + head + softmax, with everything needed to
//! use it (class names, preprocessing, backbone, weights checksum) in its metadata, so any
//! ONNX Runtime gives the same answers as `retrain predict`.

use crate::{Error, Result};
use retrain_features::{Session, Sessions};
use retrain_pixels::{Geometry, Limits, PixelError};
use retrain_zoo::Preprocess;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Metadata format version; readers refuse files without it.
pub const FORMAT: &str = "1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub class_names: Vec<String>,
    pub backbone: String,
    pub weights_sha256: String,
    pub preprocess: Preprocess,
    /// The open-set score and calibration (`retrain.openset`), absent from older models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_set: Option<retrain_openset::OpenSet>,
    /// Several labels per photo (`retrain.multi_label`): the probabilities are independent
    /// sigmoids and a label applies at or above its class's threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiLabel>,
}

/// What a several-labels model stores beside its graph (which applies the same thresholds in
/// its `labels` output).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MultiLabel {
    /// One per class, in class order, tuned for F1 by cross-validation on the training split.
    pub thresholds: Vec<f32>,
}

const MULTI_LABEL_KEY: &str = "retrain.multi_label";

impl MultiLabel {
    /// Writes these thresholds into a several-labels `model`: the constant its `labels` output
    /// compares with, and its metadata; false when it has no `labels` output.
    pub fn write_into(&self, model: &mut retrain_onnx::ModelProto) -> bool {
        let graph = model.graph.get_or_insert_with(Default::default);
        if !retrain_zoo::set_thresholds(graph, &self.thresholds) {
            return false;
        }
        let value = serde_json::to_string(self).expect("numbers serialise");
        model.metadata_props.retain(|p| p.key != MULTI_LABEL_KEY);
        model.metadata_props.push(retrain_onnx::proto::StringStringEntryProto { key: MULTI_LABEL_KEY.into(), value });
        true
    }
}

impl ModelInfo {
    /// `metadata_props` entries. Each value is plain text or JSON, readable from Python with
    /// `onnxruntime.InferenceSession(p).get_modelmeta().custom_metadata_map`.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let p = self.preprocess;
        let mut m = vec![
            ("retrain.format".into(), FORMAT.into()),
            ("retrain.class_names".into(), serde_json::to_string(&self.class_names).expect("strings serialise")),
            ("retrain.backbone".into(), self.backbone.clone()),
            ("retrain.weights_sha256".into(), self.weights_sha256.clone()),
            ("retrain.preprocess".into(), serde_json::to_string(&p).expect("numbers serialise")),
            (
                "retrain.input".into(),
                format!(
                    "`image`: uint8 RGB [batch, {c}, {c}, 3]; resize the shorter side to {r} (bilinear, antialiased, as PIL), center-crop {c}; normalisation (x - mean) / std happens inside the graph",
                    c = p.crop,
                    r = p.resize
                ),
            ),
            ("retrain.outputs".into(), match self.multi_label {
                None => "`probabilities` [batch, classes] (softmax), `logits` [batch, classes], `features` [batch, dim]".into(),
                Some(_) => "`probabilities` [batch, classes] (an independent sigmoid per class: several labels per photo), `labels` [batch, classes] (1 where the probability reaches the class's threshold in `retrain.multi_label`, else 0), `logits` [batch, classes], `features` [batch, dim]".into(),
            }),
        ];
        if let Some(ml) = &self.multi_label {
            m.push((MULTI_LABEL_KEY.into(), serde_json::to_string(ml).expect("numbers serialise")));
        }
        m
    }

    /// The labels a photo with these probabilities has: at or above each class's threshold
    /// (the graph's `labels` output). None for a single-label model.
    pub fn labels_of(&self, probabilities: &[f32]) -> Option<Vec<usize>> {
        let t = &self.multi_label.as_ref()?.thresholds;
        Some((0..probabilities.len().min(t.len())).filter(|&c| probabilities[c] >= t[c]).collect())
    }

    /// Reads the metadata back from a decoded model.
    pub fn from_model(model: &retrain_onnx::ModelProto, path: &Path) -> Result<Self> {
        let not = |reason: &str| Error::NotAModel { path: path.to_path_buf(), reason: reason.into() };
        let get = |k: &str| {
            retrain_onnx::metadata(model, k)
                .ok_or_else(|| not(&format!("its metadata has no `{k}`; was it made by `retrain train`?")))
        };
        if get("retrain.format")? != FORMAT {
            return Err(not("it was written by another retrain version"));
        }
        Ok(Self {
            class_names: serde_json::from_str(get("retrain.class_names")?)
                .map_err(|e| not(&format!("bad class names: {e}")))?,
            backbone: get("retrain.backbone")?.to_string(),
            weights_sha256: get("retrain.weights_sha256")?.to_string(),
            preprocess: serde_json::from_str(get("retrain.preprocess")?)
                .map_err(|e| not(&format!("bad preprocessing: {e}")))?,
            open_set: match retrain_onnx::metadata(model, retrain_openset::METADATA_KEY) {
                None => None,
                Some(v) => Some(
                    serde_json::from_str(v)
                        .map_err(|e| not(&format!("bad `{}`: {e}", retrain_openset::METADATA_KEY)))?,
                ),
            },
            multi_label: match retrain_onnx::metadata(model, MULTI_LABEL_KEY) {
                None => None,
                Some(v) => Some(serde_json::from_str(v).map_err(|e| not(&format!("bad `{MULTI_LABEL_KEY}`: {e}")))?),
            },
        })
    }

    pub fn geometry(&self) -> Geometry {
        Geometry { resize: self.preprocess.resize, crop: self.preprocess.crop, filter: self.preprocess.interpolation }
    }
}

/// Sessions over `model`; the one using every thread is made now, so a bad model fails here.
fn sessions(model: Vec<u8>, what: String, threads: usize) -> Result<Sessions<'static>> {
    let whole = Session::new(&model, &what, threads)?;
    Ok(Sessions::new(threads, move |n| Session::new(&model, &what, n)).with_whole(whole))
}

/// How photos of none of the classes are told apart (`--reject`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reject {
    /// At the threshold stored in the model (none for a model without an open-set score).
    Auto,
    Off,
    /// Photos whose `ood_score` is above this are "unknown".
    Threshold(f32),
}

impl std::str::FromStr for Reject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            v => match v.parse::<f32>() {
                Ok(t) if (0.0..=2.0).contains(&t) => Ok(Self::Threshold(t)),
                _ => Err(format!("{v:?}: expected auto, off or an ood_score threshold from 0 to 2")),
            },
        }
    }
}

/// The `ood_score` threshold `reject` means for the model at `path`: `None` when nothing is
/// rejected. A threshold given for a model without an `ood_score` is an error.
pub fn threshold(info: &ModelInfo, path: &Path, reject: Reject) -> Result<Option<f32>> {
    match (reject, &info.open_set) {
        (Reject::Off, _) | (Reject::Auto, None) => Ok(None),
        (Reject::Auto, Some(o)) => Ok(Some(o.threshold)),
        (Reject::Threshold(t), Some(_)) => Ok(Some(t)),
        (Reject::Threshold(_), None) => Err(Error::NotAModel {
            path: path.to_path_buf(),
            reason: "it has no `ood_score` output to reject by (made by an older retrain: train it again, or use --reject off)".into(),
        }),
    }
}

/// One photo's answer: class probabilities and, from a model that has it, its `ood_score`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub probabilities: Vec<f32>,
    pub ood_score: Option<f32>,
}

/// A trained model opened for prediction.
pub struct Classifier {
    pub info: ModelInfo,
    pub path: PathBuf,
    sessions: Sessions<'static>,
    /// The graph output read, and whether it still needs a softmax.
    output: &'static str,
    softmax: bool,
    /// Images larger than this are refused, each in its own slot (`--max-pixels`).
    pub limits: Limits,
}

/// Checks that `bytes` are a retrain model and reads its metadata, before ONNX Runtime
/// sees them: empty, non-ONNX and foreign files get a reason of their own.
pub fn inspect(bytes: &[u8], path: &Path) -> Result<ModelInfo> {
    let not = |reason: &str| Error::NotAModel { path: path.to_path_buf(), reason: reason.into() };
    if bytes.is_empty() {
        return Err(not("empty file"));
    }
    let model = retrain_onnx::decode(bytes, path).map_err(|_| not("not an ONNX file"))?;
    if let Err((stored, actual)) = retrain_onnx::verify_sealed(bytes) {
        return Err(not(&format!(
            "it was changed or damaged after it was written (checksum {}… stored, {}… now): use an intact copy",
            &stored[..12.min(stored.len())],
            &actual[..12]
        )));
    }
    let info = ModelInfo::from_model(&model, path)?;
    let graph = model.graph.as_ref().ok_or_else(|| not("it has no graph"))?;
    if !graph.input.iter().any(|i| i.name == "image") || !graph.output.iter().any(|o| o.name == "probabilities") {
        return Err(not("its graph lacks the `image` input or the `probabilities` output"));
    }
    if info.open_set.is_some() != retrain_openset::has_ood_output(&model) {
        return Err(not(&format!(
            "its metadata and its graph disagree on the `{}` output: use an intact copy",
            retrain_openset::OUTPUT
        )));
    }
    if info.class_names.len() < 2 {
        return Err(not("it names fewer than two classes"));
    }
    let has_labels = graph.output.iter().any(|o| o.name == retrain_zoo::LABELS_OUTPUT);
    if info.multi_label.is_some() != has_labels {
        return Err(not(&format!(
            "its metadata and its graph disagree on the `{}` output: use an intact copy",
            retrain_zoo::LABELS_OUTPUT
        )));
    }
    if let Some(ml) = &info.multi_label {
        if ml.thresholds.len() != info.class_names.len() || ml.thresholds.iter().any(|t| !(0.0..=1.0).contains(t)) {
            return Err(not(&format!(
                "its `{MULTI_LABEL_KEY}` needs one threshold from 0 to 1 per class ({} classes, {} thresholds)",
                info.class_names.len(),
                ml.thresholds.len()
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = info.class_names.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(not(&format!("it names the class {d:?} twice")));
    }
    // Every output but `features` and `ood_score` has one value per class.
    for o in graph.output.iter().filter(|o| o.name != "features" && o.name != retrain_openset::OUTPUT) {
        let dims = o.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.shape.as_ref());
        let width = dims.and_then(|s| s.dim.get(1)).and_then(|d| d.dim_value);
        match width {
            Some(w) if w != info.class_names.len() as i64 => {
                return Err(not(&format!(
                    "its output `{}` has {w} values per image but it names {} classes",
                    o.name,
                    info.class_names.len()
                )))
            }
            // Not declared: checked on the first answer instead.
            _ => {}
        }
    }
    let p = info.preprocess;
    if p.crop == 0 || p.resize == 0 || p.crop > 4096 || p.resize > 4096 {
        return Err(not(&format!("bad preprocessing sizes (resize {}, crop {})", p.resize, p.crop)));
    }
    Ok(info)
}

/// A model file's bytes and metadata, checked by [`inspect`].
pub fn read(path: &Path) -> Result<(Vec<u8>, ModelInfo)> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::NotAModel { path: path.to_path_buf(), reason: format!("cannot read: {e}") })?;
    let info = inspect(&bytes, path)?;
    Ok((bytes, info))
}

impl Classifier {
    /// A backbone's own ImageNet classifier (no trained head), for a quick sanity check.
    pub fn imagenet(backbone: &crate::backbone::LoadedBackbone, threads: usize) -> Result<Self> {
        let info = ModelInfo {
            class_names: retrain_zoo::imagenet_classes().into_iter().map(String::from).collect(),
            backbone: backbone.info.name.into(),
            weights_sha256: backbone.weights_sha256.clone(),
            preprocess: backbone.info.preprocess,
            open_set: None,
            multi_label: None,
        };
        Ok(Self {
            info,
            path: backbone.weights_path.clone(),
            sessions: sessions(backbone.imagenet_model()?, backbone.info.name.into(), threads)?,
            output: "imagenet_logits",
            softmax: true,
            limits: Limits::default(),
        })
    }

    pub fn open(path: &Path, threads: usize) -> Result<Self> {
        let (bytes, info) = read(path)?;
        let sessions = sessions(bytes, path.display().to_string(), threads)?;
        Ok(Self {
            info,
            path: path.to_path_buf(),
            sessions,
            output: "probabilities",
            softmax: false,
            limits: Limits::default(),
        })
    }

    /// The `ood_score` threshold `reject` means for this model (see [`threshold`]).
    pub fn threshold(&self, reject: Reject) -> Result<Option<f32>> {
        threshold(&self.info, &self.path, reject)
    }

    /// Class probabilities (and `ood_score`) for each file, in order; a file that cannot be
    /// decoded gets its error in its slot.
    pub fn classify(
        &mut self,
        files: &[PathBuf],
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<Result<Scored, PixelError>>> {
        let g = self.info.geometry();
        progress.set_length(files.len() as u64);
        // `inspect` saw to it that a model with `retrain.openset` has the output.
        let ood = self.info.open_set.is_some();
        let outputs: &[&str] = if ood { &[self.output, retrain_openset::OUTPUT] } else { &[self.output] };
        let rows =
            retrain_features::extract(&mut self.sessions, outputs, files, g, self.limits, None, 32, progress)?.features;
        let softmax = self.softmax;
        Ok(rows
            .into_iter()
            .map(|r| {
                r.map(|mut v| {
                    let ood_score = if ood { v.pop() } else { None };
                    let probabilities = if softmax { retrain_head::softmax(&v) } else { v };
                    Scored { probabilities, ood_score }
                })
            })
            .collect())
    }
}
