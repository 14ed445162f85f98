//! `retrain eval`: a trained model's metrics on a labelled folder.

use crate::dataset;
use crate::dataset::{Conflict, Skipped};
use crate::metrics::{self, argmax, Metrics};
use crate::model::Classifier;
use crate::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    #[serde(with = "retrain_files::names::json")]
    pub data: PathBuf,
    pub images: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
    pub skipped: Vec<Skipped>,
    /// Photos whose content appears under more than one class folder: left out of the
    /// metrics unless `duplicates_kept`.
    pub conflicts: Vec<Conflict>,
    pub duplicates_kept: bool,
}

/// A labelled folder's photos, as `eval` and `report` read it.
#[derive(Clone, Debug)]
pub struct Labelled {
    /// The folder the classes were read from (`dir/val` when `dir` has train/val folders).
    pub root: PathBuf,
    pub files: Vec<PathBuf>,
    /// Each file's class index in the model's class names.
    pub truth: Vec<usize>,
    pub skipped: Vec<Skipped>,
    pub conflicts: Vec<Conflict>,
}

/// `dir`'s class folders (its `val/` folder when it has train/val folders). Every class folder
/// must be one of the model's `names`. A photo found in two class folders has no one true
/// label: it is left out unless `keep_duplicates`.
pub fn labelled(dir: &Path, names: &[String], keep_duplicates: bool) -> Result<Labelled> {
    let root = ["val", "valid", "validation"]
        .iter()
        .map(|v| dir.join(v))
        .find(|p| p.is_dir() && dir.join("train").is_dir())
        .unwrap_or_else(|| dir.to_path_buf());
    let mut files = Vec::new();
    let mut truth = Vec::new();
    let found = dataset::class_folders(&root)?;
    for (name, fs) in found.classes {
        let label = names.iter().position(|c| *c == name).ok_or_else(|| Error::Data {
            path: root.join(&name),
            reason: format!("class `{name}` is not one of the model's classes {names:?}"),
        })?;
        truth.extend(std::iter::repeat_n(label, fs.len()));
        files.extend(fs);
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let dups = dataset::duplicates::find(&refs, &truth, &vec![false; files.len()], names);
    if !keep_duplicates {
        (files, truth) =
            files.into_iter().zip(truth).zip(&dups.set_aside).filter(|(_, &aside)| !aside).map(|(f, _)| f).unzip();
    }
    Ok(Labelled { root, files, truth, skipped: found.skipped, conflicts: dups.conflicts })
}

impl Labelled {
    /// [`labelled`] with the class names of the model at `model`.
    pub fn read(dir: &Path, model: &Path, keep_duplicates: bool) -> Result<Self> {
        let (_, info) = crate::model::read(model)?;
        labelled(dir, &info.class_names, keep_duplicates)
    }
}

/// Evaluates on [`labelled`]`(dir)`.
pub fn evaluate(
    classifier: &mut Classifier,
    dir: &Path,
    keep_duplicates: bool,
    progress: &indicatif::ProgressBar,
) -> Result<Evaluation> {
    let names = classifier.info.class_names.clone();
    let Labelled { root, files, truth, skipped, conflicts } = labelled(dir, &names, keep_duplicates)?;
    progress.set_length(files.len() as u64);
    let probs = classifier.classify(&files, progress)?;
    let (mut t, mut p, mut skipped) = (Vec::new(), Vec::new(), skipped);
    for ((path, label), r) in files.into_iter().zip(truth).zip(probs) {
        match r {
            Ok(pr) => {
                t.push(label);
                p.push(argmax(&pr));
            }
            Err(e) => skipped.push(Skipped { reason: e.reason(), path }),
        }
    }
    Ok(Evaluation {
        data: root,
        images: t.len(),
        metrics: metrics::compute(&t, &p, &names),
        skipped,
        conflicts,
        duplicates_kept: keep_duplicates,
    })
}
