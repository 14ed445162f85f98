//! What a training run is, split by the stage that owns each part: the photos ([`DataSpec`]),
//! the backbone ([`BackboneSpec`]), how to train ([`Recipe`], whose [`Recipe::for_strategy`]
//! is the one place strategy defaults live) and where the model goes ([`TrainSpec`]); how this
//! process runs ([`RunSettings`]) is never saved. A fine-tuning run saves its spec as
//! `run.json` ([`RunFile`]) so that `--resume DIR` alone continues it.

use crate::precision::Precision;
use crate::{Error, Result};
use retrain_head::HeadConfig;
use retrain_pixels::{Augment, Limits};
use retrain_tune::{BatchNormMode, TuneConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What a photo's answer is (`--task`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Multi-label when any photo has several labels (and said), else single-label.
    #[default]
    Auto,
    /// One class per photo: a softmax over the classes.
    SingleLabel,
    /// Any number of labels per photo: one sigmoid per class, each with its own threshold.
    MultiLabel,
}

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

impl Strategy {
    pub const ALL: [Strategy; 4] = [Strategy::Linear, Strategy::Finetune, Strategy::Full, Strategy::Scratch];

    /// The name `--strategy` takes.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Linear => "linear",
            Strategy::Finetune => "finetune",
            Strategy::Full => "full",
            Strategy::Scratch => "scratch",
        }
    }

    /// How a summary line describes a run of it.
    pub fn described(self) -> &'static str {
        match self {
            Strategy::Linear => "linear head",
            Strategy::Finetune => "fine-tuning",
            Strategy::Full => "full fine-tuning",
            Strategy::Scratch => "trained from scratch",
        }
    }
}

/// A random subset of the training split: `per_class` photos of each class, chosen by `seed`
/// (its own, so the validation split, which [`DataSpec::seed`] makes, stays the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FewShot {
    pub per_class: usize,
    pub seed: u64,
}

/// The labelled photos and how they are split and read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataSpec {
    #[serde(with = "retrain_files::names::json")]
    pub dir: PathBuf,
    #[serde(with = "retrain_files::names::json::option")]
    pub val_dir: Option<PathBuf>,
    pub val_fraction: f64,
    /// Seed of the validation split.
    pub seed: u64,
    /// Images whose header claims more pixels, or files larger than this, are skipped.
    pub max_pixels: u64,
    pub max_file_size: u64,
    /// Train and score photos whose content appears under two classes, or in both train and
    /// validation, instead of setting them aside (`--keep-duplicates`).
    pub keep_duplicates: bool,
    /// Train on this many random photos per class of the training split; the validation split
    /// stays whole (`retrain study`).
    pub shots: Option<FewShot>,
    /// A label file instead of class folders (`--labels`).
    #[serde(default)]
    pub labels: Option<retrain_files::LabelSource>,
    #[serde(default)]
    pub task: Task,
}

impl DataSpec {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            val_dir: None,
            val_fraction: 0.2,
            seed: 0,
            max_pixels: retrain_pixels::DEFAULT_MAX_PIXELS,
            max_file_size: retrain_pixels::DEFAULT_MAX_FILE_SIZE,
            keep_duplicates: false,
            shots: None,
            labels: None,
            task: Task::Auto,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits { max_pixels: self.max_pixels, max_file_size: self.max_file_size }
    }

    /// The folder the validation photos come from.
    pub fn val_root(&self) -> PathBuf {
        self.val_dir.clone().unwrap_or_else(|| self.dir.clone())
    }
}

/// The backbone, its weights and what it computes in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackboneSpec {
    /// A backbone's name, or [`crate::select::AUTO`].
    pub name: String,
    #[serde(with = "retrain_files::names::json::option")]
    pub weights: Option<PathBuf>,
    /// Weights files of other backbones (`--weights NAME=FILE`): candidates of `--model auto`.
    pub weights_for: BTreeMap<String, PathBuf>,
    /// Backbones `--model auto` chooses from (empty: [`crate::select::candidates`] decides).
    pub candidates: Vec<String>,
    /// End the backbone after this stage (1-based, early to late): its map, globally pooled,
    /// feeds the head.
    pub cut: Option<usize>,
    /// What the backbone computes in; fine-tuning trains in fp32 and quantises what it exports.
    pub precision: Precision,
}

impl BackboneSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            weights: None,
            weights_for: BTreeMap::new(),
            candidates: Vec::new(),
            cut: None,
            precision: Precision::Fp32,
        }
    }

    /// The same settings for another backbone, with its weights as given by `--weights NAME=FILE`.
    pub fn for_model(&self, name: &str) -> Self {
        Self { name: name.into(), weights: self.weights_for.get(name).cloned(), ..self.clone() }
    }

    /// The weights file given for this backbone, if any.
    pub fn weights_file(&self) -> Option<&Path> {
        self.weights.as_deref().or(self.weights_for.get(&self.name).map(PathBuf::as_path))
    }
}

/// How to train: the strategy and its settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recipe {
    pub strategy: Strategy,
    /// The linear head (and, fine-tuning, the head it starts from).
    pub head: HeadConfig,
    /// Fine-tuning's settings.
    pub tune: TuneConfig,
    /// Blocks to train with `Finetune` (default: [`crate::finetune::default_unfreeze`]).
    pub unfreeze: Option<usize>,
    pub augment: Augment,
    /// Images per ONNX Runtime batch.
    pub batch: usize,
    /// The L2 penalty of a several-labels head (its other settings are `head`'s); `None`:
    /// chosen by cross-validation on the training split ([`crate::multilabel::choose_l2`]).
    #[serde(default)]
    pub multi_label_l2: Option<f32>,
}

impl Recipe {
    /// A strategy's defaults. From scratch: 30 epochs, every layer at the head's rate, no early
    /// stop (its validation loss is noisy for many epochs), BatchNorm in training mode with
    /// statistics learnt from nothing, and no weight averaging (early weights are noise).
    pub fn for_strategy(strategy: Strategy) -> Self {
        let d = TuneConfig::default();
        let tune = match strategy {
            Strategy::Scratch => TuneConfig {
                epochs: 30,
                patience: 30,
                body_lr: d.lr,
                ema_epochs: 0.0,
                fresh_statistics: true,
                batchnorm: BatchNormMode::Train,
                ..d
            },
            _ => d,
        };
        Self {
            strategy,
            head: HeadConfig::default(),
            tune,
            unfreeze: None,
            augment: Augment::Standard,
            batch: 32,
            multi_label_l2: None,
        }
    }

    /// Sets the linear head's L2 penalty, whatever the task.
    pub fn with_l2(mut self, l2: f32) -> Self {
        self.head.l2 = l2;
        self.multi_label_l2 = Some(l2);
        self
    }

    /// Sets the learning rate of what trains first: the linear head's, else the new head's
    /// while fine-tuning, with the backbone's keeping its default ratio to it.
    pub fn with_lr(mut self, lr: f64) -> Self {
        if self.strategy == Strategy::Linear {
            self.head.learning_rate = lr;
        } else {
            self.tune.body_lr = lr * self.tune.body_lr / self.tune.lr;
            self.tune.lr = lr;
        }
        self
    }

    /// Sets the fine-tuning epochs; from scratch, every one of them runs.
    pub fn with_epochs(mut self, epochs: usize) -> Self {
        self.tune.epochs = epochs;
        if self.strategy == Strategy::Scratch {
            self.tune.patience = epochs;
        }
        self
    }

    /// Sets the images per batch, of ONNX Runtime and of the fine-tuning steps.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self.tune.batch = batch;
        self
    }
}

/// One training run: the photos, the backbone, the recipe and where the model goes.
#[derive(Clone, Debug)]
pub struct TrainSpec {
    pub data: DataSpec,
    pub backbone: BackboneSpec,
    pub recipe: Recipe,
    pub out: PathBuf,
}

impl TrainSpec {
    /// The default recipe (a linear head) for `model` on `data`, written to `out`.
    pub fn new(data: &Path, model: &str, out: &Path) -> Self {
        Self {
            data: DataSpec::new(data),
            backbone: BackboneSpec::new(model),
            recipe: Recipe::for_strategy(Strategy::Linear),
            out: out.to_path_buf(),
        }
    }

    /// The same run for another backbone (its weights as given by `--weights NAME=FILE`).
    pub fn for_model(&self, name: &str) -> Self {
        Self { backbone: self.backbone.for_model(name), ..self.clone() }
    }
}

/// How this process runs: never saved, so a resumed run may use other threads or output.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub threads: usize,
    pub quiet: bool,
    /// Feature cache root; `None` disables the cache.
    pub cache: Option<PathBuf>,
    /// Checkpoints of a fine-tuning run (default: next to the model, `OUT.run/`).
    pub run_dir: Option<PathBuf>,
    /// Continue the run checkpointed in the run directory.
    pub resume: bool,
    /// Set (by a Ctrl-C handler) to stop a fine-tuning run at the next batch, checkpointed.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            threads: crate::default_threads(),
            quiet: false,
            cache: Some(default_feature_cache()),
            run_dir: None,
            resume: false,
            stop: None,
        }
    }
}

impl RunSettings {
    /// The run directory of a fine-tuning run writing `out`.
    pub fn run_dir(&self, out: &Path) -> PathBuf {
        self.run_dir.clone().unwrap_or_else(|| out.with_extension("run"))
    }
}

/// `$XDG_CACHE_HOME/retrain/features` (else `~/.cache/retrain/features`).
pub fn default_feature_cache() -> PathBuf {
    retrain_weights::cache_dir().join("features")
}

/// A fine-tuning run's `run.json`: its spec, and the cache its features came from.
#[derive(Serialize, Deserialize)]
pub struct RunFile {
    pub version: u32,
    pub data: DataSpec,
    pub backbone: BackboneSpec,
    pub recipe: Recipe,
    #[serde(with = "retrain_files::names::json")]
    pub out: PathBuf,
    #[serde(with = "retrain_files::names::json::option")]
    pub cache: Option<PathBuf>,
}

impl RunFile {
    pub const VERSION: u32 = 2;
    pub const NAME: &'static str = "run.json";

    pub fn new(spec: &TrainSpec, run: &RunSettings) -> Self {
        Self {
            version: Self::VERSION,
            data: spec.data.clone(),
            backbone: spec.backbone.clone(),
            recipe: spec.recipe.clone(),
            out: spec.out.clone(),
            cache: run.cache.clone(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a run file serialises")
    }

    /// The run checkpointed in `run_dir`, and the settings that resume it.
    pub fn resume(run_dir: &Path, mut run: RunSettings) -> Result<(TrainSpec, RunSettings)> {
        let p = run_dir.join(Self::NAME);
        let bytes = std::fs::read(&p).map_err(|e| Error::Data {
            path: run_dir.to_path_buf(),
            reason: format!("not a fine-tuning run directory (cannot read run.json: {e})"),
        })?;
        let bad = |reason: String| Error::Data { path: p.clone(), reason };
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<u32>,
        }
        let v: Versioned = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a retrain run file: {e}")))?;
        match v.version {
            Some(Self::VERSION) => {}
            Some(v) => {
                return Err(bad(format!(
                    "a run file of version {v}, this retrain reads version {}: resume it with the retrain that started it",
                    Self::VERSION
                )))
            }
            None => {
                return Err(bad(
                    "written by an older retrain, whose run files this one cannot resume: resume it with that retrain, or train again without --resume".into(),
                ))
            }
        }
        let f: RunFile = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a retrain run file: {e}")))?;
        run.cache = f.cache;
        run.run_dir = Some(run_dir.to_path_buf());
        run.resume = true;
        Ok((TrainSpec { data: f.data, backbone: f.backbone, recipe: f.recipe, out: f.out }, run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_defaults_and_what_follows_them() {
        let linear = Recipe::for_strategy(Strategy::Linear).with_lr(0.05);
        assert_eq!(linear.head.learning_rate, 0.05);
        assert_eq!(linear.tune.lr, TuneConfig::default().lr, "a linear run's --lr is the head's");
        let ft = Recipe::for_strategy(Strategy::Finetune).with_lr(0.002).with_epochs(3);
        assert!((ft.tune.body_lr - 0.0004).abs() < 1e-12, "the backbone keeps a fifth of the head's rate");
        assert_eq!((ft.tune.epochs, ft.tune.patience), (3, 5));
        let s = Recipe::for_strategy(Strategy::Scratch).with_epochs(4);
        assert_eq!((s.tune.epochs, s.tune.patience), (4, 4), "from scratch every epoch runs");
        assert_eq!(s.tune.body_lr, s.tune.lr);
        assert_eq!(s.tune.batchnorm, BatchNormMode::Train);
        assert_eq!(Recipe::for_strategy(Strategy::Full).with_batch(8).tune.batch, 8);
    }

    #[test]
    fn a_run_file_round_trips_and_an_old_one_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = TrainSpec::new(Path::new("photos"), "mobilenet_v2", Path::new("m.onnx"));
        spec.recipe = Recipe::for_strategy(Strategy::Finetune).with_epochs(2);
        let run = RunSettings { cache: Some("c".into()), ..RunSettings::default() };
        std::fs::write(dir.path().join("run.json"), RunFile::new(&spec, &run).to_json()).unwrap();
        let (back, settings) = RunFile::resume(dir.path(), RunSettings { cache: None, ..run }).unwrap();
        assert_eq!((back.recipe.tune.epochs, back.out, settings.cache), (2, "m.onnx".into(), Some("c".into())));
        assert!(settings.resume);

        std::fs::write(dir.path().join("run.json"), br#"{"data_dir": "photos", "model": "mobilenet_v2"}"#).unwrap();
        let e = RunFile::resume(dir.path(), RunSettings::default()).unwrap_err().to_string();
        assert!(e.contains("run.json: written by an older retrain"), "{e}");
        std::fs::write(dir.path().join("run.json"), br#"{"version": 9}"#).unwrap();
        let e = RunFile::resume(dir.path(), RunSettings::default()).unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
    }
}
