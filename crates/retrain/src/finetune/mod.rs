//! `retrain train --strategy finetune|full|scratch`: the linear head first (as `linear` trains
//! it), then the upper blocks and the head together. The frozen trunk runs in ONNX Runtime on
//! augmented images ([`trunk`]); its activations at the cut feed the tail, trained in burn
//! ([`epochs`]); every epoch is checkpointed into the run directory ([`run_dir`]), and the best
//! epoch's weights go back into the one `.onnx` model ([`export`]).

mod epochs;
mod export;
mod run_dir;
mod trunk;

pub use epochs::EarlyStop;

use crate::linear::{self, LinearFit};
use crate::outputs::check_writable;
use crate::spec::{RunSettings, Strategy, TrainSpec};
use crate::train_report::{FinetuneSummary, TrainReport};
use crate::{Error, Result};
use retrain_features::{Session, Sessions};
use retrain_onnx::ModelProto;
use retrain_tune::{BatchNormMode, EpochStats, Tail, Trainer};
use retrain_zoo::{Family, GraphOutputs, LinearHead};
use std::time::Instant;

/// Blocks trained by default: the last 12 of MobileNetV2's inverted-residual blocks (from
/// `features.7`, all of the 14×14 and 7×7 stages), the last 8 of EfficientNet-Lite's (Lite0:
/// from `_blocks.9`), as measured best on flowers (docs/benchmarks.md); where a block is a
/// whole stage (ResNet layers, EfficientNet-B stages) or for other families, about the last
/// fifth (ResNets: layer4; EfficientNet-B0: the last two stages).
pub fn default_unfreeze(family: Family, blocks: usize) -> usize {
    let n = match family {
        Family::MobileNetV2 => 12,
        Family::EfficientNetLite { .. } => 8,
        _ => (blocks as f64 * 0.2).round() as usize,
    };
    n.clamp(1, blocks.max(1))
}

/// The backbone split for fine-tuning: the whole graph (backbone and head), the frozen trunk
/// up to the cut in ONNX Runtime, the tail after it in burn.
struct Split {
    model: ModelProto,
    trainer: Trainer,
    trunk: Vec<u8>,
    session: Session,
    cut: String,
    /// Per-image shape of the cut activations: [C, H, W], or [D] between linear layers.
    shape: Vec<usize>,
    unfreeze: usize,
    first_trained: String,
}

impl Split {
    fn new(fit: &LinearFit, spec: &TrainSpec, run: &RunSettings) -> Result<Self> {
        let backbone = &fit.backbone;
        let name = backbone.info.name;
        let not_tunable = |reason: String| Error::Finetune { model: name.to_string(), reason };
        let linear = LinearHead {
            weight: fit.head.weight.clone(),
            bias: fit.head.bias.clone(),
            thresholds: fit.thresholds.clone(),
        };
        let strategy = spec.recipe.strategy;
        let scratch = strategy == Strategy::Scratch;
        // From scratch there are no statistics to keep: BatchNorm learns them, in training mode.
        let mut tune = spec.recipe.tune.clone();
        if scratch {
            tune.batchnorm = BatchNormMode::Train;
        }
        let batchnorm_nodes = tune.batchnorm == BatchNormMode::Train;
        let outputs = GraphOutputs { features: true, head: Some(linear), batchnorm_nodes, ..Default::default() };
        let built =
            retrain_zoo::build_with_blocks(backbone.info, &backbone.state, &outputs, &fit.model_info().metadata())
                .map_err(|source| Error::Zoo { path: backbone.weights_path.clone(), source })?;
        let blocks = &backbone.info.blocks;
        if blocks.is_empty() || built.block_inputs.len() != blocks.len() {
            return Err(not_tunable(
                "it has no known block boundaries (imported models train a linear head only)".into(),
            ));
        }
        let unfreeze = match strategy {
            Strategy::Full | Strategy::Scratch => blocks.len(),
            _ => spec.recipe.unfreeze.unwrap_or_else(|| default_unfreeze(backbone.info.family, blocks.len())),
        };
        if unfreeze == 0 || unfreeze > blocks.len() {
            return Err(not_tunable(format!(
                "--unfreeze must be 1..={} (its blocks: {})",
                blocks.len(),
                blocks.join(", ")
            )));
        }
        let first = blocks.len() - unfreeze;
        // From scratch the stem learns too: the cut is the normalised image.
        let cut = match scratch {
            true => built.input.clone(),
            false => built.block_inputs[first]
                .clone()
                .ok_or_else(|| not_tunable(format!("block {} has no cut point", blocks[first])))?,
        };
        let first_trained = if scratch { "the stem".to_string() } else { blocks[first].clone() };
        let tail = Tail::from_model(&built.model, &cut, "logits").map_err(|e| not_tunable(e.to_string()))?;
        let model = built.model;
        let graph = model.graph.as_ref().expect("built models have a graph");
        let trainer = Trainer::new(tail, graph, tune)?;
        // The trunk's BatchNorms are frozen: folded, the trunk is the graph `linear` runs.
        let mut folded = retrain_onnx::truncate(&model, &cut);
        retrain_onnx::fold_batchnorm(&mut folded);
        let trunk = retrain_onnx::encode(&folded);
        let mut session = Session::new(&trunk, name, run.threads)?;
        let size = backbone.geometry().crop as usize;
        let probe = session.run(vec![0u8; size * size * 3], 1, size)?;
        let shape: Vec<usize> = match probe.first().map(|(_, s, _)| s.as_slice()) {
            Some([1, rest @ ..]) if rest.len() == 3 || rest.len() == 1 => rest.to_vec(),
            other => return Err(not_tunable(format!("the cut value has shape {other:?}"))),
        };
        Ok(Self { model, trainer, trunk, session, cut, shape, unfreeze, first_trained })
    }
}

pub fn finetune(spec: &TrainSpec, run: &RunSettings) -> Result<TrainReport> {
    if let Some(stage) = spec.backbone.cut {
        return Err(Error::Finetune {
            model: spec.backbone.name.clone(),
            reason: format!(
                "--cut {stage} trains a linear head on the cut features; fine-tuning needs the whole backbone"
            ),
        });
    }
    check_writable(&spec.out)?;
    let run_dir = run.run_dir(&spec.out);
    let fit = linear::fit(spec, run)?;
    // Photos with several labels: binary cross-entropy, positives weighed as the linear head's.
    let positive_weight = fit
        .multi_head
        .as_ref()
        .map(|h| retrain_head::positive_weights(&fit.targets(&fit.train), fit.ds.class_names.len(), h.balanced));
    let t_tune = Instant::now();
    let (train, val) = (&fit.train, &fit.val);
    let strategy = spec.recipe.strategy;
    let Split { model, mut trainer, trunk, session, cut, shape, unfreeze, first_trained } =
        Split::new(&fit, spec, run)?;
    let (mut progress, mut best) = run_dir::start_or_resume(&mut trainer, spec, run, &run_dir, train.len())?;
    let cfg = trainer.cfg.clone();

    let g = fit.backbone.geometry();
    let limits = spec.data.limits();
    let name = fit.backbone.info.name;
    let mut sessions = Sessions::new(run.threads, |n| Session::new(&trunk, name, n)).with_whole(session);
    let val_acts = trunk::val_activations(&mut sessions, &cut, val, (g, limits), spec.recipe.batch, run.quiet)?;
    let mut session = sessions.into_whole().expect("session kept");
    if progress.curve.is_empty() {
        let (vl, va) = trunk::evaluate(&trainer, &val_acts, &shape, positive_weight.as_deref())?;
        progress.best_val_loss = vl;
        progress.curve.push(EpochStats {
            epoch: 0,
            train_loss: None,
            train_accuracy: None,
            val_loss: vl,
            val_accuracy: va,
            learning_rate: 0.0,
            seconds: 0.0,
            images_per_second: 0.0,
        });
        if !run.quiet {
            eprintln!(
                "epoch 0 ({}): val loss {:.4} accuracy {:.4}; training {} block(s) from {} ({} parameters)",
                if strategy == Strategy::Scratch { "random initialisation" } else { "linear head" },
                vl.unwrap_or(f32::NAN),
                va.unwrap_or(f64::NAN),
                unfreeze,
                first_trained,
                trainer.trainable_values()
            );
        }
    }

    let train_refs: Vec<&crate::dataset::Sample> = train.iter().collect();
    let feed = trunk::Feed { samples: &train_refs, geometry: g, limits, augment: spec.recipe.augment, seed: cfg.seed };
    epochs::Epochs {
        trainer: &mut trainer,
        session: &mut session,
        feed,
        val: &val_acts,
        shape: &shape,
        run_dir: &run_dir,
        run,
        positive_weight: positive_weight.as_deref(),
    }
    .run(&mut progress, &mut best)?;
    let finetune_seconds = t_tune.elapsed().as_secs_f64();

    let training = format!(
        "{} ({} block(s) from {}), best epoch {} of {}",
        strategy.described(),
        unfreeze,
        first_trained,
        progress.best_epoch,
        progress.epoch
    );
    let curves = fit.curves().with_finetune(&progress.curve, progress.best_epoch);
    let head_steps = if fit.head.best_step > 0 { fit.head.best_step } else { spec.recipe.head.max_steps };
    let classes = fit.ds.class_names.len();
    let exported = export::export(
        model,
        &trainer,
        &best,
        training,
        curves,
        train,
        g,
        classes,
        head_steps,
        fit.multi_head.as_ref(),
        spec,
        run,
    )?;
    let export::Rescored { metrics: val_metrics, multi, images: val_images, open_set: open } =
        export::rescore(spec, run, val, &fit.ds.class_names)?;

    let best_stats = &progress.curve[progress.curve.iter().position(|c| c.epoch == progress.best_epoch).unwrap_or(0)];
    let mut report = fit.base_report(spec);
    report.precision = spec.backbone.precision;
    report.val_images = val_images;
    // Epoch 0 is the linear head: its accuracy on the (unaugmented) training features.
    report.train_accuracy = best_stats.train_accuracy.unwrap_or_else(|| fit.train_accuracy());
    report.val_loss = best_stats.val_loss;
    report.timings.finetune = finetune_seconds;
    report.timings.calibration = exported.calibration;
    report.timings.export = exported.seconds;
    report.timings.open_set = exported.open_seconds;
    if let Some((summary, calibration)) = open {
        report.open_set = Some(summary);
        report.calibration = Some(calibration);
    }
    report.timings.total = fit.started.elapsed().as_secs_f64();
    report.finetune = Some(FinetuneSummary {
        strategy,
        first_trained_block: first_trained,
        unfrozen_blocks: unfreeze,
        trainable_parameters: trainer.trainable_values(),
        augment: spec.recipe.augment,
        config: cfg,
        best_epoch: progress.best_epoch,
        epochs_run: progress.epoch,
        run_dir,
        curve: progress.curve.clone(),
    });
    match (multi, exported.thresholds) {
        (Some(m), Some(t)) => report.set_multi_label(m, t),
        _ => report.set_val_metrics(val_metrics),
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_unfreeze_counts_inverted_residual_blocks_and_stages_differently() {
        let blocks = |name: &str| retrain_zoo::find(name).unwrap().blocks.clone();
        let default = |name: &str| {
            let b = retrain_zoo::find(name).unwrap();
            let n = default_unfreeze(b.family, b.blocks.len());
            blocks(name)[b.blocks.len() - n].clone()
        };
        assert_eq!(default("mobilenet_v2"), "features.7");
        assert_eq!(default("efficientnet_lite0"), "_blocks.9");
        assert_eq!(default("resnet50"), "layer4");
        assert_eq!(default("efficientnet_b0"), "features.7");
        assert_eq!(default_unfreeze(Family::MobileNetV2, 5), 5, "never more than there are");
    }
}
