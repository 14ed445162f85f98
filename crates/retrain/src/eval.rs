//! `retrain eval`: a trained model's metrics on a labelled folder.

use crate::dataset;
use crate::dataset::{Conflict, Skipped};
use crate::metrics::{self, argmax, Metrics};
use crate::model::Classifier;
use crate::open_set::OpenSet;
use crate::{Error, Result};
use retrain_files::names::shown;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    #[serde(with = "retrain_files::names::json")]
    pub data: PathBuf,
    pub images: usize,
    /// A single-label model's metrics (accuracy, per class, confusion matrix).
    #[serde(flatten)]
    pub metrics: Option<Metrics>,
    /// A several-labels model's: mAP, F1, subset accuracy, per class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<crate::multi_metrics::MultiMetrics>,
    pub skipped: Vec<Skipped>,
    /// Photos whose content appears under more than one class folder: left out of the
    /// metrics unless `duplicates_kept`.
    pub conflicts: Vec<Conflict>,
    pub duplicates_kept: bool,
    /// Photos of none of the classes told apart: at the threshold asked for, and against a
    /// folder of such photos (`--ood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_set: Option<OpenSetEval>,
    /// With a label file, the files of the folder it does not list (said, not scored).
    #[serde(skip)]
    pub unlisted: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpenSetEval {
    /// The `ood_score` above which a photo is "unknown" (`None`: `--reject off`).
    pub threshold: Option<f32>,
    /// Of the labelled photos: how many were accepted as one of the classes, their share,
    /// and the accuracy on them.
    pub accepted: usize,
    pub acceptance: f64,
    pub accuracy_accepted: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood: Option<OodEval>,
}

impl OpenSetEval {
    /// Lines for `eval`'s text output.
    pub fn to_text(&self) -> String {
        let mut s = match (self.threshold, self.accuracy_accepted) {
            (Some(t), acc) => format!(
                "accepted as one of the classes (ood_score ≤ {t:.4}): {} ({:.1}%), accuracy on them {}\n",
                self.accepted,
                100.0 * self.acceptance,
                acc.map_or("-".into(), |a| format!("{a:.4}"))
            ),
            (None, _) => String::from("nothing rejected (--reject off)\n"),
        };
        if let Some(o) = &self.ood {
            s += &format!(
                "{} photos of none of the classes in {}: AUROC {:.4}, accepted at 95% acceptance {:.1}%{}\n",
                o.images,
                shown(&o.data),
                o.auroc,
                100.0 * o.fpr_at_95,
                o.rejected.map_or(String::new(), |r| format!(", rejected at the threshold {:.1}%", 100.0 * r))
            );
        }
        s
    }
}

/// How well the score tells the labelled photos from a folder of photos of none of the classes.
#[derive(Clone, Debug, Serialize)]
pub struct OodEval {
    #[serde(with = "retrain_files::names::json")]
    pub data: PathBuf,
    pub images: usize,
    /// The chance an OOD photo scores above a labelled one.
    pub auroc: f64,
    /// The share of OOD photos accepted at the threshold that accepts 95% of the labelled ones.
    pub fpr_at_95: f64,
    /// The share of OOD photos rejected at `threshold`.
    pub rejected: Option<f64>,
    pub skipped: Vec<Skipped>,
}

/// A labelled folder's photos, as `eval` and `report` read it.
#[derive(Clone, Debug)]
pub struct Labelled {
    /// The folder the classes were read from (`dir/val` when `dir` has train/val folders).
    pub root: PathBuf,
    pub files: Vec<PathBuf>,
    /// Each file's class index in the model's class names (its first label).
    pub truth: Vec<usize>,
    /// Each file's other labels (photos with several).
    pub also: Vec<Vec<usize>>,
    pub skipped: Vec<Skipped>,
    pub conflicts: Vec<Conflict>,
    /// With a label file, the files of the folder it does not list.
    pub unlisted: Vec<PathBuf>,
}

/// `dir`'s class folders (its `val/` folder when it has train/val folders), or with `labels`
/// the photos its label file lists (its `val` rows when it has a split column). Every class
/// must be one of the model's `names`. A photo found in two class folders has no one true
/// label: it is left out unless `keep_duplicates`. A label file's photos may have several labels
/// only for a several-labels model (`multi`).
pub fn labelled(
    dir: &Path,
    labels: Option<&retrain_files::LabelSource>,
    names: &[String],
    multi: bool,
    keep_duplicates: bool,
) -> Result<Labelled> {
    let (root, mut files, mut truth, skipped, unlisted, mut also) = match labels {
        Some(src) => from_label_file(dir, src, names, multi)?,
        None => {
            let root = ["val", "valid", "validation"]
                .iter()
                .map(|v| dir.join(v))
                .find(|p| p.is_dir() && dir.join("train").is_dir())
                .unwrap_or_else(|| dir.to_path_buf());
            let (mut files, mut truth) = (Vec::new(), Vec::new());
            let found = dataset::class_folders(&root)?;
            for (name, fs) in found.classes {
                let label = names.iter().position(|c| *c == name).ok_or_else(|| Error::Data {
                    path: root.join(&name),
                    reason: format!("class `{name}` is not one of the model's classes {names:?}"),
                })?;
                truth.extend(std::iter::repeat_n(label, fs.len()));
                files.extend(fs);
            }
            let also = vec![Vec::new(); files.len()];
            (root, files, truth, found.skipped, Vec::new(), also)
        }
    };
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let dups = dataset::duplicates::find(&refs, &truth, &vec![false; files.len()], names);
    if !keep_duplicates {
        files = kept(files, &dups.set_aside);
        truth = kept(truth, &dups.set_aside);
        also = kept(also, &dups.set_aside);
    }
    Ok(Labelled { root, files, truth, also, skipped, conflicts: dups.conflicts, unlisted })
}

fn kept<T>(v: Vec<T>, aside: &[bool]) -> Vec<T> {
    v.into_iter().zip(aside).filter(|(_, &a)| !a).map(|(x, _)| x).collect()
}

type FromLabels = (PathBuf, Vec<PathBuf>, Vec<usize>, Vec<Skipped>, Vec<PathBuf>, Vec<Vec<usize>>);

fn from_label_file(dir: &Path, src: &retrain_files::LabelSource, names: &[String], multi: bool) -> Result<FromLabels> {
    if !dir.is_dir() {
        return Err(Error::Data { path: dir.to_path_buf(), reason: "no such folder".into() });
    }
    let table = retrain_files::label_file::read(src)?;
    if !multi {
        table.one_label_each(&src.file)?;
    }
    let val_only = table.has_splits();
    let (mut files, mut truth, mut also) = (Vec::new(), Vec::new(), Vec::new());
    for e in table.entries.iter().filter(|e| !val_only || e.split == Some(retrain_files::label_file::Split::Val)) {
        let mut labels = Vec::new();
        for l in &e.labels {
            labels.push(names.iter().position(|c| c == l).ok_or_else(|| Error::Data {
                path: src.file.clone(),
                reason: format!("line {}: the label `{l}` is not one of the model's classes {names:?}", e.line),
            })?);
        }
        files.push(e.path.clone());
        truth.push(labels[0]);
        also.push(labels[1..].to_vec());
    }
    if files.is_empty() {
        return Err(Error::Data { path: src.file.clone(), reason: "no row is in the validation split".into() });
    }
    let skipped = table.skipped();
    let unlisted = dataset::dataset::unlisted(dir, &table, &src.file);
    Ok((dir.to_path_buf(), files, truth, skipped, unlisted, also))
}

impl Labelled {
    /// [`labelled`] with the class names of the model at `model`.
    pub fn read(
        dir: &Path,
        labels: Option<&retrain_files::LabelSource>,
        model: &Path,
        keep_duplicates: bool,
    ) -> Result<Self> {
        let (_, info) = crate::model::read(model)?;
        labelled(dir, labels, &info.class_names, info.multi_label.is_some(), keep_duplicates)
    }
}

/// Evaluates on [`labelled`]`(dir)`; with a `threshold`, also on the photos it accepts; with
/// `ood`, a folder of photos of none of the classes, how well `ood_score` tells them apart.
pub fn evaluate(
    classifier: &mut Classifier,
    dir: &Path,
    labels: Option<&retrain_files::LabelSource>,
    keep_duplicates: bool,
    threshold: Option<f32>,
    ood: Option<&Path>,
    progress: &indicatif::ProgressBar,
) -> Result<Evaluation> {
    if ood.is_some() && classifier.info.open_set.is_none() {
        return Err(Error::NotAModel {
            path: classifier.path.clone(),
            reason: "--ood needs a model with an `ood_score` output (made by an older retrain: train it again)".into(),
        });
    }
    let names = classifier.info.class_names.clone();
    let multi = classifier.info.multi_label.is_some();
    let Labelled { root, files, truth, also, skipped, conflicts, unlisted } =
        labelled(dir, labels, &names, multi, keep_duplicates)?;
    progress.set_length(files.len() as u64);
    let probs = classifier.classify(&files, progress)?;
    let (mut t, mut p, mut scores, mut skipped) = (Vec::new(), Vec::new(), Vec::new(), skipped);
    // Several labels: each photo's row of truth, decisions and probabilities.
    let (mut on, mut decided, mut sigmoids) = (Vec::new(), Vec::new(), Vec::new());
    for (((path, label), more), r) in files.into_iter().zip(truth).zip(also).zip(probs) {
        match r {
            Ok(pr) => {
                t.push(label);
                p.push(argmax(&pr.probabilities));
                scores.push(pr.ood_score);
                if let Some(has) = classifier.info.labels_of(&pr.probabilities) {
                    on.extend((0..names.len()).map(|c| c == label || more.contains(&c)));
                    decided.extend((0..names.len()).map(|c| has.contains(&c)));
                    sigmoids.extend_from_slice(&pr.probabilities);
                }
            }
            Err(e) => skipped.push(Skipped { reason: e.reason(), path }),
        }
    }
    let open_set = if threshold.is_some() || ood.is_some() {
        let (accepted, right) =
            crate::open_set::accepted(scores.iter().zip(t.iter().zip(&p)).map(|(&s, (a, b))| (s, a == b)), threshold);
        let ood = match ood {
            Some(d) => Some(ood_eval(classifier, d, &scores, threshold, progress)?),
            None => None,
        };
        Some(OpenSetEval {
            threshold,
            accepted,
            acceptance: accepted as f64 / t.len().max(1) as f64,
            accuracy_accepted: (accepted > 0).then(|| right as f64 / accepted as f64),
            ood,
        })
    } else {
        None
    };
    Ok(Evaluation {
        data: root,
        images: t.len(),
        metrics: (!multi).then(|| metrics::compute(&t, &p, &names)),
        multi_label: multi.then(|| crate::multi_metrics::compute(&on, &decided, &sigmoids, &names)),
        skipped,
        conflicts,
        duplicates_kept: keep_duplicates,
        open_set,
        unlisted,
    })
}

fn ood_eval(
    classifier: &mut Classifier,
    dir: &Path,
    id_scores: &[Option<f32>],
    threshold: Option<f32>,
    progress: &indicatif::ProgressBar,
) -> Result<OodEval> {
    if !dir.is_dir() {
        return Err(Error::Data { path: dir.to_path_buf(), reason: "--ood: not a folder".into() });
    }
    let walk = dataset::files_below(dir);
    let mut skipped: Vec<Skipped> = walk.skipped;
    let answers = classifier.classify(&walk.files, progress)?;
    let mut ood = Vec::new();
    for (path, a) in walk.files.into_iter().zip(answers) {
        match a {
            Ok(a) => ood.extend(a.ood_score),
            Err(e) => skipped.push(Skipped { reason: e.reason(), path }),
        }
    }
    if ood.is_empty() {
        return Err(Error::Data { path: dir.to_path_buf(), reason: "--ood: no photo in it could be read".into() });
    }
    let id: Vec<f32> = id_scores.iter().flatten().copied().collect();
    Ok(OodEval {
        data: dir.to_path_buf(),
        images: ood.len(),
        auroc: retrain_openset::auroc(&id, &ood),
        fpr_at_95: retrain_openset::fpr_at(&id, &ood, 0.95),
        rejected: threshold
            .map(|th| ood.iter().filter(|&&o| !OpenSet::accepts(o, th)).count() as f64 / ood.len() as f64),
        skipped,
    })
}
