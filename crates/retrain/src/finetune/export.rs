//! The fine-tuned model file: the best epoch's weights written back into the graph the linear
//! stage built, BatchNorm folded, the curves attached, int8 quantised when asked; then scored
//! on the validation photos from the written file itself, as `retrain eval` would.

use crate::dataset::Sample;
use crate::metrics::{self, argmax, Metrics};
use crate::model::Classifier;
use crate::open_set::{self, Calibration, OpenSetSummary};
use crate::outputs::write_model;
use crate::precision::{self, Precision};
use crate::spec::{RunSettings, TrainSpec};
use crate::train_report::Curves;
use crate::{progress_bar, Result};
use retrain_onnx::ModelProto;
use retrain_pixels::Geometry;
use retrain_tune::Trainer;
use std::path::PathBuf;
use std::time::Instant;

/// Seconds spent exporting, and calibrating int8 and fitting the open set within it.
pub(super) struct Exported {
    pub seconds: f64,
    pub calibration: f64,
    pub open_seconds: f64,
    /// Several labels: the thresholds tuned on the fine-tuned features.
    pub thresholds: Option<Vec<f32>>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn export(
    mut model: ModelProto,
    trainer: &Trainer,
    best: &[Vec<f32>],
    training: String,
    curves: Curves,
    train: &[Sample],
    g: Geometry,
    classes: usize,
    head_steps: usize,
    multi_head: Option<&retrain_head::HeadConfig>,
    spec: &TrainSpec,
    run: &RunSettings,
) -> Result<Exported> {
    let t = Instant::now();
    trainer.tail.write_values(best, model.graph.as_mut().expect("graph"))?;
    retrain_onnx::fold_batchnorm(&mut model);
    model
        .metadata_props
        .push(retrain_onnx::proto::StringStringEntryProto { key: "retrain.training".into(), value: training });
    curves.attach(&mut model);
    let mut calibration = 0.0;
    if spec.backbone.precision == Precision::Int8 {
        let t = Instant::now();
        let head = precision::head_input(&model);
        let exclude: Vec<&str> = head.iter().map(String::as_str).collect();
        let files = precision::calibration_files(train);
        let ranges = precision::calibrate(&model, &exclude, &files, g, run.threads)?;
        model = precision::quantized(&model, &ranges);
        calibration = t.elapsed().as_secs_f64();
    }
    // The open set, or several labels' thresholds, on the model's own features as it now
    // computes them.
    let t_open = Instant::now();
    let (x, kept) = open_set::model_features(&model, train, g, spec.data.limits(), run)?;
    let dim = x.len() / kept.len().max(1);
    let mut thresholds = None;
    match multi_head {
        Some(cfg) => {
            // As the linear stage chose them, on heads trained on folds of the training split.
            let rows: Vec<Sample> = kept.iter().map(|&i| train[i].clone()).collect();
            let on = super::trunk::on_matrix(&rows.iter().map(|s| s.labels().collect()).collect::<Vec<_>>(), classes);
            let cfg = retrain_head::HeadConfig { max_steps: head_steps, ..cfg.clone() };
            let t = crate::multilabel::cv_thresholds(
                &x,
                &on,
                dim,
                classes,
                crate::multilabel::FOLDS,
                &cfg,
                spec.data.seed,
            )?;
            let ml = crate::model::MultiLabel { thresholds: t };
            if !ml.write_into(&mut model) {
                return Err(crate::Error::Finetune {
                    model: spec.backbone.name.clone(),
                    reason: "the graph lost its `labels` output".into(),
                });
            }
            thresholds = Some(ml.thresholds);
        }
        None => {
            let y: Vec<usize> = kept.iter().map(|&i| train[i].label).collect();
            let os = open_set::fit(&x, &y, dim, classes, &spec.recipe.head, head_steps, spec.data.seed, run.quiet)?;
            if let Some(os) = &os {
                os.attach(&mut model)?;
            }
        }
    }
    let open_seconds = t_open.elapsed().as_secs_f64();
    write_model(&model, &spec.out)?;
    Ok(Exported { seconds: t.elapsed().as_secs_f64(), calibration, open_seconds, thresholds })
}

/// The written model on the validation photos.
pub(super) struct Rescored {
    pub metrics: Metrics,
    /// A several-labels model's metrics (then `metrics` is its first labels' argmax).
    pub multi: Option<crate::multi_metrics::MultiMetrics>,
    /// Photos it scored.
    pub images: usize,
    pub open_set: Option<(OpenSetSummary, Calibration)>,
}

/// Validation metrics of the written model, and its open-set and calibration figures.
pub(super) fn rescore(spec: &TrainSpec, run: &RunSettings, val: &[Sample], class_names: &[String]) -> Result<Rescored> {
    let mut classifier = Classifier::open(&spec.out, run.threads)?;
    let files: Vec<PathBuf> = val.iter().map(|s| s.path.clone()).collect();
    let bar = progress_bar(files.len() as u64, "val", run.quiet);
    let probs = classifier.classify(&files, &bar)?;
    bar.finish_and_clear();
    let (mut truth, mut pred, mut scored) = (Vec::new(), Vec::new(), Vec::new());
    let (mut on, mut decided, mut sigmoids) = (Vec::new(), Vec::new(), Vec::new());
    for (s, p) in val.iter().zip(probs) {
        if let Ok(p) = p {
            if let Some(has) = classifier.info.labels_of(&p.probabilities) {
                on.extend((0..class_names.len()).map(|c| s.labels().any(|l| l == c)));
                decided.extend((0..class_names.len()).map(|c| has.contains(&c)));
                sigmoids.extend_from_slice(&p.probabilities);
            }
            truth.push(s.label);
            pred.push(argmax(&p.probabilities));
            scored.push((p, s.label));
        }
    }
    let open = classifier.info.open_set.as_ref().map(|info| open_set::summarise(info, &scored));
    let multi = classifier
        .info
        .multi_label
        .is_some()
        .then(|| crate::multi_metrics::compute(&on, &decided, &sigmoids, class_names));
    Ok(Rescored { metrics: metrics::compute(&truth, &pred, class_names), multi, images: truth.len(), open_set: open })
}
