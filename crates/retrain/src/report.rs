//! The training report (`--report REPORT.json`).

use crate::metrics::Metrics;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Seconds spent in each stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub scan: f64,
    pub weights: f64,
    pub features: f64,
    pub head: f64,
    pub export: f64,
    pub total: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: PathBuf,
    pub backbone: String,
    pub weights: PathBuf,
    pub weights_sha256: String,
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
    pub timings: Timings,
    pub curve: Vec<retrain_head::StepStats>,
}

impl Report {
    pub fn set_val_metrics(&mut self, m: Metrics) {
        self.val_accuracy = m.accuracy;
        self.per_class = m.per_class;
        self.confusion_matrix = m.confusion_matrix;
        self.class_names = m.class_names;
    }
}
