//! `retrain study`: how accuracy grows with photos per class, for each training strategy and
//! backbone, measured on the user's own data. One fixed validation split (the one `train`
//! makes); for each shots value, `repeats` seeded random subsets of the training split. The
//! linear head trains on cached features (seconds); fine-tuning and training from scratch
//! run `retrain train` on the subset. Rows are written as they finish, and a study started
//! again with the same output continues where it stopped.

mod chart;
mod reading;

use retrain::prepare::Prepared;
use retrain::{FewShot, Recipe, RunSettings, Strategy, TrainSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use reading::reading;

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Retrain(#[from] retrain::Error),
    #[error("training a head: {0}")]
    Head(#[from] retrain_head::HeadError),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
}

pub type Result<T, E = StudyError> = std::result::Result<T, E>;

/// Photos per class: a number, or every training photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shots {
    PerClass(usize),
    All,
}

impl std::str::FromStr for Shots {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(Shots::All),
            n => match n.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Shots::PerClass(k)),
                _ => Err(format!("`{n}` is not a number of photos per class (1, 2, ...) or `all`")),
            },
        }
    }
}

impl std::fmt::Display for Shots {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Shots::PerClass(k) => write!(f, "{k}"),
            Shots::All => f.write_str("all"),
        }
    }
}

impl Serialize for Shots {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Shots::PerClass(k) => s.serialize_u64(*k as u64),
            Shots::All => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for Shots {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => {
                n.as_u64().map(|k| Shots::PerClass(k as usize)).ok_or_else(|| serde::de::Error::custom("shots"))
            }
            v => v.as_str().ok_or_else(|| serde::de::Error::custom("shots"))?.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    /// Data, split, seed, weights (`weights_for`) and the linear head's settings.
    pub base: TrainSpec,
    /// Threads, cache, output.
    pub run: RunSettings,
    pub models: Vec<String>,
    pub strategies: Vec<Strategy>,
    pub shots: Vec<Shots>,
    pub repeats: usize,
    /// Epochs of fine-tuning and training from scratch (default: each strategy's).
    pub epochs: Option<usize>,
    /// Also the linear head on each stage of each backbone, all training photos.
    pub layers: bool,
    pub out: PathBuf,
}

/// The linear head on the features cut after one stage (globally pooled), all training photos.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayerRow {
    pub model: String,
    /// 1-based, early to late (`retrain train --cut STAGE`).
    pub stage: usize,
    pub value: String,
    pub channels: usize,
    /// Height (= width) of the stage's maps.
    pub size: usize,
    pub val_accuracy: f64,
    pub val_loss: Option<f64>,
}

/// One trained and scored run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub model: String,
    pub strategy: Strategy,
    pub shots: Shots,
    pub repeat: usize,
    pub train_images: usize,
    pub val_accuracy: f64,
    pub val_loss: Option<f64>,
    /// Training time (for the linear head: the head alone; features are extracted once per
    /// backbone and cached, see `features`).
    pub seconds: f64,
}

impl Row {
    fn key(&self) -> (String, Strategy, Shots, usize) {
        (self.model.clone(), self.strategy, self.shots, self.repeat)
    }
}

/// Mean ± standard deviation over the repeats of one (model, strategy, shots) cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    pub model: String,
    pub strategy: Strategy,
    pub shots: Shots,
    pub runs: usize,
    pub train_images: f64,
    pub val_accuracy: f64,
    pub val_accuracy_sd: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeatureTime {
    pub model: String,
    pub seconds: f64,
    pub computed: usize,
    pub images: usize,
}

/// The study file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Study {
    #[serde(with = "retrain_files::names::json")]
    pub data_dir: PathBuf,
    /// The seed of the split and of the subsets (absent in files from before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub split: String,
    pub classes: Vec<String>,
    pub val_images: usize,
    /// Training photos per class in the full training split.
    pub train_per_class: Vec<usize>,
    /// Per backbone, the features of every photo: how long they took, how many were computed
    /// (the rest were read from the cache).
    #[serde(default)]
    pub features: Vec<FeatureTime>,
    pub results: Vec<Row>,
    pub summary: Vec<Cell>,
    /// `--layers`: per backbone, the linear head on each stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRow>,
    pub reading: String,
}

/// A subset's seed: one per (shots, repeat), the same for every model and strategy, so they
/// are compared on the same photos.
fn subset_seed(base: u64, shots: Shots, repeat: usize) -> u64 {
    let k = match shots {
        Shots::PerClass(k) => k as u64,
        Shots::All => 0,
    };
    base.wrapping_mul(1_000_003).wrapping_add(k * 1009 + repeat as u64 + 1)
}

/// The (shots, repeat) pairs: `all` is one subset, the whole training split, so it runs once.
fn plan(opts: &StudyOptions) -> Vec<(Shots, usize)> {
    let mut shots = opts.shots.clone();
    shots.sort();
    shots.dedup();
    shots
        .into_iter()
        .flat_map(|s| {
            let n = if s == Shots::All { 1 } else { opts.repeats.max(1) };
            (0..n).map(move |r| (s, r))
        })
        .collect()
}

/// Runs the study (continuing one already in `opts.out`), writing the file after every row.
pub fn run(opts: &StudyOptions) -> Result<Study> {
    let quiet = opts.run.quiet;
    let earlier: Option<Study> = match std::fs::read(&opts.out) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| StudyError::File {
            path: opts.out.clone(),
            reason: format!("not a study file, cannot continue it ({e}); give another --out"),
        })?),
        Err(_) => None,
    };
    if let Some(e) = &earlier {
        let same_dir = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if !same_dir(&e.data_dir, &opts.base.data.dir) || e.seed.is_some_and(|s| s != opts.base.data.seed) {
            return Err(foreign(&opts.out, e, &opts.base.data.dir, &format!("seed {}", opts.base.data.seed)));
        }
    }
    let (previous, previous_layers) =
        earlier.as_ref().map(|e| (e.results.clone(), e.layers.clone())).unwrap_or_default();
    let pairs = plan(opts);
    let mut todo: Vec<(String, Strategy, Shots, usize)> = Vec::new();
    for m in &opts.models {
        for &st in &opts.strategies {
            todo.extend(pairs.iter().map(|&(s, r)| (m.clone(), st, s, r)));
        }
    }
    let done: Vec<Row> = previous.into_iter().filter(|r| todo.contains(&r.key())).collect();
    if !quiet && !done.is_empty() {
        eprintln!("continuing {}: {} of {} runs already done", opts.out.display(), done.len(), todo.len());
    }
    // Work units for the ETA: a fine-tuning or scratch run costs about its images × epochs,
    // a linear head on cached features next to nothing.
    let cost = |st: Strategy, shots: Shots, per_class: &[usize]| -> u64 {
        let imgs: usize = per_class.iter().map(|&n| if let Shots::PerClass(k) = shots { k.min(n) } else { n }).sum();
        match st {
            Strategy::Linear => 1,
            s => (imgs * opts.epochs.unwrap_or(Recipe::for_strategy(s).tune.epochs)) as u64 + 20,
        }
    };

    let mut study = Study {
        data_dir: opts.base.data.dir.clone(),
        seed: Some(opts.base.data.seed),
        split: String::new(),
        classes: Vec::new(),
        val_images: 0,
        train_per_class: Vec::new(),
        features: Vec::new(),
        results: done,
        summary: Vec::new(),
        layers: if opts.layers { previous_layers } else { Vec::new() },
        reading: String::new(),
    };
    let mut bar: Option<indicatif::ProgressBar> = None;
    let started = Instant::now();
    for model in &opts.models {
        let mut o = opts.base.for_model(model);
        o.recipe.strategy = Strategy::Linear;
        let t = Instant::now();
        let f = retrain::prepare::prepare(&o.data, &o.backbone, &o.recipe, &opts.run)?;
        study.features.retain(|x| &x.model != model);
        study.features.push(FeatureTime {
            model: model.clone(),
            seconds: t.elapsed().as_secs_f64(),
            computed: f.computed,
            images: f.train.len() + f.val.len(),
        });
        if study.classes.is_empty() {
            study.split = f.ds.split.clone();
            study.classes = f.ds.class_names.clone();
            study.val_images = f.val.len();
            study.train_per_class =
                (0..study.classes.len()).map(|c| f.train.iter().filter(|s| s.label == c).count()).collect();
            // Rows are comparable only on the same split of the same photos.
            if let Some(e) = earlier.as_ref().filter(|e| {
                (&e.split, &e.classes, e.val_images, &e.train_per_class)
                    != (&study.split, &study.classes, study.val_images, &study.train_per_class)
            }) {
                return Err(foreign(&opts.out, e, &opts.base.data.dir, &measured_on(&study)));
            }
            let total: u64 = todo
                .iter()
                .filter(|k| !study.results.iter().any(|r| &r.key() == *k))
                .map(|(_, st, s, _)| cost(*st, *s, &study.train_per_class))
                .sum();
            bar = Some(retrain::progress_bar(total, "study", quiet));
            if let Some(b) = &bar {
                b.set_style(
                    indicatif::ProgressStyle::with_template("{msg} [{bar:30}] ETA {eta}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
            }
        }
        let bar = bar.as_ref().expect("made with the first model");
        for &strategy in &opts.strategies {
            for &(shots, repeat) in &pairs {
                let key = (model.clone(), strategy, shots, repeat);
                if study.results.iter().any(|r| r.key() == key) {
                    continue;
                }
                bar.set_message(format!("{model} {} {shots}/class #{}", strategy.name(), repeat + 1));
                let row = match strategy {
                    Strategy::Linear => linear_row(&f, &o, shots, repeat)?,
                    _ => trained_row(opts, &o, strategy, shots, repeat)?,
                };
                bar.inc(cost(strategy, shots, &study.train_per_class));
                study.results.push(row);
                finish(&mut study);
                write(&opts.out, &study)?;
            }
        }
        if opts.layers && !study.layers.iter().any(|l| &l.model == model) {
            bar.set_message(format!("{model} stage by stage"));
            study.layers.extend(layer_rows(&f, &o, &opts.run)?);
            finish(&mut study);
            write(&opts.out, &study)?;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    finish(&mut study);
    write(&opts.out, &study)?;
    if !quiet {
        eprintln!("study done in {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(study)
}

/// What a study's rows were measured on, for a message: split, seed, classes, photos.
fn measured_on(s: &Study) -> String {
    format!(
        "{}{}; {} classes, {} training and {} validation photos",
        s.split,
        // A random split already names its seed.
        s.seed.filter(|_| !s.split.contains("seed")).map(|s| format!(", seed {s}")).unwrap_or_default(),
        s.classes.len(),
        s.train_per_class.iter().sum::<usize>(),
        s.val_images
    )
}

/// The refusal to continue a study file measured on other data, split or seed.
fn foreign(out: &Path, earlier: &Study, data_dir: &Path, now: &str) -> StudyError {
    let then = measured_on(earlier);
    StudyError::File {
        path: out.to_path_buf(),
        reason: format!(
            "its rows were measured on {} ({then}), not on {} ({now}), so they cannot be continued here: \
             give another --out, or the same data, split and seed",
            retrain_files::names::shown(&earlier.data_dir),
            retrain_files::names::shown(data_dir),
        ),
    }
}

/// The linear head on a subset's cached features, trained for its configured steps: the
/// validation split only scores it (train's early stopping would let it choose the step).
fn linear_row(f: &Prepared, o: &TrainSpec, shots: Shots, repeat: usize) -> Result<Row> {
    let t = Instant::now();
    let dim = f.backbone.feature_dim();
    let k = f.ds.class_names.len();
    let chosen: Vec<usize> = match shots {
        Shots::All => (0..f.train.len()).collect(),
        Shots::PerClass(n) => retrain_files::few_shot(&f.train, n, subset_seed(o.data.seed, shots, repeat)),
    };
    let tx: Vec<f32> = chosen.iter().flat_map(|&i| f.tx[i * dim..(i + 1) * dim].iter().copied()).collect();
    let ty: Vec<usize> = chosen.iter().map(|&i| f.train[i].label).collect();
    let h = retrain_head::train(retrain_head::Split { features: &tx, labels: &ty }, None, dim, k, &o.recipe.head)?;
    let (accuracy, loss) = score(&h, &f.vx, &f.val_labels());
    Ok(Row {
        model: o.backbone.name.clone(),
        strategy: Strategy::Linear,
        shots,
        repeat,
        train_images: ty.len(),
        val_accuracy: accuracy,
        val_loss: Some(loss),
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Accuracy and mean cross-entropy of `h` on features `x` with labels `y`.
fn score(h: &retrain_head::TrainedHead, x: &[f32], y: &[usize]) -> (f64, f64) {
    let probs = h.predict_proba(x);
    let right = probs.iter().zip(y).filter(|(p, &l)| retrain::metrics::argmax(p) == l).count();
    let loss = probs.iter().zip(y).map(|(p, &l)| -(p[l].max(1e-12) as f64).ln()).sum::<f64>();
    let n = y.len().max(1) as f64;
    (right as f64 / n, loss / n)
}

/// The linear head on each stage's pooled map, all training photos, fixed steps.
fn layer_rows(f: &Prepared, o: &TrainSpec, run: &RunSettings) -> Result<Vec<LayerRow>> {
    let stages = f.backbone.stages(run.threads)?;
    let quiet = RunSettings { quiet: true, ..run.clone() };
    let mut rows = Vec::new();
    for (i, s) in stages.iter().enumerate() {
        let mut c = o.backbone.clone();
        c.cut = Some(i + 1);
        let fc = retrain::prepare::prepare(&o.data, &c, &o.recipe, &quiet)?;
        let dim = fc.backbone.feature_dim();
        let (ty, vy) = (fc.train_labels(), fc.val_labels());
        let h = retrain_head::train(
            retrain_head::Split { features: &fc.tx, labels: &ty },
            None,
            dim,
            fc.ds.class_names.len(),
            &o.recipe.head,
        )?;
        let (accuracy, loss) = score(&h, &fc.vx, &vy);
        rows.push(LayerRow {
            model: o.backbone.name.clone(),
            stage: i + 1,
            value: s.value.clone(),
            channels: s.channels,
            size: s.size[0],
            val_accuracy: accuracy,
            val_loss: Some(loss),
        });
    }
    Ok(rows)
}

/// A fine-tuning or scratch run on the subset, through `retrain train`.
fn trained_row(opts: &StudyOptions, o: &TrainSpec, strategy: Strategy, shots: Shots, repeat: usize) -> Result<Row> {
    let mut t = o.clone();
    let recipe = Recipe::for_strategy(strategy);
    let epochs = opts.epochs.unwrap_or(recipe.tune.epochs);
    t.recipe = Recipe { head: o.recipe.head.clone(), ..recipe.with_epochs(epochs).with_batch(o.recipe.batch) };
    t.recipe.tune.seed = subset_seed(o.data.seed, shots, repeat);
    if strategy == Strategy::Scratch {
        t.backbone.weights = None;
    }
    t.data.shots = match shots {
        Shots::All => None,
        Shots::PerClass(k) => Some(FewShot { per_class: k, seed: subset_seed(o.data.seed, shots, repeat) }),
    };
    let runs = opts.out.with_extension("runs");
    let name = format!("{}-{}-{shots}-{repeat}", o.backbone.name, strategy.name());
    std::fs::create_dir_all(&runs).map_err(|e| StudyError::File { path: runs.clone(), reason: e.to_string() })?;
    t.out = runs.join(format!("{name}.onnx"));
    let run_dir = runs.join(format!("{name}.run"));
    let run = RunSettings {
        resume: run_dir.join("state.json").exists(),
        run_dir: Some(run_dir),
        quiet: true,
        ..opts.run.clone()
    };
    let started = Instant::now();
    let r = retrain::train::train(&t, &run)?;
    Ok(Row {
        model: o.backbone.name.clone(),
        strategy,
        shots,
        repeat,
        train_images: r.train_images,
        val_accuracy: r.val_accuracy,
        val_loss: r.val_loss.map(f64::from),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The summary cells and the reading, from the rows.
pub fn finish(study: &mut Study) {
    let mut keys: Vec<(String, Strategy, Shots)> =
        study.results.iter().map(|r| (r.model.clone(), r.strategy, r.shots)).collect();
    // In the order the backbones and strategies were asked for (their first rows).
    let first = |k: &(String, Strategy, Shots)| {
        let m = study.results.iter().position(|r| r.model == k.0).unwrap_or(0);
        let s = study.results.iter().position(|r| r.model == k.0 && r.strategy == k.1).unwrap_or(0);
        (m, s, k.2)
    };
    keys.sort_by_key(|k| first(k));
    keys.dedup();
    study.summary = keys
        .into_iter()
        .map(|(model, strategy, shots)| {
            let rows: Vec<&Row> = study
                .results
                .iter()
                .filter(|r| r.model == model && r.strategy == strategy && r.shots == shots)
                .collect();
            let acc: Vec<f64> = rows.iter().map(|r| r.val_accuracy).collect();
            let (m, sd) = retrain::metrics::mean_sd(&acc);
            let n = rows.len() as f64;
            Cell {
                model,
                strategy,
                shots,
                runs: rows.len(),
                train_images: rows.iter().map(|r| r.train_images as f64).sum::<f64>() / n,
                val_accuracy: m,
                val_accuracy_sd: sd,
                seconds: rows.iter().map(|r| r.seconds).sum::<f64>() / n,
            }
        })
        .collect();
    study.reading = reading(study);
}

fn write(path: &Path, study: &Study) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(study).expect("a study serialises");
    retrain::outputs::write_file(path, &bytes).map_err(StudyError::Retrain)
}

/// The study as one self-contained HTML page: the learning curves, the reading, the table.
pub fn html(study: &Study) -> String {
    chart::page(study)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shots_parse_and_serialise_as_numbers_or_all() {
        assert_eq!("5".parse::<Shots>(), Ok(Shots::PerClass(5)));
        assert_eq!("all".parse::<Shots>(), Ok(Shots::All));
        assert!("0".parse::<Shots>().is_err() && "five".parse::<Shots>().is_err());
        assert_eq!(serde_json::to_string(&[Shots::PerClass(2), Shots::All]).unwrap(), r#"[2,"all"]"#);
        let back: Vec<Shots> = serde_json::from_str(r#"[2,"all"]"#).unwrap();
        assert_eq!(back, vec![Shots::PerClass(2), Shots::All]);
        assert!(Shots::PerClass(1000) < Shots::All);
    }
}
