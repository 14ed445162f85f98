//! `--strategy linear`: a linear head on the frozen backbone's features, fitted with burn,
//! then the backbone and the head exported as one model file. Fine-tuning starts from it.

use crate::metrics::{self, argmax};
use crate::model::{ModelInfo, Scored};
use crate::open_set;
use crate::outputs::{check_writable, write_model};
use crate::precision::Precision;
use crate::prepare::{prepare, Prepared};
use crate::spec::{RunSettings, Strategy, TrainSpec};
use crate::train_report::{Curves, TrainReport};
use crate::Result;
use retrain_head::{Split, TrainedHead};
use retrain_zoo::LinearHead;
use std::time::Instant;

/// The linear stage's outcome: the features and the head trained on them.
pub struct LinearFit {
    pub f: Prepared,
    pub head: TrainedHead,
}

impl std::ops::Deref for LinearFit {
    type Target = Prepared;
    fn deref(&self) -> &Prepared {
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
            open_set: None,
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
        metrics::compute(&self.train_labels(), &self.predict(&self.tx), &self.ds.class_names).accuracy
    }

    /// The report's part that the linear stage decides; the caller sets the accuracies, the
    /// validation metrics, the timings and what fine-tuning did.
    pub fn base_report(&self, spec: &TrainSpec) -> TrainReport {
        TrainReport {
            model: spec.out.clone(),
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
            head: spec.recipe.head.clone(),
            class_names: Vec::new(),
            per_class: Vec::new(),
            confusion_matrix: Vec::new(),
            skipped: self.skipped.clone(),
            conflicts: self.ds.conflicts.clone(),
            leaks: self.ds.leaks.clone(),
            duplicates_kept: spec.data.keep_duplicates,
            timings: self.timings.clone(),
            curve: self.head.curve.clone(),
            finetune: None,
            open_set: None,
            calibration: None,
            model_selection: None,
            val_root: spec.data.val_root(),
            val_set: self.val.iter().map(|s| (s.path.clone(), s.label)).collect(),
        }
    }
}

/// Prepares the features and fits the linear head (from scratch: a randomly initialised
/// head, as torchvision's).
pub fn fit(spec: &TrainSpec, run: &RunSettings) -> Result<LinearFit> {
    let f = prepare(&spec.data, &spec.backbone, &spec.recipe, run)?;
    let t = Instant::now();
    let (dim, k) = (f.backbone.feature_dim(), f.ds.class_names.len());
    let head = if spec.recipe.strategy == Strategy::Scratch {
        let w = retrain_weights::kaiming("classifier.weight", &[k, dim], spec.data.seed);
        TrainedHead { weight: w.data, bias: vec![0.0; k], dim, best_step: 0, steps_run: 0, curve: Vec::new() }
    } else {
        let (ty, vy) = (f.train_labels(), f.val_labels());
        let val = (!vy.is_empty()).then_some(Split { features: &f.vx, labels: &vy });
        retrain_head::train(Split { features: &f.tx, labels: &ty }, val, dim, k, &spec.recipe.head)?
    };
    let mut fit = LinearFit { f, head };
    fit.f.timings.head = t.elapsed().as_secs_f64();
    Ok(fit)
}

/// Trains the linear head and writes the model: `--strategy linear`.
pub fn train(spec: &TrainSpec, run: &RunSettings) -> Result<TrainReport> {
    check_writable(&spec.out)?;
    let fit = fit(spec, run)?;
    let val_metrics = metrics::compute(&fit.val_labels(), &fit.predict(&fit.vx), &fit.ds.class_names);

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
    let t_open = Instant::now();
    let (dim, k) = (fit.backbone.feature_dim(), fit.ds.class_names.len());
    let ty = fit.train_labels();
    let os = open_set::fit(&fit.tx, &ty, dim, k, &spec.recipe.head, fit.head.best_step, spec.data.seed, run.quiet)?;
    if let Some(os) = &os {
        os.attach(&mut model)?;
    }
    let open_seconds = t_open.elapsed().as_secs_f64();
    write_model(&model, &spec.out)?;
    let mut report = fit.base_report(spec);
    if let Some(os) = &os {
        // The validation photos as the graph scores them: calibrated head, features' score.
        let vy = fit.val_labels();
        let scores = os.scores(&fit.vx);
        let scored: Vec<(Scored, usize)> = fit
            .vx
            .chunks_exact(dim)
            .zip(scores)
            .zip(vy)
            .map(|((x, o), y)| {
                let l = fit.head.logits(x);
                (Scored { probabilities: retrain_openset::softmax_t(&l, os.temperature), ood_score: Some(o) }, y)
            })
            .collect();
        let (summary, calibration) = open_set::summarise(&os.info(), &scored);
        report.open_set = Some(summary);
        report.calibration = Some(calibration);
    }
    report.timings.open_set = open_seconds;
    report.timings.export = t.elapsed().as_secs_f64();
    report.timings.total = fit.started.elapsed().as_secs_f64();
    report.train_accuracy = fit.train_accuracy();
    report.set_val_metrics(val_metrics);
    Ok(report)
}
