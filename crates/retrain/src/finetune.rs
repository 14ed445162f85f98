//! `retrain train --strategy finetune|full`: the linear head first (as `linear` trains it),
//! then the upper blocks and the head together. The frozen trunk runs in ONNX Runtime on
//! augmented images; its activations at the cut feed the tail, trained in burn; every epoch is
//! checkpointed into the run directory, and the best epoch's weights go back into the one
//! `.onnx` model.

use crate::dataset::Sample;
use crate::metrics::{self, argmax};
use crate::model::Classifier;
use crate::precision::{self, Precision};
use crate::report::{FinetuneSummary, Report};
use crate::train::{check_writable, fit_linear, warn, write_model, Strategy, TrainOptions};
use crate::{progress_bar, Error, Result};
use rayon::prelude::*;
use retrain_features::{Session, Sessions};
use retrain_pixels::{Augment, Geometry, Limits, Rng};
use retrain_tune::{learning_rate, BatchNormMode, EpochStats, Progress, Tail, Trainer};
use retrain_zoo::{Family, GraphOutputs, LinearHead};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The options of the run checkpointed in `run_dir`, set to resume it.
pub fn resume_options(run_dir: &Path) -> Result<TrainOptions> {
    let p = run_dir.join("run.json");
    let bytes = std::fs::read(&p).map_err(|e| Error::Data {
        path: run_dir.to_path_buf(),
        reason: format!("not a fine-tuning run directory (cannot read run.json: {e})"),
    })?;
    let mut o: TrainOptions = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Data { path: p.clone(), reason: format!("not a retrain run file: {e}") })?;
    o.run_dir = Some(run_dir.to_path_buf());
    o.resume = true;
    Ok(o)
}

/// Blocks trained by default. Where a block is one inverted-residual block, the last 12 of
/// MobileNetV2's (from `features.7`, all of the 14×14 and 7×7 stages) and the last 8 of
/// EfficientNet-Lite's (Lite0: from `_blocks.9`): on flowers 4, 6 and 8 gave lower validation
/// losses and higher accuracies in that order for both, and 10 and 12 lower again for
/// MobileNetV2, whose runs at 8 ended on either side of 0.80 (README table). Where a block is a
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

/// Cut activations of a set of images, one row per image, with their labels.
struct Activations {
    rows: Vec<Vec<f32>>,
    labels: Vec<usize>,
}

/// Mean validation loss and accuracy; `None`s without a validation split.
fn evaluate(trainer: &Trainer, acts: &Activations, shape: &[usize]) -> Result<(Option<f32>, Option<f64>)> {
    if acts.rows.is_empty() {
        return Ok((None, None));
    }
    let (mut loss, mut correct) = (0f64, 0usize);
    for (rows, labels) in acts.rows.chunks(64).zip(acts.labels.chunks(64)) {
        let x: Vec<f32> = rows.concat();
        let dims: Vec<usize> = std::iter::once(rows.len()).chain(shape.iter().copied()).collect();
        let logits = trainer.logits(x, &dims)?;
        let k = logits.len() / rows.len();
        for (l, &y) in logits.chunks_exact(k).zip(labels) {
            let p = retrain_head::softmax(l);
            loss -= (p[y].max(1e-12) as f64).ln();
            correct += (argmax(l) == y) as usize;
        }
    }
    let n = acts.labels.len() as f64;
    Ok((Some((loss / n) as f32), Some(correct as f64 / n)))
}

/// One training batch, decoded and augmented.
struct Batch {
    pixels: Vec<u8>,
    labels: Vec<usize>,
    failed: Vec<(PathBuf, String)>,
}

/// A training batch at the cut: the frozen trunk's activations for the decoded images.
struct CutBatch {
    acts: Vec<f32>,
    labels: Vec<usize>,
    failed: Vec<(PathBuf, String)>,
}

fn run_trunk(session: &mut Session, b: Batch, size: usize) -> Result<CutBatch> {
    let acts = match b.labels.len() {
        0 => Vec::new(),
        n => {
            let outs = session.run(b.pixels, n, size)?;
            outs.into_iter().next().map(|(_, _, acts)| acts).unwrap_or_default()
        }
    };
    Ok(CutBatch { acts, labels: b.labels, failed: b.failed })
}

fn make_batch(
    samples: &[&Sample],
    (g, limits): (Geometry, Limits),
    aug: Augment,
    seed: u64,
    epoch: usize,
    order: &[usize],
) -> Batch {
    let items: Vec<_> = samples
        .par_iter()
        .zip(order)
        .map(|(s, &i)| {
            let bytes = retrain_pixels::read_file(&s.path, limits).map_err(|e| e.reason())?;
            let img = retrain_pixels::decode_for(&bytes, &s.path, g, limits).map_err(|e| e.reason())?;
            let mut rng = Rng::for_item(seed, epoch as u64, i as u64);
            Ok::<_, String>(retrain_pixels::augmented(&img, g, aug, &mut rng))
        })
        .collect();
    let mut b = Batch { pixels: Vec::new(), labels: Vec::new(), failed: Vec::new() };
    for (s, r) in samples.iter().zip(items) {
        match r {
            Ok(px) => {
                b.pixels.extend(px);
                b.labels.push(s.label);
            }
            Err(e) => b.failed.push((s.path.clone(), e)),
        }
    }
    b
}

pub fn finetune(opts: &TrainOptions) -> Result<Report> {
    if let Some(stage) = opts.cut {
        return Err(Error::Finetune {
            model: opts.model.clone(),
            reason: format!(
                "--cut {stage} trains a linear head on the cut features; fine-tuning needs the whole backbone"
            ),
        });
    }
    check_writable(&opts.out)?;
    let run_dir = opts.run_dir();
    let fit = fit_linear(opts)?;
    let t_tune = Instant::now();
    let (backbone, train, val) = (&fit.backbone, &fit.train, &fit.val);
    let name = backbone.info.name;
    let not_tunable = |reason: String| Error::Finetune { model: name.to_string(), reason };
    let linear = LinearHead { weight: fit.head.weight.clone(), bias: fit.head.bias.clone() };
    let scratch = opts.strategy == Strategy::Scratch;
    // From scratch there are no statistics to keep: BatchNorm learns them, in training mode.
    let mut tune = opts.tune.clone();
    if scratch {
        tune.batchnorm = BatchNormMode::Train;
    }
    let batchnorm_nodes = tune.batchnorm == BatchNormMode::Train;
    let outputs = GraphOutputs { features: true, head: Some(linear), batchnorm_nodes, ..Default::default() };
    let built = retrain_zoo::build_with_blocks(backbone.info, &backbone.state, &outputs, &fit.model_info().metadata())
        .map_err(|source| Error::Zoo { path: backbone.weights_path.clone(), source })?;
    let blocks = &backbone.info.blocks;
    if blocks.is_empty() || built.block_inputs.len() != blocks.len() {
        return Err(not_tunable("it has no known block boundaries (imported models train a linear head only)".into()));
    }
    let unfreeze = match opts.strategy {
        Strategy::Full | Strategy::Scratch => blocks.len(),
        _ => opts.unfreeze.unwrap_or_else(|| default_unfreeze(backbone.info.family, blocks.len())),
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
    let mut model = built.model;
    let graph = model.graph.as_ref().expect("built models have a graph");
    let mut trainer = Trainer::new(tail, graph, tune)?;
    // The trunk's BatchNorms are frozen: folded, the trunk is the graph `linear` runs.
    let mut folded = retrain_onnx::truncate(&model, &cut);
    retrain_onnx::fold_batchnorm(&mut folded);
    let trunk = retrain_onnx::encode(&folded);
    let mut session = Session::new(&trunk, name, opts.threads)?;
    let g = backbone.geometry();
    let size = g.crop as usize;
    let probe = session.run(vec![0u8; size * size * 3], 1, size)?;
    // Per-image shape of the cut activations: [C, H, W], or [D] between linear layers.
    let shape: Vec<usize> = match probe.first().map(|(_, s, _)| s.as_slice()) {
        Some([1, rest @ ..]) if rest.len() == 3 || rest.len() == 1 => rest.to_vec(),
        other => return Err(not_tunable(format!("the cut value has shape {other:?}"))),
    };

    // Resume, or start a new run directory.
    let mut progress = Progress::default();
    trainer.start_average(train.len().div_ceil(opts.tune.batch.max(1)));
    let mut best: Vec<Vec<f32>> = trainer.values();
    if opts.resume && run_dir.join("state.json").exists() {
        progress = trainer.restore(&run_dir)?;
        if let Some(b) = trainer.read_best(&run_dir)? {
            best = b;
        }
    } else {
        std::fs::create_dir_all(&run_dir).map_err(|source| Error::Write { path: run_dir.clone(), source })?;
        Trainer::clear_checkpoint(&run_dir);
        let p = run_dir.join("run.json");
        crate::train::write_file(&p, &serde_json::to_vec_pretty(opts).expect("options serialise"))?;
    }
    let cfg = trainer.cfg.clone();

    // The trunk is frozen and validation uses the deterministic preprocessing: its
    // activations are computed once.
    let bar = progress_bar(val.len() as u64, "val trunk", opts.quiet);
    let val_files: Vec<PathBuf> = val.iter().map(|s| s.path.clone()).collect();
    let mut sessions = Sessions::new(opts.threads, |n| Session::new(&trunk, name, n)).with_whole(session);
    let extracted =
        retrain_features::extract(&mut sessions, &cut, &val_files, g, opts.limits(), None, opts.batch, &bar)?;
    session = sessions.into_whole().expect("session kept");
    bar.finish_and_clear();
    let mut val_acts = Activations { rows: Vec::new(), labels: Vec::new() };
    for (s, r) in val.iter().zip(extracted.features) {
        if let Ok(row) = r {
            val_acts.rows.push(row);
            val_acts.labels.push(s.label);
        }
    }
    let has_val = !val_acts.rows.is_empty();
    if progress.curve.is_empty() {
        let (vl, va) = evaluate(&trainer, &val_acts, &shape)?;
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
        if !opts.quiet {
            eprintln!(
                "epoch 0 ({}): val loss {:.4} accuracy {:.4}; training {} block(s) from {} ({} parameters)",
                if scratch { "random initialisation" } else { "linear head" },
                vl.unwrap_or(f32::NAN),
                va.unwrap_or(f64::NAN),
                unfreeze,
                first_trained,
                trainer.trainable_values()
            );
        }
    }

    let train_refs: Vec<&Sample> = train.iter().collect();
    let steps_per_epoch = train.len().div_ceil(cfg.batch.max(1));
    let total_steps = cfg.epochs * steps_per_epoch;
    let warmup = ((cfg.warmup_epochs * steps_per_epoch as f64).ceil() as usize).min(total_steps);
    let stop = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    let mut failed_once = std::collections::BTreeSet::new();
    while !progress.finished && progress.epoch < cfg.epochs {
        let epoch = progress.epoch + 1;
        let order = Rng::for_item(cfg.seed, epoch as u64, u64::MAX).permutation(train.len());
        let chunks: Vec<&[usize]> = order.chunks(cfg.batch.max(1)).collect();
        let bar = progress_bar(train.len() as u64, &format!("epoch {epoch}/{}", cfg.epochs), opts.quiet);
        bar.set_position((progress.batch * cfg.batch).min(train.len()) as u64);
        bar.reset_eta();
        let t_epoch = Instant::now();
        let seen_before = progress.train_seen;
        let mut interrupted = false;
        // Decoding and the frozen trunk run one batch ahead, in their own thread, while this one
        // trains the tail: the two overlap where either leaves a core idle.
        let (tx, rx) = crossbeam_channel::bounded::<Result<CutBatch>>(1);
        let skip = progress.batch;
        let trunk_session = &mut session;
        std::thread::scope(|scope| -> Result<()> {
            let chunks = &chunks;
            let train_refs = &train_refs;
            scope.spawn(move || {
                for idx in chunks.iter().skip(skip) {
                    let samples: Vec<&Sample> = idx.iter().map(|&i| train_refs[i]).collect();
                    let b = run_trunk(
                        trunk_session,
                        make_batch(&samples, (g, opts.limits()), opts.augment, cfg.seed, epoch, idx),
                        size,
                    );
                    let failed = b.is_err();
                    if tx.send(b).is_err() || failed {
                        break;
                    }
                }
            });
            // Owned here: dropping it when the loop stops early unblocks the producer.
            let rx = rx;
            for b in rx.iter() {
                let b = b?;
                for (p, e) in &b.failed {
                    if failed_once.insert(p.clone()) {
                        warn(opts.quiet, &format!("skipped {}: {e}", p.display()));
                    }
                }
                let n = b.labels.len();
                if n > 0 {
                    let acts = b.acts;
                    let lr_h = learning_rate(cfg.lr, progress.step, warmup, total_steps);
                    let lr_b = learning_rate(cfg.body_lr, progress.step, warmup, total_steps);
                    let dims: Vec<usize> = std::iter::once(n).chain(shape.iter().copied()).collect();
                    let (loss, correct) = trainer.step(progress.step as u64, acts, &dims, &b.labels, lr_h, lr_b)?;
                    progress.train_loss_sum += loss as f64 * n as f64;
                    progress.train_correct += correct;
                    progress.train_seen += n;
                }
                progress.step += 1;
                progress.batch += 1;
                bar.inc((b.labels.len() + b.failed.len()) as u64);
                if stop() {
                    interrupted = true;
                    break;
                }
            }
            Ok(())
        })?;
        progress.epoch_seconds += t_epoch.elapsed().as_secs_f64();
        if interrupted {
            bar.abandon();
            trainer.save(&run_dir, &progress, Some(&best))?;
            return Err(Error::Interrupted { run_dir });
        }
        bar.finish_and_clear();
        let (vl, va) = evaluate(&trainer, &val_acts, &shape)?;
        let seen = progress.train_seen.max(1) as f64;
        let stats = EpochStats {
            epoch,
            train_loss: Some((progress.train_loss_sum / seen) as f32),
            train_accuracy: Some(progress.train_correct as f64 / seen),
            val_loss: vl,
            val_accuracy: va,
            learning_rate: learning_rate(cfg.lr, progress.step.saturating_sub(1), warmup, total_steps),
            seconds: progress.epoch_seconds,
            images_per_second: (progress.train_seen - seen_before) as f64 / t_epoch.elapsed().as_secs_f64().max(1e-9),
        };
        // Without a validation split the last epoch counts as the best.
        let improved = match (vl, progress.best_val_loss) {
            (Some(v), Some(b)) => v < b,
            _ => true,
        };
        if improved {
            progress.best_val_loss = vl;
            progress.best_epoch = epoch;
            best = trainer.answering_values();
        }
        if !opts.quiet {
            eprintln!(
                "epoch {epoch}/{}: train loss {:.4} accuracy {:.4} (augmented) | val loss {:.4} accuracy {:.4}{} | {:.1}s",
                cfg.epochs,
                stats.train_loss.unwrap_or(f32::NAN),
                stats.train_accuracy.unwrap_or(f64::NAN),
                vl.unwrap_or(f32::NAN),
                va.unwrap_or(f64::NAN),
                if improved { " (best)" } else { "" },
                stats.seconds
            );
        }
        progress.curve.push(stats);
        progress.epoch = epoch;
        progress.batch = 0;
        progress.train_loss_sum = 0.0;
        progress.train_correct = 0;
        progress.train_seen = 0;
        progress.epoch_seconds = 0.0;
        if epoch >= cfg.epochs || (has_val && epoch - progress.best_epoch >= cfg.patience) {
            progress.finished = true;
        }
        trainer.save(&run_dir, &progress, improved.then_some(best.as_slice()))?;
        if stop() && !progress.finished {
            return Err(Error::Interrupted { run_dir });
        }
    }
    let finetune_seconds = t_tune.elapsed().as_secs_f64();

    // The best epoch's weights into the model the linear stage built.
    let t = Instant::now();
    trainer.tail.write_values(&best, model.graph.as_mut().expect("graph"))?;
    retrain_onnx::fold_batchnorm(&mut model);
    model.metadata_props.push(retrain_onnx::proto::StringStringEntryProto {
        key: "retrain.training".into(),
        value: format!(
            "{} ({} block(s) from {}), best epoch {} of {}",
            match opts.strategy {
                Strategy::Full => "full fine-tuning",
                Strategy::Scratch => "trained from scratch",
                _ => "fine-tuning",
            },
            unfreeze,
            first_trained,
            progress.best_epoch,
            progress.epoch
        ),
    });
    fit.curves().with_finetune(&progress.curve, progress.best_epoch).attach(&mut model);
    let mut calibration_seconds = 0.0;
    if opts.precision == Precision::Int8 {
        let t = Instant::now();
        let head = precision::head_input(&model);
        let exclude: Vec<&str> = head.iter().map(String::as_str).collect();
        let files = precision::calibration_files(train);
        let ranges = precision::calibrate(&model, &exclude, &files, g, opts.threads)?;
        model = precision::quantized(&model, &ranges);
        calibration_seconds = t.elapsed().as_secs_f64();
    }
    write_model(&model, &opts.out)?;
    let export_seconds = t.elapsed().as_secs_f64();

    // Validation metrics from the written model itself, as `retrain eval` computes them.
    let mut classifier = Classifier::open(&opts.out, opts.threads)?;
    let bar = progress_bar(val_files.len() as u64, "val", opts.quiet);
    let probs = classifier.classify(&val_files, &bar)?;
    bar.finish_and_clear();
    let (mut truth, mut pred) = (Vec::new(), Vec::new());
    for (s, p) in val.iter().zip(probs) {
        if let Ok(p) = p {
            truth.push(s.label);
            pred.push(argmax(&p));
        }
    }
    let val_metrics = metrics::compute(&truth, &pred, &fit.ds.class_names);
    let best_stats = &progress.curve[progress.curve.iter().position(|c| c.epoch == progress.best_epoch).unwrap_or(0)];
    let mut report = fit.report(opts);
    report.precision = opts.precision;
    report.val_images = truth.len();
    // Epoch 0 is the linear head: its accuracy on the (unaugmented) training features.
    report.train_accuracy = best_stats.train_accuracy.unwrap_or_else(|| fit.train_accuracy());
    report.val_loss = best_stats.val_loss;
    report.timings.finetune = finetune_seconds;
    report.timings.calibration = calibration_seconds;
    report.timings.export = export_seconds;
    report.timings.total = fit.started.elapsed().as_secs_f64();
    report.finetune = Some(FinetuneSummary {
        strategy: opts.strategy,
        first_trained_block: first_trained,
        unfrozen_blocks: unfreeze,
        trainable_parameters: trainer.trainable_values(),
        augment: opts.augment,
        config: cfg,
        best_epoch: progress.best_epoch,
        epochs_run: progress.epoch,
        run_dir,
        curve: progress.curve.clone(),
    });
    report.set_val_metrics(val_metrics);
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
