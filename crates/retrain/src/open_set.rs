//! The open-set stage, last before the model is written: on the finished graph (head in
//! place, int8 quantised when asked), a bank of the model's own training features, the
//! threshold that rejects photos of none of the classes and the temperature that calibrates
//! its probabilities, all from the training split alone (cross-validation), written into the
//! graph by `retrain_openset`.

use crate::model::Scored;
use crate::Result;
use retrain_head::{HeadConfig, Split};
use retrain_openset::{Config, Fitted};
use serde::Serialize;

pub use retrain_openset::{reliability, Bin, OpenSet, OUTPUT};

/// What the report says of the open-set score on the validation photos.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OpenSetSummary {
    #[serde(flatten)]
    pub info: OpenSet,
    /// The share of validation photos accepted at the threshold.
    pub val_acceptance: Option<f64>,
    /// Accuracy on the accepted validation photos.
    pub val_accuracy_accepted: Option<f64>,
}

/// Temperature scaling and what it did on the validation photos (`calibration` in the report).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Calibration {
    pub temperature: f32,
    /// Fitted on the out-of-fold logits of this many folds of the training split.
    pub folds: usize,
    /// Expected calibration error (15 bins) of the validation photos with temperature 1.
    pub ece_before: Option<f64>,
    pub ece_after: Option<f64>,
}

/// A fitted bank, threshold and temperature.
pub struct OpenSetFit {
    pub fitted: Fitted,
    pub temperature: f32,
}

/// Fits on the training features `x` (rows of `dim`) with labels `y`. The temperature comes
/// from out-of-fold logits: a linear head trained as `head` for `steps` steps on the other
/// folds. `None`, with a warning, when there are too few photos to cross-validate.
pub fn fit(
    x: &[f32],
    y: &[usize],
    dim: usize,
    classes: usize,
    head: &HeadConfig,
    steps: usize,
    seed: u64,
    quiet: bool,
) -> Result<Option<OpenSetFit>> {
    let cfg = Config { seed, ..Config::default() };
    let fitted = match retrain_openset::fit(x, y, dim, &cfg) {
        Ok(f) => f,
        Err(e @ retrain_openset::OpenSetError::TooFew(_)) => {
            crate::outputs::warn(quiet, &format!("{e}: the model has no ood_score"));
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let (fold, k) = (&fitted.fold, fitted.info.folds);
    let mut logits = vec![0f32; y.len() * classes];
    let cfg_head = HeadConfig { max_steps: steps.max(1), ..head.clone() };
    for f in 0..k {
        let (held, rest): (Vec<usize>, Vec<usize>) = (0..y.len()).partition(|&i| fold[i] == f);
        if held.is_empty() || rest.is_empty() {
            continue;
        }
        let rows =
            |idx: &[usize]| idx.iter().flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied()).collect::<Vec<_>>();
        let labels: Vec<usize> = rest.iter().map(|&i| y[i]).collect();
        let h = retrain_head::train(Split { features: &rows(&rest), labels: &labels }, None, dim, classes, &cfg_head)?;
        for &i in &held {
            logits[i * classes..(i + 1) * classes].copy_from_slice(&h.logits(&x[i * dim..(i + 1) * dim]));
        }
    }
    let temperature = retrain_openset::fit_temperature(&logits, y, classes);
    Ok(Some(OpenSetFit { fitted, temperature }))
}

impl OpenSetFit {
    /// Adds `ood_score`, the temperature and the metadata to the finished graph.
    pub fn attach(&self, model: &mut retrain_onnx::ModelProto) -> Result<()> {
        Ok(retrain_openset::add_to_model(model, &self.fitted, self.temperature)?)
    }

    pub fn info(&self) -> OpenSet {
        OpenSet { temperature: self.temperature, ..self.fitted.info.clone() }
    }

    /// The scores of features `x` (rows of `dim`), as the graph computes them.
    pub fn scores(&self, x: &[f32]) -> Vec<f32> {
        let dim = self.fitted.dim;
        retrain_openset::nearest(&self.fitted.bank, dim, &retrain_openset::unit_rows(x, dim))
    }
}

/// The probabilities `p` of a model with temperature `t` would have had without it:
/// softmax(t·ln p), since p ∝ exp(logits / t).
pub fn uncalibrated(p: &[f32], t: f32) -> Vec<f32> {
    let l: Vec<f32> = p.iter().map(|&v| t * v.max(f32::MIN_POSITIVE).ln()).collect();
    retrain_openset::softmax_t(&l, 1.0)
}

/// Of photos given as (score, whether its top class was right): how many `threshold` accepts
/// (all of them without one; none without a score), and how many of those are right.
pub fn accepted(photos: impl IntoIterator<Item = (Option<f32>, bool)>, threshold: Option<f32>) -> (usize, usize) {
    photos
        .into_iter()
        .filter(|(s, _)| threshold.is_none_or(|t| s.is_some_and(|o| OpenSet::accepts(o, t))))
        .fold((0, 0), |(n, right), (_, r)| (n + 1, right + usize::from(r)))
}

/// The open-set and calibration figures of a model (`info`) on labelled photos it scored.
pub fn summarise(info: &OpenSet, scored: &[(Scored, usize)]) -> (OpenSetSummary, Calibration) {
    let labels: Vec<usize> = scored.iter().map(|(_, y)| *y).collect();
    let after: Vec<Vec<f32>> = scored.iter().map(|(s, _)| s.probabilities.clone()).collect();
    let before: Vec<Vec<f32>> = after.iter().map(|p| uncalibrated(p, info.temperature)).collect();
    let n = scored.len();
    let (accepted, right) = accepted(
        scored.iter().map(|(s, y)| (s.ood_score, crate::metrics::argmax(&s.probabilities) == *y)),
        Some(info.threshold),
    );
    let some = |v: f64| (n > 0).then_some(v);
    (
        OpenSetSummary {
            info: info.clone(),
            val_acceptance: some(accepted as f64 / n.max(1) as f64),
            val_accuracy_accepted: (accepted > 0).then(|| right as f64 / accepted as f64),
        },
        Calibration {
            temperature: info.temperature,
            folds: info.folds,
            ece_before: some(retrain_openset::ece(&before, &labels)),
            ece_after: some(retrain_openset::ece(&after, &labels)),
        },
    )
}

/// The training photos' features through `model` itself (fine-tuned, int8): what its
/// `ood_score` will compare. Photos that do not decode are left out.
pub fn model_features(
    model: &retrain_onnx::ModelProto,
    train: &[crate::dataset::Sample],
    g: retrain_pixels::Geometry,
    limits: retrain_pixels::Limits,
    run: &crate::spec::RunSettings,
) -> Result<(Vec<f32>, Vec<usize>)> {
    // Returns the features and which of `train` they are (those that decoded).
    let bytes = retrain_onnx::encode(model);
    let mut sessions = retrain_features::Sessions::new(run.threads, move |n| {
        retrain_features::Session::new(&bytes, "the fine-tuned model", n)
    });
    let files: Vec<std::path::PathBuf> = train.iter().map(|s| s.path.clone()).collect();
    let bar = crate::progress_bar(files.len() as u64, "open set", run.quiet);
    let rows = retrain_features::extract(&mut sessions, &["features"], &files, g, limits, None, 32, &bar)?.features;
    bar.finish_and_clear();
    let (mut x, mut kept) = (Vec::new(), Vec::new());
    for (i, r) in rows.into_iter().enumerate() {
        if let Ok(r) = r {
            x.extend(r);
            kept.push(i);
        }
    }
    Ok((x, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_counts_what_the_threshold_lets_through_and_how_many_are_right() {
        let photos = [(Some(0.1), true), (Some(0.2), false), (Some(0.9), true), (None, true), (Some(f32::NAN), true)];
        assert_eq!(accepted(photos, Some(0.5)), (2, 1));
        // No threshold: every photo is accepted, with or without a score.
        assert_eq!(accepted(photos, None), (5, 4));
        assert_eq!(OpenSet::verdict(Some(0.9), Some(0.5)), Some(false));
        assert_eq!(OpenSet::verdict(Some(0.9), None), None);
        assert_eq!(OpenSet::verdict(None, Some(0.5)), None);
    }
}
