//! `retrain predict`: class probabilities for files and folders.

use crate::model::Classifier;
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

/// The top `k` classes of each image; unreadable files come back as failures.
pub fn predict(
    classifier: &mut Classifier,
    inputs: &[PathBuf],
    k: usize,
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<Prediction>, Vec<Failure>)> {
    let (files, passed) = expand_inputs(inputs);
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let probs = classifier.classify(&paths, progress)?;
    let (mut preds, mut fails) = (Vec::new(), passed);
    for ((path, explicit), p) in files.into_iter().zip(probs) {
        match p {
            Ok(p) => preds.push(Prediction { top: rank(&p, &classifier.info.class_names, k), path }),
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

/// CSV with a header: `path,rank,class,probability`, one row per (image, rank).
pub fn to_csv(preds: &[Prediction]) -> String {
    let mut s = String::from("path,rank,class,probability\n");
    for p in preds {
        for (r, c) in p.top.iter().enumerate() {
            s += &format!("{},{},{},{:.6}\n", csv(&shown(&p.path)), r + 1, csv(&c.class), c.probability);
        }
    }
    s
}
