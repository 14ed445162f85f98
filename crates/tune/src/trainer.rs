//! Training the tail: optimisers, the loss, evaluation and checkpoints.

use crate::{Tail, TailParams, TuneError};
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Device, Tensor, TensorData};
use retrain_onnx::proto::GraphProto;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    AdamW,
    Sgd,
}

/// What a batch's photos are: one class each (softmax cross-entropy, with label smoothing), or
/// any number of classes each (binary cross-entropy per class, a class's positives weighed by
/// its `positive_weight`, as PyTorch's `BCEWithLogitsLoss(pos_weight=...)`).
#[derive(Clone, Copy)]
pub enum Targets<'a> {
    Classes(&'a [usize]),
    /// Row-major `[photos, classes]`: 1 where the photo has the class, else 0.
    Sets {
        on: &'a [f32],
        positive_weight: &'a [f32],
    },
}

/// What BatchNorm does in the trained blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchNormMode {
    /// Batch statistics while training, running statistics updated from them (PyTorch's
    /// `model.train()`), folded into the convolutions at export.
    Train,
    /// Running statistics throughout (folded into the convolutions; their affine still trains).
    Frozen,
}

fn frozen() -> BatchNormMode {
    BatchNormMode::Frozen
}

/// Everything that decides a fine-tuning run's arithmetic; saved with each checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneConfig {
    pub epochs: usize,
    pub batch: usize,
    /// Peak learning rate of the new head.
    pub lr: f64,
    /// Peak learning rate of the unfrozen blocks (discriminative: lower than the head's).
    pub body_lr: f64,
    pub weight_decay: f32,
    pub optimizer: OptimizerKind,
    /// SGD momentum.
    pub momentum: f64,
    /// Linear warm-up length, in epochs (fractions allowed).
    pub warmup_epochs: f64,
    pub label_smoothing: f32,
    /// Stop after this many epochs without a lower validation loss.
    pub patience: usize,
    pub seed: u64,
    /// Weights evaluated and exported are an exponential moving average of the trained ones,
    /// over about this many epochs (0: the trained weights themselves).
    #[serde(default)]
    pub ema_epochs: f64,
    /// Dropout on the new head's input while training (as torchvision's classifiers have).
    #[serde(default)]
    pub dropout: f32,
    /// Runs saved before this setting existed trained with frozen statistics.
    #[serde(default = "frozen")]
    pub batchnorm: BatchNormMode,
    /// BatchNorm's running statistics hold nothing yet (training from scratch): they are the
    /// cumulative average of the batches' until momentum 0.1 weighs more, so that evaluation
    /// does not answer with the initial zeros and ones for hundreds of steps.
    #[serde(default)]
    pub fresh_statistics: bool,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            epochs: 7,
            batch: 32,
            lr: 1e-3,
            body_lr: 2e-4,
            weight_decay: 0.01,
            optimizer: OptimizerKind::AdamW,
            momentum: 0.9,
            warmup_epochs: 0.5,
            label_smoothing: 0.0,
            patience: 5,
            seed: 0,
            ema_epochs: 2.0,
            dropout: 0.5,
            batchnorm: BatchNormMode::Frozen,
            fresh_statistics: false,
        }
    }
}

/// One epoch's figures, as printed and kept in the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochStats {
    /// 0 is the starting point (the warmed-up linear head), before any tail update.
    pub epoch: usize,
    pub train_loss: Option<f32>,
    pub train_accuracy: Option<f64>,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f64>,
    pub learning_rate: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// Where a run stands; with the weights and optimiser states it is a checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// The epoch under way (1-based; 0 before the first).
    pub epoch: usize,
    /// Batches of that epoch already applied.
    pub batch: usize,
    /// Optimiser steps taken in all.
    pub step: usize,
    pub train_loss_sum: f64,
    pub train_correct: usize,
    pub train_seen: usize,
    pub epoch_seconds: f64,
    pub best_epoch: usize,
    pub best_val_loss: Option<f32>,
    pub curve: Vec<EpochStats>,
    /// True once the run has ended (last epoch or early stop).
    pub finished: bool,
}

pub struct Trainer {
    pub tail: Tail,
    params: TailParams,
    head_opt: ModuleOptimizer,
    body_opt: ModuleOptimizer,
    pub cfg: TuneConfig,
    device: Device,
    /// The moving average of the weights (in [`Tail::params`] order) and its per-step decay.
    ema: Option<(f32, Vec<Vec<f32>>)>,
}

fn optimizer(cfg: &TuneConfig) -> ModuleOptimizer {
    match cfg.optimizer {
        OptimizerKind::AdamW => AdamWConfig::new().with_weight_decay(cfg.weight_decay).init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_momentum(cfg.momentum).with_dampening(0.0)))
            .with_weight_decay((cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay)))
            .init(),
    }
}

/// As `retrain::metrics::argmax` (this crate sits below `retrain`): the first of equals.
fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |b, (j, &v)| if v > row[b] || row[b].is_nan() && !v.is_nan() { j } else { b })
}

impl Trainer {
    /// A trainer starting from the graph's current weights.
    pub fn new(tail: Tail, graph: &GraphProto, cfg: TuneConfig) -> Result<Self, TuneError> {
        let device = Device::flex().autodiff();
        let params = tail.init_params(graph, &device)?;
        Ok(Self { tail, params, head_opt: optimizer(&cfg), body_opt: optimizer(&cfg), cfg, device, ema: None })
    }

    /// Starts averaging the weights from their current values, with a decay per optimiser
    /// step that spans `cfg.ema_epochs` epochs of `steps_per_epoch` steps.
    pub fn start_average(&mut self, steps_per_epoch: usize) {
        let span = self.cfg.ema_epochs * steps_per_epoch as f64;
        self.ema = (span >= 1.0).then(|| ((1.0 - 1.0 / span) as f32, self.values()));
    }

    pub fn trainable_values(&self) -> usize {
        self.tail.params.iter().filter(|p| !p.stat).map(|p| p.shape.iter().product::<usize>()).sum()
    }

    /// One optimiser step on a batch of cut activations; returns the mean loss and how many
    /// of the batch were answered right (before the step: the class, or every label at 0.5).
    /// `key` draws the dropout mask: the same key, the same mask.
    pub fn step(
        &mut self,
        key: u64,
        x: Vec<f32>,
        shape: &[usize],
        targets: Targets,
        lr_head: f64,
        lr_body: f64,
    ) -> Result<(f32, usize), TuneError> {
        let dropout =
            (self.cfg.dropout > 0.0).then(|| (self.cfg.dropout.min(0.99), key ^ self.cfg.seed.rotate_left(32)));
        let mut batch_stats = Vec::new();
        let logits = self.tail.forward(&self.params, x, shape, &self.device, dropout, Some(&mut batch_stats))?;
        let [n, k] = logits.dims();
        let (loss, correct) = match targets {
            Targets::Classes(labels) => {
                let eps = self.cfg.label_smoothing;
                let mut target = vec![eps / k as f32; n * k];
                for (i, &l) in labels.iter().enumerate() {
                    target[i * k + l] += 1.0 - eps;
                }
                let target = Tensor::<2>::from_data(TensorData::new(target, [n, k]), &self.device);
                let loss = (log_softmax(logits.clone(), 1) * target).sum().neg().div_scalar(n as f32);
                let values = logits.detach().into_data().try_to_vec::<f32>().unwrap_or_default();
                (loss, values.chunks_exact(k).zip(labels).filter(|(r, &l)| argmax(r) == l).count())
            }
            Targets::Sets { on, positive_weight } => {
                let pos: Vec<f32> =
                    on.iter().enumerate().map(|(j, &y)| y * positive_weight[j % k] / n as f32).collect();
                let neg: Vec<f32> = on.iter().map(|&y| (1.0 - y) / n as f32).collect();
                let pos = Tensor::<2>::from_data(TensorData::new(pos, [n, k]), &self.device);
                let neg = Tensor::<2>::from_data(TensorData::new(neg, [n, k]), &self.device);
                let loss =
                    ((log_sigmoid(logits.clone()) * pos).sum() + (log_sigmoid(logits.clone().neg()) * neg).sum()).neg();
                let values = logits.detach().into_data().try_to_vec::<f32>().unwrap_or_default();
                let right = values
                    .chunks_exact(k)
                    .zip(on.chunks_exact(k))
                    .filter(|(z, y)| z.iter().zip(*y).all(|(&z, &y)| (z >= 0.0) == (y > 0.5)))
                    .count();
                (loss, right)
            }
        };
        let loss_value = loss.clone().into_scalar();
        let mut grads = loss.backward();
        let gh = GradientsParams::from_module(&mut grads, &self.params.head);
        let gb = GradientsParams::from_module(&mut grads, &self.params.body);
        let params =
            std::mem::replace(&mut self.params, TailParams { head: Vec::new(), body: Vec::new(), stats: Vec::new() });
        let params = self.head_opt.step(lr_head, params, gh);
        self.params = if params.body.is_empty() { params } else { self.body_opt.step(lr_body, params, gb) };
        let momentum = match self.cfg.fresh_statistics {
            true => (1.0 / (key as f32 + 1.0)).max(crate::tail::BN_MOMENTUM),
            false => crate::tail::BN_MOMENTUM,
        };
        self.tail.update_stats(&mut self.params, batch_stats, momentum);
        if let Some((decay, avg)) = self.ema.as_mut() {
            let d = *decay;
            for (a, v) in avg.iter_mut().zip(self.tail.values(&self.params)) {
                a.iter_mut().zip(v).for_each(|(a, v)| *a = d * *a + (1.0 - d) * v);
            }
        }
        Ok((loss_value, correct))
    }

    /// Logits `[n, classes]` (row-major) for cut activations, without tracking gradients.
    /// With averaging on, the averaged weights answer.
    pub fn logits(&self, x: Vec<f32>, shape: &[usize]) -> Result<Vec<f32>, TuneError> {
        let params = match &self.ema {
            Some((_, avg)) => self.tail.params_from_values(avg, &Device::flex()),
            None => self.params.valid(),
        };
        let logits = self.tail.forward(&params, x, shape, &Device::flex(), None, None)?;
        Ok(logits.into_data().try_to_vec::<f32>().unwrap_or_default())
    }

    /// Current parameter values, in [`Tail::params`] order.
    pub fn values(&self) -> Vec<Vec<f32>> {
        self.tail.values(&self.params)
    }

    /// The weights that [`Trainer::logits`] uses: the average when averaging, else the current.
    pub fn answering_values(&self) -> Vec<Vec<f32>> {
        match &self.ema {
            Some((_, avg)) => avg.clone(),
            None => self.values(),
        }
    }

    pub fn params(&self) -> &TailParams {
        &self.params
    }

    /// Writes a checkpoint into `dir`: weights, both optimisers' states, the weight average and
    /// the best weights so far (given when they changed, else carried over from the last
    /// checkpoint) go into a new generation folder; then `state.json` (config, progress, that
    /// folder and the blake3 of each of its files) is renamed into place, which commits them
    /// all at once; then older generations are removed. A kill at any point leaves the last
    /// committed checkpoint whole.
    pub fn save(&self, dir: &Path, progress: &Progress, best: Option<&[Vec<f32>]>) -> Result<(), TuneError> {
        let err = |path: &Path, reason: String| TuneError::Checkpoint { path: path.into(), reason };
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
        let previous = Checkpoint::read(dir).ok();
        let generation = previous.as_ref().map_or(0, |c| c.generation) + 1;
        let folder = Checkpoint::folder(dir, generation);
        // A folder of this number can only be an uncommitted one a killed save left.
        if folder.exists() {
            std::fs::remove_dir_all(&folder).map_err(|e| err(&folder, e.to_string()))?;
        }
        std::fs::create_dir(&folder).map_err(|e| err(&folder, e.to_string()))?;
        let names: Vec<&str> = self.tail.params.iter().map(|p| p.name.as_str()).collect();
        write_tensors(&folder.join(WEIGHTS), &names, &self.values())?;
        match (best, &previous) {
            (Some(b), _) => write_tensors(&folder.join(BEST), &names, b)?,
            (None, Some(prev)) if prev.files.contains_key(BEST) => {
                let from = prev.path(dir, BEST);
                let to = folder.join(BEST);
                std::fs::hard_link(&from, &to)
                    .or_else(|_| std::fs::copy(&from, &to).map(drop))
                    .map_err(|e| err(&from, e.to_string()))?;
            }
            _ => {}
        }
        if let Some((_, avg)) = &self.ema {
            write_tensors(&folder.join(AVERAGE), &names, avg)?;
        }
        for (opt, file) in [(&self.head_opt, OPTIM_HEAD), (&self.body_opt, OPTIM_BODY)] {
            let p = folder.join(file);
            opt.save(&p).map_err(|e| err(&p, e.to_string()))?;
        }
        let mut files = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(&folder).map_err(|e| err(&folder, e.to_string()))? {
            let e = e.map_err(|e| err(&folder, e.to_string()))?;
            let bytes = std::fs::read(e.path()).map_err(|x| err(&e.path(), x.to_string()))?;
            files.insert(e.file_name().to_string_lossy().into_owned(), blake3::hash(&bytes).to_hex().to_string());
        }
        sync_dir(&folder);
        let state = Checkpoint { config: self.cfg.clone(), progress: progress.clone(), generation, files };
        let path = dir.join(STATE);
        let json = serde_json::to_vec_pretty(&state).map_err(|e| err(&path, e.to_string()))?;
        let tmp = dir.join("state.json.partial");
        write_synced(&tmp, &json).map_err(|e| err(&tmp, e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e.to_string()))?;
        sync_dir(dir);
        Checkpoint::remove_generations(dir, Some(generation));
        Ok(())
    }

    /// Removes every checkpoint [`Trainer::save`] wrote in `dir`, so a new run there cannot pick
    /// up an older run's.
    pub fn clear_checkpoint(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(STATE));
        Checkpoint::remove_generations(dir, None);
    }

    /// Restores weights and optimiser states saved by [`Trainer::save`] into this trainer
    /// (built from the same graph and cut) and returns the saved progress. Every file is
    /// checked against the checksum `state.json` holds for it first.
    pub fn restore(&mut self, dir: &Path) -> Result<Progress, TuneError> {
        let state = Checkpoint::read(dir)?;
        let values = state.tensors(dir, WEIGHTS, &self.tail)?;
        // burn reads the optimiser states from their files; verified first all the same.
        let (head, body) = (state.verified(dir, OPTIM_HEAD)?.0, state.verified(dir, OPTIM_BODY)?.0);
        let average = if self.ema.is_some() && state.config.ema_epochs > 0.0 {
            Some(state.tensors(dir, AVERAGE, &self.tail)?)
        } else {
            None
        };
        self.params = self.tail.params_from_values(&values, &self.device);
        self.cfg = state.config;
        let err = |path: PathBuf, reason: String| TuneError::Checkpoint { path, reason };
        self.head_opt = optimizer(&self.cfg).load(&head).map_err(|e| err(head.clone(), e.to_string()))?;
        self.body_opt = optimizer(&self.cfg).load(&body).map_err(|e| err(body.clone(), e.to_string()))?;
        match (self.ema.as_mut(), average) {
            (Some((_, avg)), Some(a)) => *avg = a,
            _ => self.ema = None,
        }
        Ok(state.progress)
    }

    /// The best epoch's weights of the checkpoint in `dir`, if it has them.
    pub fn read_best(&self, dir: &Path) -> Result<Option<Vec<Vec<f32>>>, TuneError> {
        let state = Checkpoint::read(dir)?;
        if !state.files.contains_key(BEST) {
            return Ok(None);
        }
        state.tensors(dir, BEST, &self.tail).map(Some)
    }
}

const STATE: &str = "state.json";
const WEIGHTS: &str = "weights.safetensors";
const BEST: &str = "best.safetensors";
const AVERAGE: &str = "average.safetensors";
const OPTIM_HEAD: &str = "optim_head.bpk";
const OPTIM_BODY: &str = "optim_body.bpk";

/// Durability before the commit: the rename of `state.json` must not reach the disk before
/// the files it names. Best effort: a file system without fsync still gets the ordering of
/// renames.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `state.json` of a run directory: what the checkpoint is and where its files are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub config: TuneConfig,
    pub progress: Progress,
    /// The generation folder (`checkpoint-N`) holding this checkpoint's files.
    pub generation: u64,
    /// File name → blake3 (hex) of each file in that folder.
    pub files: std::collections::BTreeMap<String, String>,
}

impl Checkpoint {
    pub fn read(dir: &Path) -> Result<Self, TuneError> {
        let p = dir.join(STATE);
        let bytes = std::fs::read(&p).map_err(|e| TuneError::Checkpoint { path: p.clone(), reason: e.to_string() })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TuneError::Checkpoint { path: p, reason: format!("not a retrain checkpoint: {e}") })
    }

    fn folder(dir: &Path, generation: u64) -> PathBuf {
        dir.join(format!("checkpoint-{generation}"))
    }

    /// Where this checkpoint keeps `file`.
    pub fn path(&self, dir: &Path, file: &str) -> PathBuf {
        Self::folder(dir, self.generation).join(file)
    }

    /// The path and bytes of `file` once they match the checksum recorded for it.
    fn verified(&self, dir: &Path, file: &str) -> Result<(PathBuf, Vec<u8>), TuneError> {
        let path = self.path(dir, file);
        let err = |reason: String| TuneError::Checkpoint { path: path.clone(), reason };
        let want = self.files.get(file).ok_or_else(|| err(format!("{STATE} lists no `{file}`")))?;
        let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
        if blake3::hash(&bytes).to_hex().as_str() != want {
            return Err(err(format!(
                "its checksum differs from the one {STATE} recorded: the checkpoint was changed or damaged after it was written"
            )));
        }
        Ok((path, bytes))
    }

    /// The tensors of a verified safetensors `file`, read once.
    fn tensors(&self, dir: &Path, file: &str, tail: &Tail) -> Result<Vec<Vec<f32>>, TuneError> {
        let (path, bytes) = self.verified(dir, file)?;
        read_tensors(&path, &bytes, tail)
    }

    /// Removes the generation folders in `dir` other than `keep`.
    fn remove_generations(dir: &Path, keep: Option<u64>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let generation = name.to_str().and_then(|n| n.strip_prefix("checkpoint-")).and_then(|n| n.parse().ok());
            if generation.is_some() && generation != keep {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn write_tensors(path: &Path, names: &[&str], values: &[Vec<f32>]) -> Result<(), TuneError> {
    let err = |reason: String| TuneError::Checkpoint { path: path.to_path_buf(), reason };
    let bytes: Vec<Vec<u8>> = values.iter().map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = names
        .iter()
        .zip(&bytes)
        .zip(values)
        .map(|((n, b), v)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![v.len()], b).map(|t| (n.to_string(), t))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    let data = safetensors::serialize(views, None).map_err(|e| err(e.to_string()))?;
    write_synced(path, &data).map_err(|e| err(e.to_string()))
}

fn read_tensors(path: &Path, bytes: &[u8], tail: &Tail) -> Result<Vec<Vec<f32>>, TuneError> {
    let err = |reason: String| TuneError::Checkpoint { path: path.to_path_buf(), reason };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| err(e.to_string()))?;
    tail.params
        .iter()
        .map(|p| {
            let t =
                st.tensor(&p.name).map_err(|_| err(format!("no tensor `{}`: not this run's checkpoint", p.name)))?;
            let v: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if v.len() != p.shape.iter().product::<usize>() {
                return Err(err(format!("tensor `{}` has {} values, expected {:?}", p.name, v.len(), p.shape)));
            }
            Ok(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use retrain_onnx::{Attr, Dim, GraphBuilder, ModelProto};

    /// conv 3×3 → Clip(0, 6) → + input (residual) → global pool → flatten → Gemm (3 classes).
    fn tiny() -> ModelProto {
        let mut g = GraphBuilder::new("tiny");
        let x = g.input_f32("x", &[Dim::Named("n"), Dim::Fixed(2), Dim::Fixed(4), Dim::Fixed(4)]);
        let w: Vec<f32> = (0..2 * 2 * 9).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.05).collect();
        let w = g.constant_f32("w", &[2, 2, 3, 3], &w);
        let b = g.constant_f32("b", &[2], &[0.1, -0.1]);
        let y = g.node(
            "Conv",
            &[&x, &w, &b],
            vec![Attr::Ints("kernel_shape", vec![3, 3]), Attr::Ints("pads", vec![1, 1, 1, 1])],
        );
        let lo = g.constant_f32("lo", &[], &[0.0]);
        let hi = g.constant_f32("hi", &[], &[6.0]);
        let y = g.node("Clip", &[&y, &lo, &hi], vec![]);
        let y = g.node("Add", &[&y, &x], vec![]);
        pooled_head(g, &y)
    }

    /// Global pool → flatten → Gemm (3 classes) on `y`'s two channels, the `logits` output.
    fn pooled_head(mut g: GraphBuilder, y: &str) -> ModelProto {
        let y = g.node("GlobalAveragePool", &[y], vec![]);
        let y = g.node("Flatten", &[&y], vec![Attr::Int("axis", 1)]);
        let fw = g.constant_f32("fw", &[3, 2], &[0.2, -0.1, 0.0, 0.3, -0.2, 0.1]);
        let fb = g.constant_f32("fb", &[3], &[0.0; 3]);
        let l = g.node("Gemm", &[&y, &fw, &fb], vec![Attr::Int("transB", 1)]);
        g.output_f32(&l, "logits", &[Dim::Named("n"), Dim::Fixed(3)]);
        g.finish(&[])
    }

    fn data() -> (Vec<f32>, Vec<usize>) {
        // Class = which quarter of the image is bright.
        let mut x = vec![0f32; 6 * 2 * 16];
        let labels = vec![0, 1, 2, 0, 1, 2];
        for (i, &l) in labels.iter().enumerate() {
            for c in 0..2 {
                for p in 0..16 {
                    let bright = (p / 4) == l || (c == 1 && l == 2);
                    x[(i * 2 + c) * 16 + p] = if bright { 1.0 } else { 0.1 * (p % 3) as f32 };
                }
            }
        }
        (x, labels)
    }

    fn trainer_with(m: &ModelProto, cfg: TuneConfig) -> Trainer {
        let tail = Tail::from_model(m, "x", "logits").unwrap();
        Trainer::new(tail, m.graph.as_ref().unwrap(), cfg).unwrap()
    }

    // Dropout is explicit: on this two-feature head the default 0.5 hides most of the signal.
    fn trainer(m: &ModelProto) -> Trainer {
        trainer_with(m, TuneConfig { lr: 0.05, body_lr: 0.01, dropout: 0.2, ..TuneConfig::default() })
    }

    #[test]
    fn tail_groups_head_and_body_and_computes_by_hand() {
        let m = tiny();
        let t = trainer(&m);
        let heads: Vec<bool> = t.tail.params.iter().map(|p| p.head).collect();
        assert_eq!(heads, vec![false, false, true, true], "conv w/b in the body, gemm w/b in the head");
        // One all-zero image: conv gives its bias, clipped at 0 → [0.1, 0]; + 0; pooled; gemm.
        let logits = t.logits(vec![0.0; 32], &[1, 2, 4, 4]).unwrap();
        let want = [0.2 * 0.1, 0.0, -0.2 * 0.1];
        for (a, b) in logits.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{logits:?}");
        }
    }

    #[test]
    fn training_lowers_the_loss_and_a_restored_checkpoint_continues_identically() {
        let m = tiny();
        let (x, y) = data();
        let shape = [6, 2, 4, 4];
        let mut a = trainer(&m);
        let first = a.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap().0;
        for _ in 0..30 {
            a.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap();
        }
        let later = a.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap().0;
        assert!(later < first * 0.5, "{first} -> {later}");

        let dir = tempfile::tempdir().unwrap();
        let progress = Progress { epoch: 3, step: 32, ..Progress::default() };
        a.save(dir.path(), &progress, None).unwrap();
        let mut b = trainer(&m);
        assert_eq!(b.restore(dir.path()).unwrap().step, 32);
        assert_eq!(a.values(), b.values());
        for _ in 0..3 {
            a.step(0, x.clone(), &shape, Targets::Classes(&y), 0.02, 0.01).unwrap();
            b.step(0, x.clone(), &shape, Targets::Classes(&y), 0.02, 0.01).unwrap();
        }
        // Optimiser moments came back too: the continuations agree bit for bit.
        assert_eq!(a.values(), b.values());

        // The tuned values go back into the graph by name.
        let mut g = m.graph.clone().unwrap();
        a.tail.write_values(&a.values(), &mut g).unwrap();
        let fw = retrain_onnx::initializer_f32(&g, &a.tail.params[2].name).unwrap().1;
        assert_eq!(fw, a.values()[2]);
    }

    #[test]
    fn several_labels_train_with_binary_cross_entropy_and_count_whole_rows_right() {
        let m = tiny();
        let (x, y) = data();
        let shape = [6, 2, 4, 4];
        // Pooled, `data`'s photos tell class 2 from the others only: every photo has label 0,
        // none label 1, and class 2's photos label 2 too.
        let mut on = vec![0f32; 6 * 3];
        for (i, &l) in y.iter().enumerate() {
            on[i * 3] = 1.0;
            if l == 2 {
                on[i * 3 + 2] = 1.0;
            }
        }
        let w = [1.0, 1.0, 2.0];
        let targets = Targets::Sets { on: &on, positive_weight: &w };
        let mut a = trainer(&m);
        // From the untrained head every logit is near 0: the loss is about Σ over classes of
        // ln 2 weighted by each class's share of positives.
        let (first, _) = a.step(0, x.clone(), &shape, targets, 0.05, 0.01).unwrap();
        let expected = (0..3)
            .map(|c| (0..6).map(|i| if on[i * 3 + c] > 0.5 { w[c] } else { 1.0 }).sum::<f32>() / 6.0)
            .sum::<f32>()
            * std::f32::consts::LN_2;
        assert!((first - expected).abs() < 0.2, "{first} vs {expected}");
        let mut right = 0;
        for _ in 0..300 {
            right = a.step(0, x.clone(), &shape, targets, 0.05, 0.01).unwrap().1;
        }
        let later = a.step(0, x.clone(), &shape, targets, 0.05, 0.01).unwrap().0;
        assert!(later < first * 0.5, "{first} -> {later}");
        assert_eq!(right, 6, "every label of every photo right");
    }

    #[test]
    fn the_moving_average_answers_and_survives_a_checkpoint() {
        let m = tiny();
        let (x, y) = data();
        let shape = [6, 2, 4, 4];
        let avg = |cfg: TuneConfig| {
            let mut t = trainer_with(&m, cfg);
            t.start_average(4);
            t
        };
        // Spanning 2 epochs of 4 steps: decay 1 - 1/8 per step.
        let cfg = TuneConfig { ema_epochs: 2.0, ..TuneConfig::default() };
        let mut a = avg(cfg.clone());
        let start = a.values();
        a.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap();
        let one = a.values();
        for ((s, o), v) in start.iter().zip(&one).zip(a.answering_values()) {
            for ((s, o), v) in s.iter().zip(o).zip(v) {
                assert!((v - (0.875 * s + 0.125 * o)).abs() < 1e-6);
            }
        }
        assert_ne!(a.answering_values(), a.values());
        // Evaluation runs the averaged weights.
        let mut g = m.graph.clone().unwrap();
        a.tail.write_values(&a.answering_values(), &mut g).unwrap();
        let mut plain = trainer(&ModelProto { graph: Some(g), ..m.clone() });
        plain.cfg.ema_epochs = 0.0;
        plain.start_average(4);
        assert_eq!(plain.answering_values(), plain.values(), "0 epochs: no averaging");
        assert_eq!(a.logits(x.clone(), &shape).unwrap(), plain.logits(x.clone(), &shape).unwrap());

        let dir = tempfile::tempdir().unwrap();
        a.save(dir.path(), &Progress::default(), None).unwrap();
        let mut b = avg(cfg);
        b.restore(dir.path()).unwrap();
        for _ in 0..3 {
            a.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap();
            b.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap();
        }
        assert_eq!(a.answering_values(), b.answering_values());
    }

    #[test]
    fn sgd_with_momentum_and_label_smoothing_also_learn() {
        let m = tiny();
        let (x, y) = data();
        let cfg =
            TuneConfig { optimizer: OptimizerKind::Sgd, label_smoothing: 0.1, dropout: 0.2, ..TuneConfig::default() };
        let mut t = trainer_with(&m, cfg);
        let first = t.step(0, x.clone(), &[6, 2, 4, 4], Targets::Classes(&y), 0.5, 0.1).unwrap().0;
        let mut last = first;
        for _ in 0..40 {
            last = t.step(0, x.clone(), &[6, 2, 4, 4], Targets::Classes(&y), 0.5, 0.1).unwrap().0;
        }
        // With smoothing 0.1 over 3 classes the loss cannot go below its entropy (≈0.39).
        assert!(last < first * 0.8 && last > 0.3, "{first} -> {last}");
    }

    #[test]
    fn dropout_draws_its_mask_from_the_key_and_leaves_evaluation_alone() {
        let m = tiny();
        let (x, y) = data();
        let shape = [6, 2, 4, 4];
        let make = |dropout: f32| trainer_with(&m, TuneConfig { dropout, ..TuneConfig::default() });
        let loss = |dropout: f32, key: u64| {
            make(dropout).step(key, x.clone(), &shape, Targets::Classes(&y), 0.0, 0.0).unwrap().0
        };
        let none = loss(0.0, 1);
        assert_eq!(none, loss(0.0, 2), "no dropout: the key does not matter");
        assert_eq!(loss(0.5, 1), loss(0.5, 1));
        assert_ne!(loss(0.5, 1), loss(0.5, 2));
        assert_ne!(loss(0.5, 1), none);
        assert_eq!(make(0.5).logits(x.clone(), &shape).unwrap(), make(0.0).logits(x.clone(), &shape).unwrap());
        // Inverted dropout keeps the expected value: about half kept, each doubled.
        let mask = crate::tail::dropout_mask(0.5, 7, 10_000);
        let kept = mask.iter().filter(|&&v| v == 2.0).count();
        assert!((4_800..5_200).contains(&kept) && mask.iter().all(|&v| v == 0.0 || v == 2.0), "{kept}");
    }

    /// conv 1×1 (2 → 2, no bias) → BatchNormalization → global pool → Gemm (3 classes).
    fn tiny_bn() -> ModelProto {
        let mut g = GraphBuilder::new("tiny_bn");
        let x = g.input_f32("x", &[Dim::Named("n"), Dim::Fixed(2), Dim::Fixed(4), Dim::Fixed(4)]);
        let w = g.constant_f32("w", &[2, 2, 1, 1], &[1.0, 0.5, -0.5, 2.0]);
        let y = g.node("Conv", &[&x, &w], vec![Attr::Ints("kernel_shape", vec![1, 1])]);
        let bn = [("gamma", [1.5, 0.5]), ("beta", [0.1, -0.2]), ("mean", [0.3, 0.2]), ("var", [2.0, 0.5])];
        let bn: Vec<String> = bn.iter().map(|(n, v)| g.constant_f32(n, &[2], v)).collect();
        let y = g.node("BatchNormalization", &[&y, &bn[0], &bn[1], &bn[2], &bn[3]], vec![Attr::Float("epsilon", 1e-3)]);
        pooled_head(g, &y)
    }

    #[test]
    fn batchnorm_trains_on_batch_statistics_and_answers_with_running_ones() {
        let m = tiny_bn();
        let (x, y) = data();
        let shape = [6, 2, 4, 4];
        let mut t = trainer_with(&m, TuneConfig { dropout: 0.0, ema_epochs: 0.0, ..TuneConfig::default() });
        let kinds: Vec<(bool, bool)> = t.tail.params.iter().map(|p| (p.head, p.stat)).collect();
        let (b, s, h) = ((false, false), (false, true), (true, false));
        assert_eq!(kinds, vec![b, b, b, s, s, h, h], "conv w, BN scale/bias trained; mean/var are state");
        assert_eq!(t.trainable_values(), 4 + 2 + 2 + 6 + 3);

        // Evaluation: running statistics. Per channel c, BN(v) = (v - mean) / sqrt(var + eps) * γ + β
        // of the pooled conv output, which for a 1×1 conv is the conv of the pooled input.
        let pooled: Vec<[f32; 2]> =
            x.chunks_exact(32).map(|im| [0, 1].map(|c| im[c * 16..(c + 1) * 16].iter().sum::<f32>() / 16.0)).collect();
        let conv = |p: [f32; 2]| [p[0] + 0.5 * p[1], -0.5 * p[0] + 2.0 * p[1]];
        let bn = |v: [f32; 2], mean: [f32; 2], var: [f32; 2]| {
            [0, 1].map(|c| (v[c] - mean[c]) / (var[c] + 1e-3).sqrt() * [1.5, 0.5][c] + [0.1, -0.2][c])
        };
        let logits = t.logits(x.clone(), &shape).unwrap();
        let fw = [[0.2, -0.1], [0.0, 0.3], [-0.2, 0.1]];
        for (i, p) in pooled.iter().enumerate() {
            let f = bn(conv(*p), [0.3, 0.2], [2.0, 0.5]);
            for k in 0..3 {
                let want = fw[k][0] * f[0] + fw[k][1] * f[1];
                assert!(
                    (logits[i * 3 + k] - want).abs() < 1e-5,
                    "image {i} class {k}: {} vs {want}",
                    logits[i * 3 + k]
                );
            }
        }

        // A training step with zero learning rates changes only the running statistics:
        // 0.9 · old + 0.1 · the batch's (mean, unbiased variance) of the conv output.
        let conv_px: Vec<[f32; 2]> =
            x.chunks_exact(32).flat_map(|im| (0..16).map(move |p| conv([im[p], im[16 + p]]))).collect();
        let n = conv_px.len() as f32;
        let mu = [0, 1].map(|c| conv_px.iter().map(|v| v[c]).sum::<f32>() / n);
        let var = [0, 1].map(|c| conv_px.iter().map(|v| (v[c] - mu[c]).powi(2)).sum::<f32>() / (n - 1.0));
        t.step(0, x.clone(), &shape, Targets::Classes(&y), 0.0, 0.0).unwrap();
        let v = t.values();
        for c in 0..2 {
            assert!((v[3][c] - (0.9 * [0.3, 0.2][c] + 0.1 * mu[c])).abs() < 1e-5, "mean {c}: {:?}", v[3]);
            assert!((v[4][c] - (0.9 * [2.0, 0.5][c] + 0.1 * var[c])).abs() < 1e-4, "var {c}: {:?}", v[4]);
        }
        assert_eq!(v[0], vec![1.0, 0.5, -0.5, 2.0], "zero learning rate: weights unchanged");

        // Trained, the statistics go into the checkpoint and a resumed run continues identically.
        for _ in 0..5 {
            t.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path(), &Progress::default(), None).unwrap();
        let mut r = trainer_with(&m, t.cfg.clone());
        r.restore(dir.path()).unwrap();
        assert_eq!(r.values(), t.values());
        for _ in 0..3 {
            t.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap();
            r.step(0, x.clone(), &shape, Targets::Classes(&y), 0.05, 0.01).unwrap();
        }
        assert_eq!(r.values(), t.values());
        assert_eq!(r.logits(x.clone(), &shape).unwrap(), t.logits(x, &shape).unwrap());
    }

    #[test]
    fn a_checkpoint_commits_at_once_and_is_verified() {
        let m = tiny();
        let (x, y) = data();
        let mut a = trainer(&m);
        let dir = tempfile::tempdir().unwrap();
        let best = a.values();
        a.save(dir.path(), &Progress { step: 1, ..Progress::default() }, Some(&best)).unwrap();
        let first = a.values();
        a.step(0, x.clone(), &[6, 2, 4, 4], Targets::Classes(&y), 0.05, 0.01).unwrap();
        // A save killed before its commit left a folder of the next generation, half written.
        let torn = dir.path().join("checkpoint-2");
        std::fs::create_dir(&torn).unwrap();
        std::fs::write(torn.join(WEIGHTS), b"half").unwrap();
        let mut b = trainer(&m);
        assert_eq!(b.restore(dir.path()).unwrap().step, 1);
        assert_eq!(b.values(), first);
        // The next save takes its place; the best weights are carried over; one generation stays.
        a.save(dir.path(), &Progress { step: 2, ..Progress::default() }, None).unwrap();
        let state = Checkpoint::read(dir.path()).unwrap();
        assert_eq!(state.generation, 2);
        assert_eq!(b.read_best(dir.path()).unwrap().unwrap(), best);
        let folders: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(folders.len(), 2, "{folders:?}");
        assert_eq!(b.restore(dir.path()).unwrap().step, 2);
        assert_eq!(b.values(), a.values());
        // One flipped bit in any file of it is refused, naming the file.
        for file in [WEIGHTS, OPTIM_BODY, BEST] {
            let p = state.path(dir.path(), file);
            let bytes = std::fs::read(&p).unwrap();
            let mut flipped = bytes.clone();
            flipped[bytes.len() / 2] ^= 4;
            std::fs::write(&p, flipped).unwrap();
            let e =
                if file == BEST { b.read_best(dir.path()).unwrap_err() } else { b.restore(dir.path()).unwrap_err() };
            assert!(e.to_string().contains(file) && e.to_string().contains("checksum"), "{e}");
            std::fs::write(&p, bytes).unwrap();
        }
        Trainer::clear_checkpoint(dir.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_checkpoint_of_another_graph_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(trainer(&tiny()).restore(dir.path()), Err(TuneError::Checkpoint { .. })));
    }
}
