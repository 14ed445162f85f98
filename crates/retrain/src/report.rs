//! The training report (`--report REPORT.json`).

use crate::metrics::Metrics;
use serde::Serialize;
use std::path::PathBuf;

pub use retrain_files::{Conflict, Leak, Skipped};

/// Seconds spent in each stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub scan: f64,
    pub weights: f64,
    /// int8 calibration (0 at fp32).
    pub calibration: f64,
    pub features: f64,
    pub head: f64,
    /// Fine-tuning epochs (0 for a linear head).
    pub finetune: f64,
    pub export: f64,
    pub total: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: PathBuf,
    pub backbone: String,
    pub weights: PathBuf,
    pub weights_sha256: String,
    pub precision: crate::precision::Precision,
    pub split: String,
    pub train_images: usize,
    pub val_images: usize,
    pub features_cached: usize,
    pub features_computed: usize,
    pub val_accuracy: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f32>,
    pub best_step: usize,
    pub steps_run: usize,
    pub head: retrain_head::HeadConfig,
    pub class_names: Vec<String>,
    pub per_class: Vec<crate::metrics::ClassMetrics>,
    pub confusion_matrix: Vec<Vec<usize>>,
    pub skipped: Vec<Skipped>,
    /// Photos whose content appears under more than one class (left out unless
    /// `duplicates_kept`).
    pub conflicts: Vec<Conflict>,
    /// Validation photos that are copies of training photos (left out of the score unless
    /// `duplicates_kept`).
    pub leaks: Vec<Leak>,
    pub duplicates_kept: bool,
    pub timings: Timings,
    pub curve: Vec<retrain_head::StepStats>,
    /// Fine-tuning after the linear head (`--strategy finetune|full`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneSummary>,
}

/// What a fine-tuning run did, epoch by epoch.
#[derive(Clone, Debug, Serialize)]
pub struct FinetuneSummary {
    pub strategy: crate::train::Strategy,
    /// The first trainable block (the trunk before it runs frozen in ONNX Runtime).
    pub first_trained_block: String,
    pub unfrozen_blocks: usize,
    pub trainable_parameters: usize,
    pub augment: retrain_pixels::Augment,
    pub config: retrain_tune::TuneConfig,
    /// The kept epoch (lowest validation loss; 0 = the linear head it started from).
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub run_dir: PathBuf,
    pub curve: Vec<retrain_tune::EpochStats>,
}

impl Report {
    pub fn set_val_metrics(&mut self, m: Metrics) {
        self.val_accuracy = m.accuracy;
        self.per_class = m.per_class;
        self.confusion_matrix = m.confusion_matrix;
        self.class_names = m.class_names;
    }
}
