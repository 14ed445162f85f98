//! "Not one of my classes": an out-of-distribution score and calibrated probabilities, both
//! inside the model graph so every ONNX Runtime gives the same answers.
//!
//! The score is one minus the cosine similarity of a photo's features to the nearest of a
//! bounded bank of training features (per class, chosen to cover the class: greedy k-centre).
//! Its threshold comes from cross-validation on the training split alone: each fold is scored
//! against a bank built without it, and the threshold accepts the wanted share of those
//! out-of-fold scores. The temperature that calibrates the probabilities is fitted on
//! out-of-fold logits, which the caller provides (it owns the head).

mod bank;
mod calibrate;
mod graph;

pub use bank::{bank, folds, nearest, out_of_fold_scores, unit_rows};
pub use calibrate::{ece, fit_temperature, reliability, softmax_t, Bin};
pub use graph::{add_to_model, has_ood_output};

use serde::{Deserialize, Serialize};

/// The metadata key holding [`OpenSet`] as JSON.
pub const METADATA_KEY: &str = "retrain.openset";
/// The graph output: `[batch]`, higher = less like the training photos.
pub const OUTPUT: &str = "ood_score";
/// What [`OpenSet::score`] says for the score this crate computes.
pub const SCORE: &str = "1 - cosine similarity to the nearest stored training feature";

#[derive(Debug, thiserror::Error)]
pub enum OpenSetError {
    #[error("{got} feature values do not make rows of {dim}")]
    Shape { got: usize, dim: usize },
    #[error("{0} training photos are too few to cross-validate an open-set threshold (at least 2)")]
    TooFew(usize),
    #[error("the model graph has no `{0}` value to read")]
    Graph(String),
}

/// What a model file says of its open-set score and calibration (`retrain.openset`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpenSet {
    /// How `ood_score` is computed, in words.
    pub score: String,
    /// Photos scoring above this are "none of the classes" (`--reject auto`).
    pub threshold: f32,
    /// The share of training photos the threshold accepted out of fold.
    pub acceptance: f64,
    /// Training features stored in the graph.
    pub bank: usize,
    /// Cross-validation folds the threshold and the temperature came from.
    pub folds: usize,
    /// `probabilities = softmax(logits / temperature)`.
    pub temperature: f32,
}

impl OpenSet {
    /// Whether a photo with this score is accepted as one of the classes at `threshold`
    /// (a NaN score is not).
    pub fn accepts(score: f32, threshold: f32) -> bool {
        score <= threshold
    }

    /// `known` as answers show it: whether a photo with `score` is one of the classes, or
    /// `None` when there is no threshold or no score to judge by.
    pub fn verdict(score: Option<f32>, threshold: Option<f32>) -> Option<bool> {
        threshold.zip(score).map(|(t, o)| Self::accepts(o, t))
    }
}

/// How the bank and the threshold are fitted.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The share of in-distribution photos to accept.
    pub acceptance: f64,
    /// At most this many training features are stored (shared among classes by size).
    pub max_bank: usize,
    pub folds: usize,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self { acceptance: 0.95, max_bank: 2048, folds: 5, seed: 0 }
    }
}

/// A fitted bank and threshold (the temperature is the caller's to set).
#[derive(Clone, Debug)]
pub struct Fitted {
    pub info: OpenSet,
    /// Unit rows `[bank, dim]`, already rounded to the half precision the graph stores.
    pub bank: Vec<f32>,
    pub dim: usize,
    /// Each training photo's score against a bank built without its fold.
    pub out_of_fold: Vec<f32>,
    /// Each training photo's fold (the same folds serve the caller's out-of-fold logits).
    pub fold: Vec<usize>,
}

/// The value of `sorted` (ascending) at or below which `share` of them lie.
pub fn quantile(sorted: &[f32], share: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let k = ((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

/// Fits the bank on all of `features` (rows of `dim`) and the threshold by cross-validation.
pub fn fit(features: &[f32], labels: &[usize], dim: usize, cfg: &Config) -> Result<Fitted, OpenSetError> {
    if dim == 0 || features.len() != labels.len() * dim {
        return Err(OpenSetError::Shape { got: features.len(), dim });
    }
    let n = labels.len();
    if n < 2 {
        return Err(OpenSetError::TooFew(n));
    }
    let unit = unit_rows(features, dim);
    let all: Vec<usize> = (0..n).collect();
    let bank_rows = bank(&unit, labels, dim, &all, cfg.max_bank);
    let fold = folds(labels, cfg.folds, cfg.seed);
    let k = fold.iter().max().map_or(1, |m| m + 1);
    let oof = out_of_fold_scores(&unit, labels, dim, &fold, cfg.max_bank);
    let mut sorted: Vec<f32> = oof.iter().copied().filter(|s| s.is_finite()).collect();
    sorted.sort_by(f32::total_cmp);
    let threshold = quantile(&sorted, cfg.acceptance);
    let accepted = oof.iter().filter(|&&s| OpenSet::accepts(s, threshold)).count() as f64 / n as f64;
    Ok(Fitted {
        info: OpenSet {
            score: SCORE.into(),
            threshold,
            acceptance: accepted,
            bank: bank_rows.len() / dim,
            folds: k,
            temperature: 1.0,
        },
        bank: bank_rows,
        dim,
        out_of_fold: oof,
        fold,
    })
}

/// Area under the ROC curve of telling `ood` from `id` by score (higher = more unknown):
/// the chance an OOD photo scores above an ID one, ties counting half.
pub fn auroc(id: &[f32], ood: &[f32]) -> f64 {
    if id.is_empty() || ood.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = id.iter().map(|&s| (s, false)).chain(ood.iter().map(|&s| (s, true))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0.total_cmp(&all[i].0).is_eq() {
            j += 1;
        }
        let avg = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (n_id, n_ood) = (id.len() as f64, ood.len() as f64);
    (rank_sum - n_ood * (n_ood + 1.0) / 2.0) / (n_id * n_ood)
}

/// The share of `ood` accepted at the threshold that accepts `acceptance` of `id`.
pub fn fpr_at(id: &[f32], ood: &[f32], acceptance: f64) -> f64 {
    let mut sorted = id.to_vec();
    sorted.sort_by(f32::total_cmp);
    let t = quantile(&sorted, acceptance);
    ood.iter().filter(|&&s| OpenSet::accepts(s, t)).count() as f64 / ood.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_is_one_half_for_equal_scores_and_one_when_apart() {
        assert_eq!(auroc(&[0.1, 0.2], &[0.8, 0.9]), 1.0);
        assert_eq!(auroc(&[0.8, 0.9], &[0.1, 0.2]), 0.0);
        assert_eq!(auroc(&[0.5; 3], &[0.5; 4]), 0.5);
        assert!((auroc(&[0.1, 0.5], &[0.3, 0.9]) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn fpr_counts_ood_accepted_at_the_id_threshold() {
        let id: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        // 95% of ID accepted: threshold 0.94.
        assert_eq!(fpr_at(&id, &[0.5, 0.94, 0.95, 2.0], 0.95), 0.5);
    }

    #[test]
    fn quantile_accepts_at_least_the_share() {
        let s: Vec<f32> = (1..=20).map(|i| i as f32).collect();
        assert_eq!(quantile(&s, 0.95), 19.0);
        assert_eq!(quantile(&s, 1.0), 20.0);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    /// Two classes on two separate directions: photos near them are accepted, a photo in a
    /// third direction is not, and the threshold accepts the wanted share out of fold.
    #[test]
    fn fit_accepts_its_classes_and_rejects_another_direction() {
        let dim = 8;
        let mut rng = 1u64;
        let mut noise = || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((rng >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.2
        };
        let (mut f, mut y) = (Vec::new(), Vec::new());
        for i in 0..60 {
            let c = i % 2;
            for j in 0..dim {
                f.push(if j == c { 1.0 } else { 0.0 } + noise());
            }
            y.push(c);
        }
        let fitted = fit(&f, &y, dim, &Config::default()).unwrap();
        assert_eq!(fitted.info.bank, 60);
        assert_eq!(fitted.info.folds, 5);
        assert!(fitted.info.acceptance >= 0.95, "{}", fitted.info.acceptance);
        let near: Vec<f32> = (0..dim).map(|j| if j == 0 { 1.0 } else { 0.03 }).collect();
        let far: Vec<f32> = (0..dim).map(|j| if j == 5 { 1.0 } else { 0.0 }).collect();
        let s = nearest(&fitted.bank, dim, &unit_rows(&[near, far].concat(), dim));
        assert!(OpenSet::accepts(s[0], fitted.info.threshold), "{s:?} vs {}", fitted.info.threshold);
        assert!(!OpenSet::accepts(s[1], fitted.info.threshold), "{s:?}");
        assert!(!OpenSet::accepts(f32::NAN, fitted.info.threshold));
    }

    #[test]
    fn fit_refuses_what_it_cannot_cross_validate() {
        assert!(matches!(fit(&[1.0, 0.0], &[0], 2, &Config::default()), Err(OpenSetError::TooFew(1))));
        assert!(matches!(fit(&[1.0, 0.0, 1.0], &[0, 1], 2, &Config::default()), Err(OpenSetError::Shape { .. })));
    }
}
