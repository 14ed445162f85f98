//! `retrain train --model auto`: the backbone chosen by k-fold cross-validation of the linear
//! head on the training split alone (the validation split scores the chosen model, so it must
//! not choose it), near-ties going to the faster backbone.

use crate::prepare::{prepare, Prepared};
use crate::spec::{BackboneSpec, Recipe, RunSettings, Strategy, TrainSpec};
use crate::{Error, Result};
use retrain_head::{HeadConfig, Split};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The `--model` value that asks for a choice.
pub const AUTO: &str = "auto";

/// The small, fast backbones `--model auto` considers by default (those with weights at hand).
pub const DEFAULT_CANDIDATES: &[&str] = &[
    "mobilenet_v2",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet50",
    "efficientnet_b0",
    "convnext_tiny",
];

/// Folds of the cross-validation.
pub const FOLDS: usize = 5;

/// Candidates within this much cross-validated accuracy of the best count as tied; the fastest wins.
pub const NEAR_TIE: f64 = 0.01;

/// One candidate's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub model: String,
    /// Mean accuracy over the folds, and its standard deviation.
    pub cv_accuracy: f64,
    pub cv_sd: f64,
    pub fold_accuracies: Vec<f64>,
    /// Forward passes per second of the feature extractor on this machine.
    pub images_per_second: f64,
    /// The exported classifier's size (fp32 parameters).
    pub model_mb: f64,
    pub parameters: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelSelection {
    pub candidates: Vec<Candidate>,
    pub chosen: String,
    pub folds: usize,
    pub train_images: usize,
    pub reason: String,
}

/// The candidates of `spec`: `--candidates`, else the default ones whose weights were given
/// (`--weights NAME=FILE`) or are cached; if none is, MobileNetV2 and EfficientNet-Lite0
/// (downloaded on first use).
pub fn candidates(spec: &BackboneSpec) -> Vec<String> {
    if !spec.candidates.is_empty() {
        return spec.candidates.clone();
    }
    let at_hand: Vec<String> = DEFAULT_CANDIDATES
        .iter()
        .filter(|m| spec.weights_for.contains_key(**m) || retrain_zoo::find(m).is_ok_and(|b| b.weights.is_cached()))
        .map(|m| m.to_string())
        .collect();
    match at_hand.is_empty() {
        true => vec!["mobilenet_v2".into(), "efficientnet_lite0".into()],
        false => at_hand,
    }
}

/// Accuracy of the linear head on each of `k` stratified folds of the training features,
/// trained on the other folds for the configured number of steps (no early stopping: nothing
/// outside the training split may decide anything).
pub fn cross_validate(f: &Prepared, head: &HeadConfig, k: usize, seed: u64) -> Result<Vec<f64>> {
    let dim = f.backbone.feature_dim();
    let classes = f.ds.class_names.len();
    let labels = f.train_labels();
    let folds = retrain_files::stratified_folds(&labels, k, seed);
    let mut out = Vec::new();
    for fold in 0..k {
        let (mut tx, mut ty, mut hx, mut hy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, (&l, &fi)) in labels.iter().zip(&folds).enumerate() {
            let row = &f.tx[i * dim..(i + 1) * dim];
            if fi == fold {
                hx.extend_from_slice(row);
                hy.push(l);
            } else {
                tx.extend_from_slice(row);
                ty.push(l);
            }
        }
        if hy.is_empty() || ty.is_empty() {
            continue;
        }
        let h = retrain_head::train(Split { features: &tx, labels: &ty }, None, dim, classes, head)?;
        let right = h.predict_proba(&hx).iter().zip(&hy).filter(|(p, &y)| crate::metrics::argmax(p) == y).count();
        out.push(right as f64 / hy.len() as f64);
    }
    Ok(out)
}

/// Forward passes per second of `f`'s feature extractor on a batch of grey images: the best
/// of three timings after a warm-up batch (anything else running only ever slows a timing down).
fn speed(f: &Prepared, threads: usize) -> Result<f64> {
    let bytes = f.backbone.feature_model()?;
    let mut s = retrain_features::Session::new(&bytes, f.backbone.info.name, threads)?;
    let size = f.backbone.geometry().crop as usize;
    let n = 16;
    s.run(vec![128u8; n * size * size * 3], n, size)?;
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        s.run(vec![128u8; n * size * size * 3], n, size)?;
        best = best.max(n as f64 / t.elapsed().as_secs_f64().max(1e-9));
    }
    Ok(best)
}

/// Cross-validates every candidate on the training split of `spec`'s data and picks one.
pub fn choose(spec: &TrainSpec, run: &RunSettings) -> Result<ModelSelection> {
    let names = candidates(&spec.backbone);
    let mut rows = Vec::new();
    let mut train_images = 0;
    let recipe = Recipe { strategy: Strategy::Linear, ..spec.recipe.clone() };
    for name in &names {
        let f = prepare(&spec.data, &spec.backbone.for_model(name), &recipe, run)?;
        if f.ds.multi_label {
            return Err(crate::Error::Data {
                path: spec.data.dir.clone(),
                reason: "--model auto compares backbones by single-label accuracy; name a --model for photos with several labels".into(),
            });
        }
        if !run.quiet {
            eprintln!("cross-validating {name} ({FOLDS} folds of {} training photos)", f.train.len());
        }
        train_images = f.train.len();
        let folds = cross_validate(&f, &recipe.head, FOLDS, spec.data.seed)?;
        let (cv_accuracy, cv_sd) = crate::metrics::mean_sd(&folds);
        let info = f.backbone.info;
        rows.push(Candidate {
            model: name.clone(),
            cv_accuracy,
            cv_sd,
            fold_accuracies: folds,
            images_per_second: speed(&f, run.threads)?,
            model_mb: info.params as f64 * 4.0 / 1e6,
            parameters: info.params,
        });
    }
    let best = rows.iter().map(|c| c.cv_accuracy).fold(f64::NEG_INFINITY, f64::max);
    let chosen = rows
        .iter()
        .filter(|c| c.cv_accuracy >= best - NEAR_TIE)
        .max_by(|a, b| a.images_per_second.total_cmp(&b.images_per_second))
        .ok_or_else(|| Error::Data {
            path: spec.data.dir.clone(),
            reason: "no candidate backbone to choose from".into(),
        })?;
    let top = rows.iter().find(|c| c.cv_accuracy == best).expect("a best one");
    let reason = if top.model == chosen.model {
        format!(
            "{} has the best {}-fold cross-validated accuracy on the training photos ({:.3} ± {:.3})",
            chosen.model, FOLDS, chosen.cv_accuracy, chosen.cv_sd
        )
    } else {
        format!(
            "{} ({:.3}) is within {:.0} point of the best, {} ({:.3}), and {:.1}× as fast ({:.0} vs {:.0} images/s)",
            chosen.model,
            chosen.cv_accuracy,
            NEAR_TIE * 100.0,
            top.model,
            top.cv_accuracy,
            chosen.images_per_second / top.images_per_second,
            chosen.images_per_second,
            top.images_per_second
        )
    };
    let chosen = chosen.model.clone();
    Ok(ModelSelection { candidates: rows, chosen, folds: FOLDS, train_images, reason })
}
