//! The epoch loop: the tail trained on the trunk's batches, evaluated after each epoch, the
//! best epoch kept, early stopping, a checkpoint per epoch and on Ctrl-C.

use super::trunk::{evaluate, on_matrix, Activations, CutBatch, Feed};
use crate::outputs::warn;
use crate::spec::RunSettings;
use crate::{progress_bar, Error, Result};
use retrain_features::Session;
use retrain_pixels::Rng;
use retrain_tune::{learning_rate, EpochStats, Progress, Targets, Trainer};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Keeps the epoch with the lowest validation loss and says when `patience` epochs have
/// passed without a lower one. Without a validation split every epoch counts as the best and
/// nothing stops the run early.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStop {
    pub patience: usize,
    pub best_loss: Option<f32>,
    pub best_epoch: usize,
}

impl EarlyStop {
    /// Records `epoch`'s validation loss; true when it is the best so far.
    pub fn observe(&mut self, epoch: usize, val_loss: Option<f32>) -> bool {
        let improved = match (val_loss, self.best_loss) {
            (Some(v), Some(b)) => v < b,
            _ => true,
        };
        if improved {
            self.best_loss = val_loss;
            self.best_epoch = epoch;
        }
        improved
    }

    /// Whether the run stops after `epoch`.
    pub fn should_stop(&self, epoch: usize, has_val: bool) -> bool {
        has_val && epoch - self.best_epoch >= self.patience
    }
}

/// What the loop trains and on what.
pub(super) struct Epochs<'a> {
    pub trainer: &'a mut Trainer,
    pub session: &'a mut Session,
    pub feed: Feed<'a>,
    pub val: &'a Activations,
    /// Per-image shape of the cut activations.
    pub shape: &'a [usize],
    pub run_dir: &'a Path,
    pub run: &'a RunSettings,
    /// Photos with several labels: each class's weight on its positives (binary cross-entropy).
    pub positive_weight: Option<&'a [f32]>,
}

impl Epochs<'_> {
    /// Runs the epochs `progress` has left, keeping the best epoch's weights in `best`.
    pub fn run(&mut self, progress: &mut Progress, best: &mut Vec<Vec<f32>>) -> Result<()> {
        let cfg = self.trainer.cfg.clone();
        let n = self.feed.samples.len();
        let steps_per_epoch = n.div_ceil(cfg.batch.max(1));
        let total_steps = cfg.epochs * steps_per_epoch;
        let warmup = ((cfg.warmup_epochs * steps_per_epoch as f64).ceil() as usize).min(total_steps);
        let stop = || self.run.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        let quiet = self.run.quiet;
        let has_val = !self.val.rows.is_empty();
        let mut failed_once = std::collections::BTreeSet::new();
        while !progress.finished && progress.epoch < cfg.epochs {
            let epoch = progress.epoch + 1;
            let order = Rng::for_item(cfg.seed, epoch as u64, u64::MAX).permutation(n);
            let chunks: Vec<&[usize]> = order.chunks(cfg.batch.max(1)).collect();
            let bar = progress_bar(n as u64, &format!("epoch {epoch}/{}", cfg.epochs), quiet);
            bar.set_position((progress.batch * cfg.batch).min(n) as u64);
            bar.reset_eta();
            let t_epoch = Instant::now();
            let seen_before = progress.train_seen;
            let mut interrupted = false;
            // Decoding and the frozen trunk run one batch ahead, in their own thread, while this
            // one trains the tail: the two overlap where either leaves a core idle.
            let (tx, rx) = crossbeam_channel::bounded::<Result<CutBatch>>(1);
            let skip = progress.batch;
            let (session, feed, trainer) = (&mut *self.session, &self.feed, &mut *self.trainer);
            std::thread::scope(|scope| -> Result<()> {
                let chunks = &chunks;
                scope.spawn(move || {
                    for idx in chunks.iter().skip(skip) {
                        let b = feed.batch(session, epoch, idx);
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
                            warn(quiet, &format!("skipped {}: {e}", p.display()));
                        }
                    }
                    let n = b.labels.len();
                    if n > 0 {
                        let lr_h = learning_rate(cfg.lr, progress.step, warmup, total_steps);
                        let lr_b = learning_rate(cfg.body_lr, progress.step, warmup, total_steps);
                        let dims: Vec<usize> = std::iter::once(n).chain(self.shape.iter().copied()).collect();
                        let on = self.positive_weight.map(|w| on_matrix(&b.sets, w.len()));
                        let targets = match (self.positive_weight, &on) {
                            (Some(w), Some(on)) => Targets::Sets { on, positive_weight: w },
                            _ => Targets::Classes(&b.labels),
                        };
                        let (loss, correct) = trainer.step(progress.step as u64, b.acts, &dims, targets, lr_h, lr_b)?;
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
                self.trainer.save(self.run_dir, progress, Some(best))?;
                return Err(Error::Interrupted { run_dir: self.run_dir.to_path_buf() });
            }
            bar.finish_and_clear();
            let (vl, va) = evaluate(self.trainer, self.val, self.shape, self.positive_weight)?;
            let seen = progress.train_seen.max(1) as f64;
            let stats = EpochStats {
                epoch,
                train_loss: Some((progress.train_loss_sum / seen) as f32),
                train_accuracy: Some(progress.train_correct as f64 / seen),
                val_loss: vl,
                val_accuracy: va,
                learning_rate: learning_rate(cfg.lr, progress.step.saturating_sub(1), warmup, total_steps),
                seconds: progress.epoch_seconds,
                images_per_second: (progress.train_seen - seen_before) as f64
                    / t_epoch.elapsed().as_secs_f64().max(1e-9),
            };
            let mut early = EarlyStop {
                patience: cfg.patience,
                best_loss: progress.best_val_loss,
                best_epoch: progress.best_epoch,
            };
            let improved = early.observe(epoch, vl);
            (progress.best_val_loss, progress.best_epoch) = (early.best_loss, early.best_epoch);
            if improved {
                *best = self.trainer.answering_values();
            }
            if !quiet {
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
            if epoch >= cfg.epochs || early.should_stop(epoch, has_val) {
                progress.finished = true;
            }
            self.trainer.save(self.run_dir, progress, improved.then_some(best.as_slice()))?;
            if stop() && !progress.finished {
                return Err(Error::Interrupted { run_dir: self.run_dir.to_path_buf() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::EarlyStop;

    fn run(losses: &[Option<f32>], patience: usize) -> (usize, usize) {
        let mut e = EarlyStop { patience, best_loss: losses[0], best_epoch: 0 };
        for (epoch, &l) in losses.iter().enumerate().skip(1) {
            e.observe(epoch, l);
            if e.should_stop(epoch, l.is_some()) {
                return (e.best_epoch, epoch);
            }
        }
        (e.best_epoch, losses.len() - 1)
    }

    #[test]
    fn keeps_the_lowest_loss_and_stops_after_patience_epochs_without_one() {
        let l = |v: &[f32]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        assert_eq!(run(&l(&[1.0, 0.9, 0.8, 0.7]), 2), (3, 3), "always better: every epoch runs");
        assert_eq!(run(&l(&[1.0, 0.5, 0.6, 0.7, 0.4]), 2), (1, 3), "two epochs without a lower loss");
        assert_eq!(run(&l(&[1.0, 0.5, 0.6, 0.4, 0.45, 0.3]), 2), (5, 5), "a lower loss restarts the count");
        assert_eq!(run(&l(&[0.5, 0.6, 0.7]), 2), (0, 2), "epoch 0 (the linear head) can stay the best");
        assert_eq!(run(&l(&[0.5, 0.5, 0.4]), 1), (0, 1), "an equal loss is not lower");
        assert_eq!(run(&l(&[0.5, f32::NAN, 0.4]), 5), (2, 2), "NaN never counts as better");
    }

    #[test]
    fn without_validation_the_last_epoch_is_the_best_and_nothing_stops_early() {
        assert_eq!(run(&[None, None, None, None], 1), (3, 3));
        let mut e = EarlyStop { patience: 1, best_loss: None, best_epoch: 0 };
        assert!(e.observe(1, Some(0.3)), "a first loss is the best");
        assert!(!e.observe(2, Some(0.4)));
        assert!(e.should_stop(2, true));
    }
}
