//! `retrain audit`: what is wrong with a folder of labelled photos before it costs accuracy.
//! On the backbone's cached features: the photos likely filed under the wrong class (confident
//! learning on out-of-fold probabilities, with their nearest photos as evidence), the
//! near-copies (resized, recompressed, cropped; across classes a conflict, across training and
//! validation a leak), the strays (far from every class by the open-set score), class
//! imbalance and tiny images; with `--unlabelled`, which new photos to label first. A page
//! where a person decides, and [`decisions`] to carry the decisions out and undo them.

pub mod decisions;
pub mod labels;
pub mod near;
pub mod next;
mod page;

use rayon::prelude::*;
use retrain::dataset::Skipped;
use retrain::{BackboneSpec, DataSpec, Recipe, RunSettings, Strategy};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use page::render as page;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Retrain(#[from] retrain::Error),
    #[error(transparent)]
    Head(#[from] retrain_head::HeadError),
    #[error(transparent)]
    OpenSet(#[from] retrain_openset::OpenSetError),
    #[error(transparent)]
    Features(#[from] retrain_features::FeatureError),
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {reason}", path.display())]
    Decisions { path: PathBuf, reason: String },
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// How the audit looks.
#[derive(Clone, Debug)]
pub struct Options {
    /// Folds of the out-of-fold probabilities and of the stray scores.
    pub folds: usize,
    /// Cosine of two photos' features at or above which they are near-duplicates.
    pub duplicate_threshold: f32,
    /// A stray's score is above the third quartile plus this many interquartile ranges of
    /// every photo's out-of-fold score (Tukey's "far out" fence at 3).
    pub stray_fence: f32,
    /// Photos whose shorter side is below this are tiny (default: half the backbone's input size).
    pub tiny: Option<u32>,
    /// Nearest photos shown as evidence, of the given class and of the suggested one.
    pub evidence: usize,
    /// Unlabelled photos to rank, and how many to suggest.
    pub unlabelled: Option<PathBuf>,
    pub count: usize,
    pub seed: u64,
    /// Images per ONNX Runtime batch.
    pub batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            folds: 5,
            duplicate_threshold: near::DEFAULT_THRESHOLD,
            stray_fence: 3.0,
            tiny: None,
            evidence: 3,
            unlabelled: None,
            count: 20,
            seed: 0,
            batch: Recipe::for_strategy(Strategy::Linear).batch,
        }
    }
}

/// A photo near another, shown as evidence.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Neighbour {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    pub similarity: f32,
}

/// A photo likely filed under the wrong class.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Mislabelled {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    pub label: String,
    pub suggested: String,
    /// 1 − the out-of-fold probability of its label: higher is more suspicious.
    pub score: f32,
    /// `train` or `val`.
    pub split: String,
    /// What the audit suggests: `move` (to `suggested`) when its out-of-fold probability of
    /// that class is at least [`labels::MOVE_AT`], else `set_aside` (it is not what it is
    /// filed as, nor surely anything else).
    pub action: SuggestedAction,
    /// Its nearest photos of its label and of the suggested class.
    pub nearest_label: Vec<Neighbour>,
    pub nearest_suggested: Vec<Neighbour>,
}

/// What to do with a likely mislabelled photo.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SuggestedAction {
    Move,
    SetAside,
}

/// What a group of near-copies is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One class, one split.
    Copy,
    /// Under more than one class.
    Conflict,
    /// In both training and validation (of one class).
    Leak,
}

/// Photos that are (near-)copies of each other.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Duplicates {
    #[serde(with = "retrain_files::names::json::vec")]
    pub paths: Vec<PathBuf>,
    pub labels: Vec<String>,
    pub splits: Vec<String>,
    /// The lowest cosine of two of its photos found alike.
    pub similarity: f32,
    pub kind: Kind,
}

/// A photo far from every class.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stray {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    pub label: String,
    /// The open-set score (1 − cosine to the nearest photo of the other folds).
    pub score: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Tiny {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClassCount {
    pub name: String,
    pub train: usize,
    pub val: usize,
}

/// The thresholds the audit used.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub backbone: String,
    pub folds: usize,
    pub duplicate_threshold: f32,
    pub stray_threshold: f32,
    pub tiny_below: u32,
}

/// The audit, as `retrain audit --format json` prints it: each list most suspicious first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Audit {
    #[serde(with = "retrain_files::names::json")]
    pub data: PathBuf,
    pub images: usize,
    pub mislabelled: Vec<Mislabelled>,
    pub duplicates: Vec<Duplicates>,
    pub strays: Vec<Stray>,
    pub classes: Vec<ClassCount>,
    /// The largest class's training photos over the smallest's.
    pub imbalance: f64,
    pub tiny: Vec<Tiny>,
    /// With `--unlabelled`: the photos to label first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<Vec<next::Suggestion>>,
    pub settings: Settings,
    /// Out-of-fold accuracy of the linear head on the given labels.
    pub out_of_fold_accuracy: f64,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
}

/// An audit and what its page needs besides.
pub struct Audited {
    pub audit: Audit,
    pub root: PathBuf,
    pub class_names: Vec<String>,
    pub geometry: retrain_pixels::Geometry,
    pub limits: retrain::Limits,
    /// Every photo audited (training then validation), its label, and its out-of-fold
    /// probabilities (`[photos, classes]`).
    pub photos: Vec<PathBuf>,
    pub labels: Vec<usize>,
    pub train_photos: usize,
    pub out_of_fold: Vec<f32>,
    /// The label file the labels came from (`--labels`), absolute; none for class folders.
    pub label_file: Option<PathBuf>,
}

impl Audited {
    /// The out-of-fold probabilities as CSV: `path,split,label,<class>,...`, a row per photo
    /// (what cleanlab calls `pred_probs`).
    pub fn out_of_fold_csv(&self) -> String {
        use retrain_files::names::csv;
        let k = self.class_names.len();
        let mut s = String::from("path,split,label");
        for c in &self.class_names {
            s.push(',');
            s.push_str(&csv(c));
        }
        s.push('\n');
        for (i, p) in self.photos.iter().enumerate() {
            let split = if i < self.train_photos { "train" } else { "val" };
            s.push_str(&format!(
                "{},{split},{}",
                csv(&p.display().to_string()),
                csv(&self.class_names[self.labels[i]])
            ));
            for v in &self.out_of_fold[i * k..(i + 1) * k] {
                s.push_str(&format!(",{v}"));
            }
            s.push('\n');
        }
        s
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Audits the labelled photos of `data` on `spec`'s features (cached in `run.cache`).
pub fn audit(data: &DataSpec, spec: &BackboneSpec, run: &RunSettings, opts: &Options) -> Result<Audited> {
    let started = Instant::now();
    if let Some(dir) = opts.unlabelled.as_ref().filter(|d| !d.is_dir()) {
        return Err(AuditError::Data { path: dir.clone(), reason: "not a folder of unlabelled photos".into() });
    }
    // Copies are what the audit looks for: keep them all.
    let data = DataSpec { keep_duplicates: true, shots: None, ..data.clone() };
    let recipe = Recipe { batch: opts.batch, ..Recipe::for_strategy(Strategy::Linear) };
    // The copies `train` warns of are in the audit's own list.
    let ds = retrain::prepare::scan(&data, true, run.quiet)?;
    if let (true, Some(src)) = (ds.multi_label, &data.labels) {
        return Err(AuditError::Data {
            path: src.file.clone(),
            reason: "some photos have several labels; the audit checks one label per photo".into(),
        });
    }
    let prepared = retrain::prepare::prepare_scanned(ds, &data, spec, &recipe, run, started)?;
    let names = prepared.ds.class_names.clone();
    let classes = names.len();
    let dim = prepared.backbone.feature_dim();
    let n_train = prepared.train.len();
    let samples: Vec<&retrain::dataset::Sample> = prepared.train.iter().chain(&prepared.val).collect();
    let n = samples.len();
    let mut x = prepared.tx.clone();
    x.extend(&prepared.vx);
    let y: Vec<usize> = samples.iter().map(|s| s.label).collect();
    let split = |i: usize| if i < n_train { "train" } else { "val" }.to_string();
    let geometry = prepared.backbone.geometry();

    let bar = retrain::progress_bar(opts.folds as u64 + 2, "audit", run.quiet);
    let labels::OutOfFold { probs, steps, .. } =
        labels::out_of_fold(&x, &y, dim, classes, opts.folds, &recipe.head, opts.seed)?;
    bar.inc(opts.folds as u64 + 1);
    let right = (0..n).filter(|&i| labels::argmax(&probs[i * classes..(i + 1) * classes]) == y[i]).count();

    // Evidence and near-copies by cosine, as the open-set score measures likeness.
    let unit = retrain_openset::unit_rows(&x, dim);
    let nearest_of = |i: usize, class: usize, k: usize| -> Vec<Neighbour> {
        let q = &unit[i * dim..(i + 1) * dim];
        let mut c: Vec<(f32, usize)> =
            (0..n).filter(|&j| j != i && y[j] == class).map(|j| (dot(q, &unit[j * dim..(j + 1) * dim]), j)).collect();
        c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        c.into_iter().take(k).map(|(s, j)| Neighbour { path: samples[j].path.clone(), similarity: s }).collect()
    };
    let issues = labels::confident_learning(&probs, &y, classes);
    let mut mislabelled: Vec<Mislabelled> = issues
        .par_iter()
        .map(|is| Mislabelled {
            path: samples[is.index].path.clone(),
            label: names[y[is.index]].clone(),
            suggested: names[is.suggested].clone(),
            score: 1.0 - is.self_confidence,
            split: split(is.index),
            action: if is.confident { SuggestedAction::Move } else { SuggestedAction::SetAside },
            nearest_label: nearest_of(is.index, y[is.index], opts.evidence),
            nearest_suggested: nearest_of(is.index, is.suggested, opts.evidence),
        })
        .collect();
    // Training photos first, then validation ones; each most suspicious first.
    mislabelled.sort_by(|a, b| (a.split != "train").cmp(&(b.split != "train")).then(b.score.total_cmp(&a.score)));

    // Pairs beyond a few per photo are not near-copies but a threshold set too low.
    let max_pairs = 20 * n + 1000;
    let pairs = near::near_pairs(&unit, dim, opts.duplicate_threshold, max_pairs).ok_or_else(|| AuditError::Data {
        path: data.dir.clone(),
        reason: format!(
            "more than {max_pairs} pairs of photos have a cosine of at least {}: raise --duplicate-threshold",
            opts.duplicate_threshold
        ),
    })?;
    let duplicates: Vec<Duplicates> = near::groups(&pairs)
        .into_iter()
        .map(|g| {
            let similarity = pairs
                .iter()
                .filter(|p| g.binary_search(&p.a).is_ok() && g.binary_search(&p.b).is_ok())
                .map(|p| p.similarity)
                .fold(f32::INFINITY, f32::min);
            let labels: Vec<String> = g.iter().map(|&i| names[y[i]].clone()).collect();
            let splits: Vec<String> = g.iter().map(|&i| split(i)).collect();
            let kind = if labels.iter().any(|l| *l != labels[0]) {
                Kind::Conflict
            } else if splits.iter().any(|s| *s != splits[0]) {
                Kind::Leak
            } else {
                Kind::Copy
            };
            Duplicates { paths: g.iter().map(|&i| samples[i].path.clone()).collect(), labels, splits, similarity, kind }
        })
        .collect();
    bar.inc(1);

    let fitted = retrain_openset::fit(
        &x,
        &y,
        dim,
        &retrain_openset::Config { folds: opts.folds, seed: opts.seed, ..retrain_openset::Config::default() },
    )?;
    let mut sorted = fitted.out_of_fold.clone();
    sorted.sort_by(f32::total_cmp);
    let (q1, q3) = (retrain_openset::quantile(&sorted, 0.25), retrain_openset::quantile(&sorted, 0.75));
    let stray_threshold = q3 + opts.stray_fence * (q3 - q1);
    let mut strays: Vec<Stray> = (0..n)
        .filter(|&i| fitted.out_of_fold[i] > stray_threshold)
        .map(|i| Stray { path: samples[i].path.clone(), label: names[y[i]].clone(), score: fitted.out_of_fold[i] })
        .collect();
    strays.sort_by(|a, b| b.score.total_cmp(&a.score));
    bar.inc(1);

    // Enlarged more than twice to the input size, a photo is mostly blur to the backbone.
    let tiny_below = opts.tiny.unwrap_or(geometry.crop / 2);
    let mut tiny: Vec<Tiny> = samples
        .par_iter()
        .filter_map(|s| {
            let (w, h) = image::ImageReader::open(&s.path).ok()?.with_guessed_format().ok()?.into_dimensions().ok()?;
            (w.min(h) < tiny_below).then(|| Tiny { path: s.path.clone(), width: w, height: h })
        })
        .collect();
    tiny.sort_by_key(|t| t.width.min(t.height));

    let count = |c: usize, val: bool| {
        samples.iter().enumerate().filter(|(i, s)| s.label == c && (*i >= n_train) == val).count()
    };
    let class_counts: Vec<ClassCount> = names
        .iter()
        .enumerate()
        .map(|(c, name)| ClassCount { name: name.clone(), train: count(c, false), val: count(c, true) })
        .collect();
    let (most, least) = class_counts.iter().fold((0, usize::MAX), |(m, l), c| (m.max(c.train), l.min(c.train)));
    let imbalance = most as f64 / least.max(1) as f64;

    let mut skipped = prepared.skipped.clone();
    let next = match &opts.unlabelled {
        Some(dir) => {
            let (s, k) =
                next::suggest(&prepared, &x, &y, dir, &fitted, &recipe, steps, opts.count, data.limits(), run)?;
            skipped.extend(k);
            Some(s)
        }
        None => None,
    };
    bar.finish_and_clear();

    let audit = Audit {
        data: data.dir.clone(),
        images: n,
        mislabelled,
        duplicates,
        strays,
        classes: class_counts,
        imbalance,
        tiny,
        next,
        settings: Settings {
            backbone: spec.name.clone(),
            folds: opts.folds,
            duplicate_threshold: opts.duplicate_threshold,
            stray_threshold,
            tiny_below,
        },
        out_of_fold_accuracy: right as f64 / n.max(1) as f64,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Audited {
        audit,
        root: data.dir.clone(),
        class_names: names,
        geometry,
        limits: data.limits(),
        photos: samples.iter().map(|s| s.path.clone()).collect(),
        labels: y,
        train_photos: n_train,
        out_of_fold: probs,
        label_file: data.labels.as_ref().map(|l| std::path::absolute(&l.file).unwrap_or_else(|_| l.file.clone())),
    })
}

/// The audit's findings in a few lines.
pub fn to_text(a: &Audit) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let (train, val): (Vec<&Mislabelled>, Vec<&Mislabelled>) = a.mislabelled.iter().partition(|m| m.split == "train");
    for (what, list) in [("training", train), ("validation", val)] {
        let _ = writeln!(s, "likely mislabelled ({what}): {}", list.len());
        for m in list.iter().take(20) {
            let aside = if m.action == SuggestedAction::SetAside { ", set aside" } else { "" };
            let _ = writeln!(s, "  {} {} → {} ({:.2}{aside})", m.path.display(), m.label, m.suggested, m.score);
        }
    }
    let _ = writeln!(s, "near-duplicate groups: {}", a.duplicates.len());
    for d in a.duplicates.iter().take(20) {
        let kind = match d.kind {
            Kind::Copy => "copy",
            Kind::Conflict => "conflict",
            Kind::Leak => "leak",
        };
        let paths: Vec<String> = d.paths.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(s, "  {kind} ({:.3}): {}", d.similarity, paths.join(", "));
    }
    let _ = writeln!(s, "strays: {}", a.strays.len());
    for t in a.strays.iter().take(20) {
        let _ = writeln!(s, "  {} ({}, {:.3})", t.path.display(), t.label, t.score);
    }
    let counts: Vec<String> = a.classes.iter().map(|c| format!("{} {}+{}", c.name, c.train, c.val)).collect();
    let _ = writeln!(s, "classes (train+val): {}; imbalance {:.1}×", counts.join(", "), a.imbalance);
    let _ = writeln!(s, "tiny (shorter side < {} px): {}", a.settings.tiny_below, a.tiny.len());
    if let Some(next) = &a.next {
        let _ = writeln!(s, "label next: {}", next.len());
        for p in next {
            let _ = writeln!(s, "  {} (looks like {}, {:.2})", p.path.display(), p.predicted, p.score);
        }
    }
    for k in &a.skipped {
        let _ = writeln!(s, "skipped {}: {}", k.path.display(), k.reason);
    }
    let _ = write!(
        s,
        "{} photos audited in {:.1}s (out-of-fold accuracy {:.1}%)",
        a.images,
        a.seconds,
        100.0 * a.out_of_fold_accuracy
    );
    s
}

/// The first path of `paths` below `root`, relative to it.
pub fn relative(path: &Path, root: &Path) -> Option<PathBuf> {
    path.strip_prefix(root).ok().map(Path::to_path_buf)
}
