//! What a training run did: the `--report REPORT.json` figures ([`TrainReport`]) and the
//! curves a model file carries ([`Curves`]).

use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::prepare::Timings;
pub use retrain_files::{Conflict, Leak, Skipped};

#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    #[serde(with = "retrain_files::names::json")]
    pub model: PathBuf,
    pub backbone: String,
    #[serde(with = "retrain_files::names::json")]
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
    /// The open-set score's threshold and bank, and how it did on the validation photos.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_set: Option<crate::open_set::OpenSetSummary>,
    /// Temperature scaling and the calibration error before and after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::open_set::Calibration>,
    /// How `--model auto` chose the backbone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_selection: Option<crate::select::ModelSelection>,
    /// The folder of the validation photos and the photos with their labels, for a report
    /// drawn right after training.
    /// Several labels per photo: the thresholds and the validation metrics (`val_accuracy` is
    /// then the subset accuracy; `per_class` and the confusion matrix are empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiLabelSummary>,
    #[serde(skip)]
    pub val_root: PathBuf,
    /// Each validation photo and its labels (the first is its class).
    #[serde(skip)]
    pub val_set: Vec<(PathBuf, Vec<usize>)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MultiLabelSummary {
    /// Each class's threshold, tuned for F1 on the training split.
    pub thresholds: Vec<f32>,
    pub metrics: crate::multi_metrics::MultiMetrics,
}

/// What a fine-tuning run did, epoch by epoch.
#[derive(Clone, Debug, Serialize)]
pub struct FinetuneSummary {
    pub strategy: crate::spec::Strategy,
    /// The first trainable block (the trunk before it runs frozen in ONNX Runtime).
    pub first_trained_block: String,
    pub unfrozen_blocks: usize,
    pub trainable_parameters: usize,
    pub augment: retrain_pixels::Augment,
    pub config: retrain_tune::TuneConfig,
    /// The kept epoch (lowest validation loss; 0 = the linear head it started from).
    pub best_epoch: usize,
    pub epochs_run: usize,
    #[serde(with = "retrain_files::names::json")]
    pub run_dir: PathBuf,
    pub curve: Vec<retrain_tune::EpochStats>,
}

impl TrainReport {
    /// The validation photos the model was scored on, as `retrain report` reads a folder.
    pub fn validation_set(&self) -> crate::eval::Labelled {
        crate::eval::Labelled {
            root: self.val_root.clone(),
            files: self.val_set.iter().map(|(p, _)| p.clone()).collect(),
            truth: self.val_set.iter().map(|(_, l)| l.first().copied().unwrap_or(0)).collect(),
            also: self.val_set.iter().map(|(_, l)| l.get(1..).unwrap_or_default().to_vec()).collect(),
            skipped: Vec::new(),
            conflicts: Vec::new(),
            unlisted: Vec::new(),
        }
    }

    pub fn set_multi_label(&mut self, m: crate::multi_metrics::MultiMetrics, thresholds: Vec<f32>) {
        self.val_accuracy = m.subset_accuracy;
        self.class_names = m.per_class.iter().map(|c| c.class.clone()).collect();
        self.multi_label = Some(MultiLabelSummary { thresholds, metrics: m });
    }

    pub fn set_val_metrics(&mut self, m: Metrics) {
        self.val_accuracy = m.accuracy;
        self.per_class = m.per_class;
        self.confusion_matrix = m.confusion_matrix;
        self.class_names = m.class_names;
    }
}

/// The training curves a model file carries (metadata `retrain.curves`), so `retrain report`
/// can draw them from the model alone. Only what training computed: no timings, so the same
/// run writes the same bytes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Curves {
    pub head: Vec<retrain_head::StepStats>,
    pub best_step: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finetune: Vec<EpochPoint>,
    #[serde(default)]
    pub best_epoch: usize,
}

/// One fine-tuning epoch's figures (epoch 0: the linear head it started from).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochPoint {
    pub epoch: usize,
    pub train_loss: Option<f32>,
    pub train_accuracy: Option<f64>,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f64>,
}

const CURVES_KEY: &str = "retrain.curves";

impl Curves {
    pub fn new(head: &[retrain_head::StepStats], best_step: usize) -> Self {
        Self { head: head.to_vec(), best_step, ..Self::default() }
    }

    pub fn with_finetune(mut self, curve: &[retrain_tune::EpochStats], best_epoch: usize) -> Self {
        self.finetune = curve
            .iter()
            .map(|e| EpochPoint {
                epoch: e.epoch,
                train_loss: e.train_loss,
                train_accuracy: e.train_accuracy,
                val_loss: e.val_loss,
                val_accuracy: e.val_accuracy,
            })
            .collect();
        self.best_epoch = best_epoch;
        self
    }

    /// Adds them to the model's metadata.
    pub fn attach(&self, model: &mut retrain_onnx::ModelProto) {
        model.metadata_props.push(retrain_onnx::proto::StringStringEntryProto {
            key: CURVES_KEY.into(),
            value: serde_json::to_string(self).expect("numbers serialise"),
        });
    }

    /// The curves in a model file's metadata; `None` for models written before they were kept
    /// or by other tools.
    pub fn read(model: &retrain_onnx::ModelProto, path: &Path) -> crate::Result<Option<Self>> {
        retrain_onnx::metadata(model, CURVES_KEY)
            .map(|v| {
                serde_json::from_str(v).map_err(|e| crate::Error::NotAModel {
                    path: path.to_path_buf(),
                    reason: format!("bad `{CURVES_KEY}` metadata: {e}"),
                })
            })
            .transpose()
    }
}
