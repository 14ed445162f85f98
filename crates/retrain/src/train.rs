//! `retrain train`: dataset → features (cached) → head → one model file + report.

use crate::backbone::LoadedBackbone;
use crate::dataset::{self, Sample};
use crate::metrics::{self, argmax};
use crate::model::ModelInfo;
use crate::precision::{self, Precision};
use crate::report::{Curves, Report, Skipped, Timings};
use crate::{progress_bar, Error, Result};
use retrain_head::{HeadConfig, Split, TrainedHead};
use retrain_pixels::Augment;
use retrain_tune::TuneConfig;
use retrain_zoo::LinearHead;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// What `train` trains (`--strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// A linear head on the frozen backbone's features.
    Linear,
    /// The linear head, then the last blocks and the head together.
    Finetune,
    /// The linear head, then every layer.
    Full,
    /// The same architecture from random initialisation, every layer trained: the baseline
    /// transfer is measured against.
    Scratch,
}

/// A random subset of the training split: `per_class` photos of each class, chosen by `seed`
/// (its own, so the validation split, which `TrainOptions::seed` makes, stays the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FewShot {
    pub per_class: usize,
    pub seed: u64,
}

/// The fine-tuning settings a strategy starts from: from scratch, 30 epochs, every layer at
/// the head's rate, no early stop (its validation loss is noisy for many epochs), BatchNorm
/// statistics learnt from nothing, and no weight averaging (early weights are noise).
pub fn tune_defaults(strategy: Strategy) -> TuneConfig {
    let d = TuneConfig::default();
    match strategy {
        Strategy::Scratch => {
            TuneConfig { epochs: 30, patience: 30, body_lr: d.lr, ema_epochs: 0.0, fresh_statistics: true, ..d }
        }
        _ => d,
    }
}

/// What to train. Serialised as a fine-tuning run's `run.json`, so `--resume DIR` alone
/// continues the run; how this process runs (threads, output, Ctrl-C) is not saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    #[serde(with = "retrain_files::names::json")]
    pub data_dir: PathBuf,
    #[serde(with = "retrain_files::names::json::option")]
    pub val_dir: Option<PathBuf>,
    pub val_fraction: f64,
    pub seed: u64,
    pub model: String,
    #[serde(with = "retrain_files::names::json::option")]
    pub weights: Option<PathBuf>,
    #[serde(with = "retrain_files::names::json")]
    pub out: PathBuf,
    #[serde(skip, default = "crate::default_threads")]
    pub threads: usize,
    pub batch: usize,
    pub head: HeadConfig,
    #[serde(skip)]
    pub quiet: bool,
    /// Feature cache root; `None` disables the cache.
    #[serde(with = "retrain_files::names::json::option")]
    pub feature_cache: Option<PathBuf>,
    pub strategy: Strategy,
    /// Blocks to train with `Finetune` (default: about the last fifth of the backbone's).
    pub unfreeze: Option<usize>,
    pub augment: Augment,
    pub tune: TuneConfig,
    /// What the backbone computes in (`--precision`); fine-tuning trains in fp32 and
    /// quantises the model it exports.
    #[serde(default)]
    pub precision: Precision,
    /// Checkpoints of a fine-tuning run (default: next to the model, `OUT.run/`).
    #[serde(skip)]
    pub run_dir: Option<PathBuf>,
    /// Set (by a Ctrl-C handler) to stop a fine-tuning run at the next batch, checkpointed.
    #[serde(skip)]
    pub stop: Option<Arc<AtomicBool>>,
    /// Continue the run checkpointed in the run directory.
    #[serde(skip)]
    pub resume: bool,
    /// Images whose header claims more pixels are skipped (`--max-pixels`).
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
    #[serde(default = "default_max_file_size")]
    pub max_file_size: u64,
    /// Train and score photos whose content appears under two classes, or in both train
    /// and validation, instead of setting them aside (`--keep-duplicates`).
    #[serde(default)]
    pub keep_duplicates: bool,
    /// Train on this many random photos per class of the training split (seeded by `seed`);
    /// the validation split stays whole (`retrain study`).
    #[serde(default)]
    pub shots: Option<FewShot>,
    /// Weights files of backbones other than `model` (`--weights NAME=FILE`): candidates of
    /// `--model auto`.
    #[serde(default)]
    pub weights_for: std::collections::BTreeMap<String, PathBuf>,
    /// Backbones `--model auto` chooses from (empty: [`crate::select::default_candidates`]).
    #[serde(default)]
    pub candidates: Vec<String>,
    /// End the backbone after this stage (1-based, early to late; `retrain study --layers`
    /// measures which is best): its map, globally pooled, feeds the head.
    #[serde(default)]
    pub cut: Option<usize>,
}

fn default_max_file_size() -> u64 {
    retrain_pixels::DEFAULT_MAX_FILE_SIZE
}

fn default_max_pixels() -> u64 {
    retrain_pixels::DEFAULT_MAX_PIXELS
}

impl TrainOptions {
    pub fn new(data_dir: &Path, model: &str, out: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            val_dir: None,
            val_fraction: 0.2,
            seed: 0,
            model: model.into(),
            weights: None,
            out: out.to_path_buf(),
            threads: crate::default_threads(),
            batch: 32,
            head: HeadConfig::default(),
            quiet: false,
            feature_cache: Some(default_feature_cache()),
            strategy: Strategy::Linear,
            unfreeze: None,
            augment: Augment::Standard,
            tune: TuneConfig::default(),
            precision: Precision::Fp32,
            run_dir: None,
            stop: None,
            resume: false,
            max_pixels: default_max_pixels(),
            max_file_size: default_max_file_size(),
            keep_duplicates: false,
            shots: None,
            weights_for: Default::default(),
            candidates: Vec::new(),
            cut: None,
        }
    }

    pub fn limits(&self) -> retrain_pixels::Limits {
        retrain_pixels::Limits { max_pixels: self.max_pixels, max_file_size: self.max_file_size }
    }

    /// The run directory of a fine-tuning run.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.clone().unwrap_or_else(|| self.out.with_extension("run"))
    }
}

/// `$XDG_CACHE_HOME/retrain/features` (else `~/.cache/retrain/features`).
pub fn default_feature_cache() -> PathBuf {
    retrain_weights::cache_dir().join("features")
}

/// Fails early, before minutes of work, if the model cannot be written where asked.
pub(crate) fn check_writable(out: &Path) -> Result<()> {
    let target = retrain_files::link_target(out).map_err(|source| Error::Write { path: out.to_path_buf(), source })?;
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    retrain_files::check_writable(dir).map_err(|source| Error::Write { path: out.to_path_buf(), source })
}

pub(crate) fn warn(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("warning: {msg}");
    }
}

/// One warning line each for label conflicts and leaks, with the first example.
pub(crate) fn warn_duplicates(ds: &dataset::Dataset, kept: bool, quiet: bool) {
    let action = |what: &str| if kept { "kept (--keep-duplicates)" } else { what }.to_string();
    if let Some(line) = dataset::duplicates::describe_conflicts(&ds.conflicts) {
        let what = action("left out of training and validation");
        warn(quiet, &format!("{line}: {what}; the report lists them under `conflicts`"));
    }
    if let Some(line) = dataset::duplicates::describe_leaks(&ds.leaks) {
        let what = action("left out of the validation score");
        warn(quiet, &format!("{line}: {what}; the report lists them under `leaks`"));
    }
}

/// The data and the backbone's features of every photo that decoded.
pub struct Features {
    pub ds: dataset::Dataset,
    pub backbone: LoadedBackbone,
    /// The samples that decoded, with their features (row-major).
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub tx: Vec<f32>,
    pub vx: Vec<f32>,
    pub skipped: Vec<Skipped>,
    /// Features read from the cache.
    pub cached: usize,
    pub computed: usize,
    pub timings: Timings,
    pub started: Instant,
    /// Images per second of the feature extraction, when any were computed.
    pub images_per_second: Option<f64>,
}

impl Features {
    pub fn train_labels(&self) -> Vec<usize> {
        self.train.iter().map(|s| s.label).collect()
    }

    pub fn val_labels(&self) -> Vec<usize> {
        self.val.iter().map(|s| s.label).collect()
    }
}

/// The linear stage's outcome: the features and the head trained on them.
pub(crate) struct LinearFit {
    pub f: Features,
    pub head: TrainedHead,
}

impl std::ops::Deref for LinearFit {
    type Target = Features;
    fn deref(&self) -> &Features {
        &self.f
    }
}

impl LinearFit {
    /// The model file's metadata for this data and backbone.
    pub fn model_info(&self) -> ModelInfo {
        ModelInfo {
            class_names: self.ds.class_names.clone(),
            backbone: self.backbone.info.name.into(),
            weights_sha256: self.backbone.weights_sha256.clone(),
            preprocess: self.backbone.info.preprocess,
        }
    }

    /// The linear head's curve, for the model file.
    pub fn curves(&self) -> Curves {
        Curves::new(&self.head.curve, self.head.best_step)
    }

    fn predict(&self, x: &[f32]) -> Vec<usize> {
        self.head.predict_proba(x).iter().map(|p| argmax(p)).collect()
    }

    /// The linear head's accuracy on the (unaugmented) training features.
    pub fn train_accuracy(&self) -> f64 {
        let ty: Vec<usize> = self.train.iter().map(|s| s.label).collect();
        metrics::compute(&ty, &self.predict(&self.tx), &self.ds.class_names).accuracy
    }

    /// The report's part that the linear stage decides; the caller sets the accuracies, the
    /// validation metrics, the timings and what fine-tuning did.
    pub fn report(&self, opts: &TrainOptions) -> Report {
        Report {
            model: opts.out.clone(),
            backbone: self.backbone.info.name.into(),
            weights: self.backbone.weights_path.clone(),
            weights_sha256: self.backbone.weights_sha256.clone(),
            precision: if self.backbone.int8.is_some() { Precision::Int8 } else { Precision::Fp32 },
            split: self.ds.split.clone(),
            train_images: self.train.len(),
            val_images: self.val.len(),
            features_cached: self.cached,
            features_computed: self.computed,
            val_accuracy: 0.0,
            train_accuracy: 0.0,
            val_loss: self.head.curve.get(self.head.best_step.saturating_sub(1)).and_then(|s| s.val_loss),
            best_step: self.head.best_step,
            steps_run: self.head.steps_run,
            head: opts.head.clone(),
            class_names: Vec::new(),
            per_class: Vec::new(),
            confusion_matrix: Vec::new(),
            skipped: self.skipped.clone(),
            conflicts: self.ds.conflicts.clone(),
            leaks: self.ds.leaks.clone(),
            duplicates_kept: opts.keep_duplicates,
            timings: self.timings.clone(),
            curve: self.head.curve.clone(),
            finetune: None,
            model_selection: None,
            val_set: self.val.iter().map(|s| (s.path.clone(), s.label)).collect(),
        }
    }
}

/// Trains a classifier as `opts.strategy` says and writes it to `opts.out`.
pub fn train(opts: &TrainOptions) -> Result<Report> {
    opts.precision.check()?;
    if opts.model == crate::select::AUTO {
        let t = Instant::now();
        let selection = crate::select::choose(opts)?;
        let mut chosen = opts.clone();
        chosen.model = selection.chosen.clone();
        chosen.weights = opts.weights_for.get(&chosen.model).cloned();
        let selecting = t.elapsed().as_secs_f64();
        let mut report = train(&chosen)?;
        report.timings.total += selecting;
        report.model_selection = Some(selection);
        return Ok(report);
    }
    if opts.strategy != Strategy::Linear {
        return crate::finetune::finetune(opts);
    }
    check_writable(&opts.out)?;
    let fit = fit_linear(opts)?;
    let vy: Vec<usize> = fit.val.iter().map(|s| s.label).collect();
    let val_metrics = metrics::compute(&vy, &fit.predict(&fit.vx), &fit.ds.class_names);

    let t = Instant::now();
    let head = LinearHead { weight: fit.head.weight.clone(), bias: fit.head.bias.clone() };
    let mut model = fit.backbone.classifier(head, &fit.model_info().metadata())?;
    if let Some(c) = &fit.backbone.cut {
        model.metadata_props.push(retrain_onnx::proto::StringStringEntryProto {
            key: "retrain.cut".into(),
            value: format!("after stage {} ({}: {} channels, {}×{})", c.stage, c.value, c.channels, c.size, c.size),
        });
    }
    fit.curves().attach(&mut model);
    write_model(&model, &opts.out)?;
    let mut report = fit.report(opts);
    report.timings.export = t.elapsed().as_secs_f64();
    report.timings.total = fit.started.elapsed().as_secs_f64();
    report.train_accuracy = fit.train_accuracy();
    report.set_val_metrics(val_metrics);
    Ok(report)
}

pub(crate) fn write_model(model: &retrain_onnx::ModelProto, out: &Path) -> Result<()> {
    write_file(out, &retrain_onnx::encode_sealed(model))
}

/// Writes a file the user asked for (a model, a report, a run's options) whole or not at all.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    retrain_files::write_atomic(path, bytes, true).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

/// Scan, load the backbone, extract (or read cached) features, train the linear head (from
/// scratch: a randomly initialised head, as torchvision's).
pub(crate) fn fit_linear(opts: &TrainOptions) -> Result<LinearFit> {
    let f = features(opts)?;
    let t = Instant::now();
    let (dim, k) = (f.backbone.feature_dim(), f.ds.class_names.len());
    let head = if opts.strategy == Strategy::Scratch {
        let w = retrain_weights::kaiming("classifier.weight", &[k, dim], opts.seed);
        TrainedHead { weight: w.data, bias: vec![0.0; k], dim, best_step: 0, steps_run: 0, curve: Vec::new() }
    } else {
        let (ty, vy) = (f.train_labels(), f.val_labels());
        let val = (!vy.is_empty()).then_some(Split { features: &f.vx, labels: &vy });
        retrain_head::train(Split { features: &f.tx, labels: &ty }, val, dim, k, &opts.head)?
    };
    let mut fit = LinearFit { f, head };
    fit.f.timings.head = t.elapsed().as_secs_f64();
    Ok(fit)
}

/// The backbone `opts` names, with its weights: `--weights`, `--weights NAME=FILE`, the cache,
/// or (training from scratch) a random initialisation seeded by `opts.seed`.
pub fn load_backbone(opts: &TrainOptions) -> Result<LoadedBackbone> {
    if opts.strategy == Strategy::Scratch {
        return LoadedBackbone::random(&opts.model, opts.seed);
    }
    let weights = opts.weights.as_deref().or(opts.weights_for.get(&opts.model).map(PathBuf::as_path));
    LoadedBackbone::load(&opts.model, weights, opts.quiet)
}

/// Scan (and take `opts.shots` per class), load the backbone, extract (or read cached) the
/// features of every photo.
pub fn features(opts: &TrainOptions) -> Result<Features> {
    let t0 = Instant::now();
    let mut timings = Timings::default();
    let mut ds = dataset::scan(&opts.data_dir, opts.val_dir.as_deref(), opts.val_fraction, opts.seed)?;
    ds.set_aside_duplicates(opts.keep_duplicates);
    warn_duplicates(&ds, opts.keep_duplicates, opts.quiet);
    if let Some(fs) = opts.shots {
        ds.train =
            dataset::few_shot(&ds.train, fs.per_class, fs.seed).into_iter().map(|i| ds.train[i].clone()).collect();
    }
    timings.scan = t0.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut backbone = load_backbone(opts)?;
    if let Some(stage) = opts.cut {
        backbone.cut_at(stage, opts.threads)?;
    }
    timings.weights = t.elapsed().as_secs_f64();

    // A linear head learns on the int8 features it will see; fine-tuning learns in fp32 and
    // quantises what it exports.
    if opts.precision == Precision::Int8 && opts.strategy == Strategy::Linear {
        let t = Instant::now();
        backbone.calibrate_int8(
            &precision::calibration_files(&ds.train),
            opts.threads,
            opts.feature_cache.as_deref(),
        )?;
        timings.calibration = t.elapsed().as_secs_f64();
    }

    let t = Instant::now();
    let all: Vec<&Sample> = ds.train.iter().chain(&ds.val).collect();
    let files: Vec<PathBuf> = all.iter().map(|s| s.path.clone()).collect();
    // A random backbone's features are worth nothing once its run is over.
    let cache = match opts.strategy {
        Strategy::Scratch => None,
        _ => opts.feature_cache.as_deref().map(|root| backbone.feature_cache(root)),
    };
    let mut sessions = backbone.feature_sessions(opts.threads);
    let bar = progress_bar(files.len() as u64, "features", opts.quiet);
    let extracted = retrain_features::extract(
        &mut sessions,
        "features",
        &files,
        backbone.geometry(),
        opts.limits(),
        cache.as_ref(),
        opts.batch,
        &bar,
    )?;
    bar.finish_and_clear();
    timings.features = t.elapsed().as_secs_f64();

    let mut skipped = Vec::new();
    for s in &ds.skipped {
        warn(opts.quiet, &format!("skipped {}: {}", s.path.display(), s.reason));
        skipped.push(s.clone());
    }
    let (mut tx, mut ty, mut vx) = (Vec::new(), Vec::new(), Vec::new());
    let (mut train_ok, mut val_ok) = (Vec::new(), Vec::new());
    let n_train = ds.train.len();
    for (i, (s, f)) in all.iter().zip(extracted.features).enumerate() {
        match f {
            Ok(f) if i < n_train => {
                tx.extend(f);
                ty.push(s.label);
                train_ok.push((*s).clone());
            }
            Ok(f) => {
                vx.extend(f);
                val_ok.push((*s).clone());
            }
            Err(e) => {
                warn(opts.quiet, &format!("skipped {e}"));
                skipped.push(Skipped { path: s.path.clone(), reason: e.reason() });
            }
        }
    }
    for (c, name) in ds.class_names.iter().enumerate() {
        if !ty.contains(&c) {
            let folder = ds
                .train
                .iter()
                .find(|s| s.label == c)
                .and_then(|s| s.path.parent())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            return Err(Error::Data {
                path: folder,
                reason: format!("class `{name}` has no readable image to train on"),
            });
        }
    }

    drop(sessions);
    let cached = train_ok.len() + val_ok.len() - extracted.computed;
    let images_per_second = (extracted.computed > 0).then(|| extracted.computed as f64 / timings.features.max(1e-9));
    Ok(Features {
        ds,
        backbone,
        images_per_second,
        train: train_ok,
        val: val_ok,
        tx,
        vx,
        skipped,
        cached,
        computed: extracted.computed,
        timings,
        started: t0,
    })
}
