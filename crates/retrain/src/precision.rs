//! `--precision`: the arithmetic the backbone runs in. int8 is static post-training
//! quantisation in ONNX's QDQ form, calibrated on the user's own training images.

use crate::dataset::Sample;
use crate::{Error, Result};
use retrain_features::Session;
use retrain_onnx::quantize::{self, Ranges};
use retrain_onnx::ModelProto;
use retrain_pixels::Geometry;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 throughout: the most accurate, the default.
    #[default]
    Fp32,
    /// bfloat16: refused with the reason (see [`Precision::check`]).
    Bf16,
    /// int8 weights and activations (ranges calibrated on the training images).
    Int8,
}

/// How many training images set the int8 ranges. ONNX Runtime's examples use 100-ish; the
/// ranges of these CNNs settle well before that.
pub const CALIBRATION_IMAGES: usize = 64;
/// Images per calibration batch (only two scalars per quantised tensor come back).
const CALIBRATION_BATCH: usize = 32;

impl Precision {
    /// Refuses what this build cannot run, saying why, before any work starts.
    pub fn check(self) -> Result<()> {
        match self {
            Precision::Bf16 => Err(Error::Precision {
                precision: "bf16",
                reason: "ONNX's Conv is defined for float16/float/double only (a bfloat16 Conv is an invalid \
                         model to ONNX Runtime), and its CPU provider has no bf16 kernels; use `--precision int8` \
                         (features 1.7-2.7× faster here) or fp32"
                    .into(),
            }),
            _ => Ok(()),
        }
    }
}

/// Evenly spread training images for calibration (every class is represented in proportion).
pub fn calibration_files(train: &[Sample]) -> Vec<PathBuf> {
    let step = train.len().div_ceil(CALIBRATION_IMAGES).max(1);
    train.iter().step_by(step).map(|s| s.path.clone()).collect()
}

/// Ranges of the tensors int8 quantisation of `model` needs, measured on `files`. Values in
/// `exclude` stay float (a trained head's input).
pub fn calibrate(
    model: &ModelProto,
    exclude: &[&str],
    files: &[PathBuf],
    geometry: Geometry,
    threads: usize,
) -> Result<Ranges> {
    let points = quantize::calibration_points(model, exclude);
    let probe = retrain_onnx::encode(&quantize::with_range_outputs(model, &points));
    let mut session = Session::new(&probe, "int8 calibration", threads)?;
    let seen = retrain_features::calibrate(&mut session, files, geometry, CALIBRATION_BATCH)?;
    let ranges: Ranges = points
        .iter()
        .filter_map(|p| {
            let lo = seen.get(&quantize::min_output(p))?.0;
            let hi = seen.get(&quantize::max_output(p))?.1;
            Some((p.clone(), (lo, hi)))
        })
        .collect();
    if ranges.is_empty() {
        return Err(Error::Data {
            path: files.first().cloned().unwrap_or_default(),
            reason: "int8 calibration: none of the calibration images could be read".into(),
        });
    }
    Ok(ranges)
}

/// The value a trained head reads (the input of the layer behind the `logits` output): it
/// stays float, as the head does.
pub fn head_input(model: &ModelProto) -> Option<String> {
    let g = model.graph.as_ref()?;
    let producer = |v: &str| g.node.iter().find(|n| n.output.iter().any(|o| o == v));
    let logits = producer("logits")?;
    let gemm = if logits.op_type == "Identity" { producer(&logits.input[0])? } else { logits };
    gemm.input.first().cloned()
}

/// `model` quantised with `ranges`, marked as int8 in its metadata.
pub fn quantized(model: &ModelProto, ranges: &Ranges) -> ModelProto {
    let mut m = quantize::quantize_qdq(model, ranges);
    m.metadata_props.push(retrain_onnx::proto::StringStringEntryProto {
        key: "retrain.precision".into(),
        value: format!("int8 (QDQ; activations uint8 per tensor from {} calibration images' ranges, Conv weights int8 per channel)", CALIBRATION_IMAGES),
    });
    m
}

/// Calibrated ranges on disk, under the feature cache, keyed by the backbone (its feature
/// cache key) and the content of the calibration images: a second `train --precision int8`
/// on the same photos skips the calibration pass.
pub struct RangeCache {
    path: PathBuf,
}

impl RangeCache {
    pub fn new(root: &Path, backbone_key: &str, files: &[PathBuf]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(backbone_key.as_bytes());
        for f in files {
            // An unreadable (or too large) file hashes as empty: it was skipped by calibration too.
            let bytes = retrain_pixels::read_file(f, retrain_pixels::Limits::default()).unwrap_or_default();
            h.update(retrain_features::content_hash(&bytes).as_bytes());
        }
        Self { path: root.join("int8").join(format!("{}.json", &h.finalize().to_hex()[..32])) }
    }

    pub fn get(&self) -> Option<Ranges> {
        let pairs: Vec<(String, f32, f32)> = serde_json::from_slice(&std::fs::read(&self.path).ok()?).ok()?;
        Some(pairs.into_iter().map(|(k, lo, hi)| (k, (lo, hi))).collect())
    }

    pub fn put(&self, ranges: &Ranges) -> Result<()> {
        let err = |source| Error::Write { path: self.path.clone(), source };
        let pairs: Vec<(&String, f32, f32)> = ranges.iter().map(|(k, &(lo, hi))| (k, lo, hi)).collect();
        std::fs::create_dir_all(self.path.parent().expect("has a folder")).map_err(err)?;
        retrain_files::write_atomic(&self.path, &serde_json::to_vec(&pairs).expect("numbers serialise"), false)
            .map_err(err)
    }
}

/// Digest of calibrated ranges, for cache keys: int8 features depend on them.
pub fn ranges_digest(ranges: &Ranges) -> String {
    let mut h = blake3::Hasher::new();
    for (k, (lo, hi)) in ranges {
        h.update(k.as_bytes());
        h.update(&lo.to_le_bytes());
        h.update(&hi.to_le_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}
