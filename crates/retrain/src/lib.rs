//! retrain: a folder of labelled photos in, a trained image classifier out.
//!
//! A run is a [`spec::TrainSpec`] (the data, the backbone, the recipe) and [`spec::RunSettings`];
//! [`train::train`] dispatches it through one stage per module: [`prepare`] (the photos,
//! `retrain_files`; the backbone; features in ONNX Runtime, cached, `retrain_features`) →
//! [`linear`] (the head, `retrain_head`) or [`finetune`] (the upper blocks too, `retrain_tune`)
//! → [`outputs`] (one `.onnx` file, [`model`]) and a [`train_report::TrainReport`]. Models are
//! then used by [`predict`] and [`eval`]; [`select`] chooses a backbone (`--model auto`).

pub mod backbone;
pub mod eval;
pub mod finetune;
pub mod imported;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod multi_metrics;
pub mod multilabel;
pub mod open_set;
pub mod outputs;
pub mod precision;
pub mod predict;
pub mod prepare;
pub mod select;
pub mod spec;
pub mod stages;
pub mod train;
pub mod train_report;

pub use spec::{BackboneSpec, DataSpec, FewShot, Recipe, RunSettings, Strategy, TrainSpec};
pub use train_report::TrainReport;

/// Files: the folder walk, classes, split and duplicate photos (`retrain_files`).
pub use retrain_files as dataset;
pub use retrain_head::HeadConfig;
pub use retrain_pixels::{Augment, Filter, Limits, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_PIXELS};
pub use retrain_tune::{BatchNormMode, OptimizerKind as TuneOptimizer, TuneConfig};
pub use retrain_zoo::{registry, Backbone, LABELS_OUTPUT};

/// A backbone by name: the zoo's, then those imported with `retrain models import`.
pub fn find_backbone(name: &str) -> Result<&'static Backbone> {
    match retrain_zoo::find(name) {
        Ok(b) => Ok(b),
        Err(e) => imported::find(name).ok_or(Error::UnknownModel(e)),
    }
}

/// The zoo followed by the imported backbones.
pub fn all_backbones() -> Vec<&'static Backbone> {
    registry().iter().chain(imported::list()).collect()
}

/// Downloads (or finds in the cache) a zoo backbone's official weights.
pub fn fetch_weights(b: &Backbone, quiet: bool) -> Result<PathBuf> {
    Ok(retrain_weights::fetch(&b.weights, quiet)?)
}

use std::path::PathBuf;

/// Everything that can go wrong, each naming the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a retrain model ({reason})")]
    NotAModel { path: PathBuf, reason: String },
    #[error(transparent)]
    Files(#[from] retrain_files::FilesError),
    #[error(transparent)]
    Weights(#[from] retrain_weights::WeightsError),
    #[error("{path}: {source}")]
    Zoo { path: PathBuf, source: retrain_zoo::ZooError },
    #[error(transparent)]
    UnknownModel(retrain_zoo::ZooError),
    #[error(transparent)]
    Features(#[from] retrain_features::FeatureError),
    #[error(transparent)]
    Onnx(#[from] retrain_onnx::OnnxError),
    #[error("the open-set score: {0}")]
    OpenSet(#[from] retrain_openset::OpenSetError),
    #[error("training the head: {0}")]
    Head(#[from] retrain_head::HeadError),
    #[error("{0}")]
    Tune(#[from] retrain_tune::TuneError),
    #[error("{model} cannot be fine-tuned: {reason}")]
    Finetune { model: String, reason: String },
    #[error("--precision {precision}: {reason}")]
    Precision { precision: &'static str, reason: String },
    #[error("interrupted; the run is checkpointed in {}: continue it with `retrain train --resume {}`", run_dir.display(), run_dir.display())]
    Interrupted { run_dir: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Threads to use by default: all cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A progress bar with ETA, or a hidden one when `quiet`.
pub fn progress_bar(len: u64, what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {rate} ETA {eta}")
            .expect("valid template")
            .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} images/s", s.per_sec());
            })
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
