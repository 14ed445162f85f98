//! `--strategy linear`: a linear head on the frozen backbone's features, fitted with burn,
//! then the backbone and the head exported as one model file. Fine-tuning starts from it.

use crate::metrics::{self, argmax};
use crate::model::{ModelInfo, Scored};
use crate::multi_metrics::MultiMetrics;
use crate::multilabel::FOLDS;
use crate::open_set;
use crate::outputs::{check_writable, write_model};
use crate::precision::Precision;
use crate::prepare::{prepare, Prepared};
use crate::spec::{RunSettings, Strategy, TrainSpec};
use crate::train_report::{Curves, TrainReport};
use crate::Result;
use retrain_head::{HeadConfig, MultiSplit, Split, TrainedHead};
use retrain_zoo::LinearHead;
use std::time::Instant;

/// The linear stage's outcome: the features and the head trained on them.
pub struct LinearFit {
    pub f: Prepared,
    pub head: TrainedHead,
    /// Several labels per photo: each class's threshold on its sigmoid.
    pub thresholds: Option<Vec<f32>>,
    /// Several labels per photo: the head's settings, with the L2 penalty chosen.
    pub multi_head: Option<HeadConfig>,
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
            multi_label: self.thresholds.clone().map(|thresholds| crate::model::MultiLabel { thresholds }),
        }
    }

    /// The linear head's curve, for the model file.
    pub fn curves(&self) -> Curves {
        Curves::new(&self.head.curve, self.head.best_step)
    }

    /// A several-labels head's metrics on `samples` with features `x`: labels at the thresholds.
    pub fn multi_metrics(&self, x: &[f32], samples: &[crate::dataset::Sample]) -> Option<MultiMetrics> {
        let t = self.thresholds.as_ref()?;
        let truth: Vec<bool> = self.targets(samples).iter().map(|&v| v > 0.5).collect();
        let scores: Vec<f32> =
            x.chunks_exact(self.head.dim).flat_map(|r| self.head.logits(r)).map(retrain_head::sigmoid).collect();
        let predicted: Vec<bool> = scores.iter().enumerate().map(|(i, &p)| p >= t[i % t.len()]).collect();
        Some(crate::multi_metrics::compute(&truth, &predicted, &scores, &self.ds.class_names))
    }

    fn predict(&self, x: &[f32]) -> Vec<usize> {
        self.head.predict_proba(x).iter().map(|p| argmax(p)).collect()
    }

    /// The linear head's accuracy on the (unaugmented) training features.
    pub fn train_accuracy(&self) -> f64 {
        if let Some(m) = self.multi_metrics(&self.tx, &self.train) {
            return m.subset_accuracy;
        }
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
            head: self.multi_head.clone().unwrap_or_else(|| spec.recipe.head.clone()),
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
            multi_label: None,
            val_root: spec.data.val_root(),
            val_set: self.val.iter().map(|s| (s.path.clone(), s.labels().collect())).collect(),
        }
    }
}

/// Prepares the features and fits the linear head (from scratch: a randomly initialised
/// head, as torchvision's).
pub fn fit(spec: &TrainSpec, run: &RunSettings) -> Result<LinearFit> {
    let f = prepare(&spec.data, &spec.backbone, &spec.recipe, run)?;
    let t = Instant::now();
    let (dim, k) = (f.backbone.feature_dim(), f.ds.class_names.len());
    let (mut thresholds, mut multi_head) = (None, None);
    let head = if spec.recipe.strategy == Strategy::Scratch {
        if f.ds.multi_label {
            // Fine-tuning from scratch chooses the thresholds when it exports.
            let l2 = spec.recipe.multi_label_l2.unwrap_or(spec.recipe.head.l2);
            multi_head = Some(HeadConfig { l2, ..spec.recipe.head.clone() });
            thresholds = Some(vec![0.5; k]);
        }
        let w = retrain_weights::kaiming("classifier.weight", &[k, dim], spec.data.seed);
        TrainedHead { weight: w.data, bias: vec![0.0; k], dim, best_step: 0, steps_run: 0, curve: Vec::new() }
    } else if f.ds.multi_label {
        let tt = f.targets(&f.train);
        let l2 = match spec.recipe.multi_label_l2 {
            Some(l2) => l2,
            None => crate::multilabel::choose_l2(&f.tx, &tt, dim, k, &spec.recipe.head, spec.data.seed)?,
        };
        let cfg = HeadConfig { l2, ..spec.recipe.head.clone() };
        let vt = f.targets(&f.val);
        let val = (!vt.is_empty()).then_some(MultiSplit { features: &f.vx, targets: &vt });
        let head = retrain_head::train_multi(MultiSplit { features: &f.tx, targets: &tt }, val, dim, k, &cfg)?;
        // Thresholds from heads trained as this one was (as many steps), on folds of the
        // training split: validation photos score the model and never choose its thresholds.
        let steps = if head.best_step > 0 { head.best_step } else { cfg.max_steps };
        let cfg = HeadConfig { max_steps: steps, ..cfg };
        thresholds = Some(crate::multilabel::cv_thresholds(&f.tx, &tt, dim, k, FOLDS, &cfg, spec.data.seed)?);
        multi_head = Some(cfg);
        head
    } else {
        let (ty, vy) = (f.train_labels(), f.val_labels());
        let val = (!vy.is_empty()).then_some(Split { features: &f.vx, labels: &vy });
        retrain_head::train(Split { features: &f.tx, labels: &ty }, val, dim, k, &spec.recipe.head)?
    };
    let mut fit = LinearFit { f, head, thresholds, multi_head };
    fit.f.timings.head = t.elapsed().as_secs_f64();
    Ok(fit)
}

/// Trains the linear head and writes the model: `--strategy linear`.
pub fn train(spec: &TrainSpec, run: &RunSettings) -> Result<TrainReport> {
    check_writable(&spec.out)?;
    let fit = fit(spec, run)?;
    let val_metrics = metrics::compute(&fit.val_labels(), &fit.predict(&fit.vx), &fit.ds.class_names);

    let t = Instant::now();
    let head =
        LinearHead { weight: fit.head.weight.clone(), bias: fit.head.bias.clone(), thresholds: fit.thresholds.clone() };
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
    // The open-set temperature is a softmax's; a several-labels model has none yet.
    let os = match fit.thresholds {
        Some(_) => None,
        None => open_set::fit(&fit.tx, &ty, dim, k, &spec.recipe.head, fit.head.best_step, spec.data.seed, run.quiet)?,
    };
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
    match fit.multi_metrics(&fit.vx, &fit.val) {
        Some(m) => report.set_multi_label(m, fit.thresholds.clone().unwrap_or_default()),
        None => report.set_val_metrics(val_metrics),
    }
    Ok(report)
}
