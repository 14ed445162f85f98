//! `retrain predict`: class probabilities for files and folders.

use crate::model::Classifier;
use crate::open_set::OpenSet;
use crate::{dataset, Result};
use retrain_files::names::{csv, shown};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize)]
pub struct Ranked {
    pub class: String,
    pub probability: f32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    pub top: Vec<Ranked>,
    /// Whether the photo is one of the classes: absent when nothing is rejected (`--reject off`,
    /// or a model without an open-set score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known: Option<bool>,
    /// Higher = less like the training photos; from models that have it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood_score: Option<f32>,
    /// A several-labels model: every label the photo has (probability at or above the class's
    /// threshold), highest first; absent for a single-label model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
    /// A several-labels model: every class's probability and threshold, in class order (CSV).
    #[serde(skip)]
    pub all: Vec<Label>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Label {
    pub class: String,
    pub probability: f32,
    pub threshold: f32,
}

/// A several-labels model's answer for `p`: the labels on, highest first, and every class.
pub fn labels(info: &crate::model::ModelInfo, p: &[f32]) -> Option<(Vec<Label>, Vec<Label>)> {
    let t = &info.multi_label.as_ref()?.thresholds;
    let name = |i: usize| info.class_names.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
    let all: Vec<Label> = p
        .iter()
        .zip(t)
        .enumerate()
        .map(|(i, (&p, &t))| Label { class: name(i), probability: p, threshold: t })
        .collect();
    let mut on: Vec<Label> = all.iter().filter(|l| l.probability >= l.threshold).cloned().collect();
    on.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    Some((on, all))
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    pub reason: String,
    /// Named on the command line (rather than found inside a folder).
    pub explicit: bool,
}

/// Expands folders into their files (hidden ones ignored), keeping whether each was named;
/// what a folder's walk passed over (loops, dangling links, special files) comes back as
/// failures.
pub fn expand_inputs(inputs: &[PathBuf]) -> (Vec<(PathBuf, bool)>, Vec<Failure>) {
    let (mut out, mut passed) = (Vec::new(), Vec::new());
    for p in inputs {
        if p.is_dir() {
            let walk = dataset::files_below(p);
            out.extend(walk.files.into_iter().map(|f| (f, false)));
            passed.extend(walk.skipped.into_iter().map(|s| Failure {
                path: s.path,
                reason: s.reason,
                explicit: false,
            }));
        } else {
            out.push((p.clone(), true));
        }
    }
    (out, passed)
}

/// The top `k` classes of each image, and whether it is one of the classes at all when
/// `threshold` (an `ood_score` above it is "unknown"); unreadable files come back as failures.
pub fn predict(
    classifier: &mut Classifier,
    inputs: &[PathBuf],
    k: usize,
    threshold: Option<f32>,
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<Prediction>, Vec<Failure>)> {
    let (files, passed) = expand_inputs(inputs);
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let probs = classifier.classify(&paths, progress)?;
    let (mut preds, mut fails) = (Vec::new(), passed);
    for ((path, explicit), p) in files.into_iter().zip(probs) {
        match p {
            Ok(p) => {
                let (on, all) = labels(&classifier.info, &p.probabilities).unzip();
                preds.push(Prediction {
                    top: rank(&p.probabilities, &classifier.info.class_names, k),
                    labels: on,
                    all: all.unwrap_or_default(),
                    known: OpenSet::verdict(p.ood_score, threshold),
                    ood_score: p.ood_score,
                    path,
                })
            }
            Err(e) => fails.push(Failure { reason: e.reason(), path, explicit }),
        }
    }
    Ok((preds, fails))
}

pub fn rank(p: &[f32], names: &[String], k: usize) -> Vec<Ranked> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    // A model that names fewer classes than it outputs is refused when opened; still, a
    // class without a name is shown by its index rather than taking the process down.
    let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
    idx.into_iter().take(k.max(1)).map(|i| Ranked { class: name(i), probability: p[i] }).collect()
}

/// CSV with a header: `path,rank,class,probability,known,ood_score`, one row per (image,
/// rank); `known` and `ood_score` are empty where there is none.
pub fn to_csv(preds: &[Prediction]) -> String {
    if preds.iter().any(|p| p.labels.is_some()) {
        return to_csv_multi(preds);
    }
    let mut s = String::from("path,rank,class,probability,known,ood_score\n");
    for p in preds {
        let known = p.known.map_or(String::new(), |k| k.to_string());
        let ood = p.ood_score.map_or(String::new(), |o| format!("{o:.6}"));
        for (r, c) in p.top.iter().enumerate() {
            s += &format!("{},{},{},{:.6},{known},{ood}\n", csv(&shown(&p.path)), r + 1, csv(&c.class), c.probability);
        }
    }
    s
}

/// A several-labels model's CSV: `path,class,probability,threshold,label`, one row per (image,
/// class) in class order; `label` is whether the photo has it.
fn to_csv_multi(preds: &[Prediction]) -> String {
    let mut s = String::from("path,class,probability,threshold,label\n");
    for p in preds {
        for l in &p.all {
            s += &format!(
                "{},{},{:.6},{:.6},{}\n",
                csv(&shown(&p.path)),
                csv(&l.class),
                l.probability,
                l.threshold,
                l.probability >= l.threshold
            );
        }
    }
    s
}

/// The text shown for a photo's answer: its top classes, or `unknown (nearest: …)` first
/// when it was rejected.
pub fn to_text(p: &Prediction) -> String {
    let named = |class: &str, p: f32| format!("{} {p:.4}", retrain_files::names::shown_str(class));
    if let Some(on) = &p.labels {
        return match on.is_empty() {
            true => format!(
                "no label (highest: {})",
                p.top.first().map(|r| named(&r.class, r.probability)).unwrap_or_default()
            ),
            false => on.iter().map(|l| named(&l.class, l.probability)).collect::<Vec<_>>().join("\t"),
        };
    }
    let cls: Vec<String> =
        p.top.iter().map(|r| format!("{} {:.4}", retrain_files::names::shown_str(&r.class), r.probability)).collect();
    match p.known {
        Some(false) => format!("unknown (nearest: {})", cls.join(", ")),
        _ => cls.join("\t"),
    }
}
