//! The trainable part: a linear classifier on frozen features — multinomial logistic
//! regression for one label per photo ([`train`]), one sigmoid per class for several
//! ([`train_multi`]) — trained with burn (Flex CPU backend, full-batch Adam) with L2, balanced
//! class weights and early stopping on the validation loss.

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{
    activation::{log_sigmoid, log_softmax},
    Device, Tensor, TensorData,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("no training examples")]
    Empty,
    #[error("features have {got} values, expected a multiple of {dim}")]
    Shape { got: usize, dim: usize },
}

/// Labelled feature rows: `features` is row-major `[labels.len(), dim]`.
#[derive(Clone, Copy)]
pub struct Split<'a> {
    pub features: &'a [f32],
    pub labels: &'a [usize],
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadConfig {
    /// L2 penalty on the weights (on standardised features), `l2/2·‖W‖²` added to the mean loss.
    pub l2: f32,
    pub learning_rate: f64,
    /// Full-batch optimisation steps at most.
    pub max_steps: usize,
    /// Stop after this many steps without a better validation loss.
    pub patience: usize,
    /// Weight classes inversely to their frequency (`n / (classes · n_c)`).
    pub balanced: bool,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self { l2: 0.1, learning_rate: 0.01, max_steps: 600, patience: 40, balanced: true }
    }
}

/// One step's training and validation figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepStats {
    pub step: usize,
    pub train_loss: f32,
    pub val_loss: Option<f32>,
}

/// The trained classifier, on raw (unstandardised) features: `logits = W·f + b`.
#[derive(Clone, Debug)]
pub struct TrainedHead {
    /// Row-major `[classes, dim]`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub dim: usize,
    pub best_step: usize,
    pub steps_run: usize,
    pub curve: Vec<StepStats>,
}

impl TrainedHead {
    pub fn classes(&self) -> usize {
        self.bias.len()
    }

    /// Softmax probabilities for row-major features `[n, dim]`.
    pub fn predict_proba(&self, features: &[f32]) -> Vec<Vec<f32>> {
        features.chunks_exact(self.dim).map(|f| softmax(&self.logits(f))).collect()
    }

    /// `W·f + b` for one row of features.
    pub fn logits(&self, f: &[f32]) -> Vec<f32> {
        (0..self.classes())
            .map(|c| {
                let w = &self.weight[c * self.dim..(c + 1) * self.dim];
                self.bias[c] + w.iter().zip(f).map(|(a, b)| a * b).sum::<f32>()
            })
            .collect()
    }
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Per-feature mean and standard deviation of the training rows.
fn standardiser(x: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (x.len() / dim) as f64;
    let mut mean = vec![0f64; dim];
    let mut sq = vec![0f64; dim];
    for row in x.chunks_exact(dim) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let mean: Vec<f64> = mean.into_iter().map(|s| s / n).collect();
    let std = sq.iter().zip(&mean).map(|(s, m)| ((s / n - m * m).max(0.0).sqrt() as f32).max(1e-3)).collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

fn tensor2(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

/// Trains the head. With a validation split, the weights of the step with the lowest
/// validation loss are kept; without one, those of the last step.
pub fn train(
    train: Split,
    val: Option<Split>,
    dim: usize,
    classes: usize,
    cfg: &HeadConfig,
) -> Result<TrainedHead, HeadError> {
    let n = train.labels.len();
    check(train.features, n, dim)?;
    let device = Device::flex().autodiff();
    let mut counts = vec![0usize; classes];
    for &l in train.labels {
        counts[l] += 1;
    }
    let class_weight: Vec<f32> = (0..classes)
        .map(|c| if cfg.balanced && counts[c] > 0 { n as f32 / (classes as f32 * counts[c] as f32) } else { 1.0 })
        .collect();
    // Each row's one-hot target scaled by its class weight, normalised so the loss is a
    // weighted mean: then the learning rate and L2 mean the same at any dataset size.
    let targets = |labels: &[usize]| -> Tensor<2> {
        let total: f32 = labels.iter().map(|&l| class_weight[l]).sum();
        let mut t = vec![0f32; labels.len() * classes];
        for (i, &l) in labels.iter().enumerate() {
            t[i * classes + l] = class_weight[l] / total;
        }
        tensor2(t, labels.len(), classes, &device)
    };
    let nll = |y: Tensor<2>| move |logits: Tensor<2>| (log_softmax(logits, 1) * y.clone()).sum().neg();
    let val = val.filter(|v| !v.labels.is_empty()).map(|v| (v.features, nll(targets(v.labels))));
    fit(train.features, nll(targets(train.labels)), val, dim, classes, cfg, &device)
}

/// Rows that may each carry several labels: `targets` is row-major `[rows, classes]`, 1 where
/// the row has the class, 0 where it has not.
#[derive(Clone, Copy)]
pub struct MultiSplit<'a> {
    pub features: &'a [f32],
    pub targets: &'a [f32],
}

/// Trains one independent sigmoid per class (binary cross-entropy, mean over rows); with
/// `cfg.balanced` each class's positives weigh its negatives over its positives, as PyTorch's
/// `BCEWithLogitsLoss(pos_weight=...)`. Early stopping as [`train`]. The logits of the result
/// are the sigmoids' inputs.
pub fn train_multi(
    train: MultiSplit,
    val: Option<MultiSplit>,
    dim: usize,
    classes: usize,
    cfg: &HeadConfig,
) -> Result<TrainedHead, HeadError> {
    let n = train.targets.len() / classes.max(1);
    check(train.features, n, dim)?;
    if train.targets.len() != n * classes {
        return Err(HeadError::Shape { got: train.targets.len(), dim: classes });
    }
    let device = Device::flex().autodiff();
    let positive_weight = positive_weights(train.targets, classes, cfg.balanced);
    let bce = |t: &[f32]| {
        let rows = t.len() / classes;
        let pos: Vec<f32> =
            t.iter().enumerate().map(|(k, &y)| y * positive_weight[k % classes] / rows as f32).collect();
        let neg: Vec<f32> = t.iter().map(|&y| (1.0 - y) / rows as f32).collect();
        let (pos, neg) = (tensor2(pos, rows, classes, &device), tensor2(neg, rows, classes, &device));
        move |logits: Tensor<2>| {
            let p = (log_sigmoid(logits.clone()) * pos.clone()).sum();
            let q = (log_sigmoid(logits.neg()) * neg.clone()).sum();
            (p + q).neg()
        }
    };
    let val = val.filter(|v| !v.targets.is_empty()).map(|v| (v.features, bce(v.targets)));
    fit(train.features, bce(train.targets), val, dim, classes, cfg, &device)
}

/// Each class's weight on its positives: with `balanced`, its negatives over its positives (at
/// least 1: a common label is not weighed down), else 1. `targets` as in [`MultiSplit`].
pub fn positive_weights(targets: &[f32], classes: usize, balanced: bool) -> Vec<f32> {
    let n = targets.len() / classes.max(1);
    (0..classes)
        .map(|c| {
            let pos = (0..n).filter(|&i| targets[i * classes + c] > 0.5).count();
            if balanced && pos > 0 { (n - pos) as f32 / pos as f32 } else { 1.0 }.max(1.0)
        })
        .collect()
}

fn check(features: &[f32], n: usize, dim: usize) -> Result<(), HeadError> {
    if n == 0 {
        return Err(HeadError::Empty);
    }
    if features.len() != n * dim {
        return Err(HeadError::Shape { got: features.len(), dim });
    }
    Ok(())
}

/// Full-batch Adam on standardised features with L2 and early stopping on `val`'s loss; the
/// result folded back onto raw features.
fn fit<L: Fn(Tensor<2>) -> Tensor<1>, V: Fn(Tensor<2>) -> Tensor<1>>(
    features: &[f32],
    loss_of: L,
    val: Option<(&[f32], V)>,
    dim: usize,
    classes: usize,
    cfg: &HeadConfig,
    device: &Device,
) -> Result<TrainedHead, HeadError> {
    let n = features.len() / dim;
    let (mean, std) = standardiser(features, dim);
    let standardise = |x: &[f32]| -> Vec<f32> {
        x.chunks_exact(dim).flat_map(|r| r.iter().enumerate().map(|(j, v)| (v - mean[j]) / std[j])).collect()
    };
    let x = tensor2(standardise(features), n, dim, device);
    let val = val.map(|(vx, l)| (tensor2(standardise(vx), vx.len() / dim, dim, device), l));

    let mut model: Linear = LinearConfig::new(dim, classes).with_initializer(Initializer::Zeros).init(device);
    let mut optim = AdamConfig::new().init();
    let mut best: Option<(f32, usize, Linear)> = None;
    let mut curve = Vec::new();
    let mut steps_run = 0;
    for step in 1..=cfg.max_steps {
        let data_loss = loss_of(model.forward(x.clone()));
        let penalty = model.weight.val().powf_scalar(2.0).sum().mul_scalar(cfg.l2 / 2.0);
        let loss = data_loss + penalty;
        let train_loss = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(cfg.learning_rate, model, grads);
        steps_run = step;
        let val_loss = val.as_ref().map(|(vx, l)| l(model.forward(vx.clone()).detach()).into_scalar());
        curve.push(StepStats { step, train_loss, val_loss });
        if let Some(vl) = val_loss {
            if best.as_ref().is_none_or(|(b, _, _)| vl < *b) {
                best = Some((vl, step, model.clone()));
            } else if best.as_ref().is_some_and(|(_, s, _)| step - s >= cfg.patience) {
                break;
            }
        }
    }
    let (best_step, model) = match best {
        Some((_, s, m)) => (s, m),
        None => (steps_run, model),
    };
    // burn's Linear weight is [dim, classes]; fold the standardisation back in:
    // W' = W / std, b' = b - Σ_j W_j·mean_j/std_j.
    let w: Vec<f32> = model.weight.val().into_data().try_to_vec::<f32>().expect("f32 weights");
    let b: Vec<f32> = model.bias.as_ref().expect("bias").val().into_data().try_to_vec::<f32>().expect("f32 bias");
    let mut weight = vec![0f32; classes * dim];
    let mut bias = b;
    for j in 0..dim {
        for c in 0..classes {
            let wj = w[j * classes + c] / std[j];
            weight[c * dim + j] = wj;
            bias[c] -= wj * mean[j];
        }
    }
    Ok(TrainedHead { weight, bias, dim, best_step, steps_run, curve })
}

pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three Gaussian blobs in 4-D: a linear head must separate them almost perfectly.
    fn blobs(n_per: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut s = seed;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let centres = [[3.0, 0.0, 0.0, 1.0], [0.0, 3.0, 0.0, 1.0], [0.0, 0.0, 3.0, 1.0]];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (c, centre) in centres.iter().enumerate() {
            for _ in 0..n_per {
                for v in centre {
                    x.push(v + 2.0 * rnd());
                }
                y.push(c);
            }
        }
        (x, y)
    }

    fn accuracy(h: &TrainedHead, x: &[f32], y: &[usize]) -> f32 {
        let p = h.predict_proba(x);
        let ok =
            p.iter().zip(y).filter(|(p, &l)| p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 == l);
        ok.count() as f32 / y.len() as f32
    }

    #[test]
    fn learns_separable_blobs_and_is_deterministic() {
        let (x, y) = blobs(40, 1);
        let (vx, vy) = blobs(20, 2);
        let cfg = HeadConfig::default();
        let split = Split { features: &x, labels: &y };
        let val = Split { features: &vx, labels: &vy };
        let h = train(split, Some(val), 4, 3, &cfg).unwrap();
        assert!(accuracy(&h, &vx, &vy) > 0.95, "{}", accuracy(&h, &vx, &vy));
        let probs = h.predict_proba(&vx[..4]);
        assert!((probs[0].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let again = train(split, Some(val), 4, 3, &cfg).unwrap();
        assert_eq!(h.weight, again.weight);
        assert_eq!(h.best_step, again.best_step);
    }

    #[test]
    fn early_stopping_keeps_the_best_step() {
        let (x, y) = blobs(30, 3);
        let (vx, vy) = blobs(10, 4);
        let cfg = HeadConfig { l2: 0.0, patience: 5, ..HeadConfig::default() };
        let h =
            train(Split { features: &x, labels: &y }, Some(Split { features: &vx, labels: &vy }), 4, 3, &cfg).unwrap();
        let best = h.curve.iter().filter_map(|s| s.val_loss).fold(f32::INFINITY, f32::min);
        assert_eq!(h.curve[h.best_step - 1].val_loss, Some(best));
        assert!(h.steps_run < cfg.max_steps || h.best_step == h.steps_run);
    }

    #[test]
    fn balanced_weights_favour_the_rare_class() {
        // 90 vs 10 overlapping examples: balanced weights must move the boundary towards
        // the common class, so more rare-class examples are recalled.
        let (x, y) = blobs(100, 5);
        let keep: Vec<usize> = (0..200).filter(|&i| y[i] == 0 || i % 10 == 0).collect();
        let xs: Vec<f32> = keep.iter().flat_map(|&i| x[i * 4..i * 4 + 4].to_vec()).collect();
        let ys: Vec<usize> = keep.iter().map(|&i| y[i]).collect();
        let run = |balanced| {
            let cfg = HeadConfig { balanced, max_steps: 200, ..HeadConfig::default() };
            let h = train(Split { features: &xs, labels: &ys }, None, 4, 2, &cfg).unwrap();
            h.predict_proba(&xs).iter().filter(|p| p[1] > 0.5).count()
        };
        assert!(run(true) >= run(false));
    }

    /// Rows of 4-D blobs that may belong to two classes at once: class c is on when feature c
    /// is high; the fourth feature is noise.
    fn multi_blobs(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as f32 / (1u64 << 31) as f32
        };
        let (mut x, mut t) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let on: Vec<bool> = (0..3).map(|_| rnd() < 0.4).collect();
            for &o in &on {
                x.push(if o { 2.0 } else { 0.0 } + rnd() - 0.5);
                t.push(if o { 1.0 } else { 0.0 });
            }
            x.push(rnd());
        }
        (x, t)
    }

    #[test]
    fn one_sigmoid_per_class_learns_several_labels_at_once() {
        let (x, t) = multi_blobs(200, 7);
        let (vx, vt) = multi_blobs(100, 8);
        let cfg = HeadConfig::default();
        let h = train_multi(
            MultiSplit { features: &x, targets: &t },
            Some(MultiSplit { features: &vx, targets: &vt }),
            4,
            3,
            &cfg,
        )
        .unwrap();
        let mut right = 0;
        let mut both = 0;
        for (row, truth) in vx.chunks_exact(4).zip(vt.chunks_exact(3)) {
            let on: Vec<bool> = h.logits(row).iter().map(|&z| sigmoid(z) > 0.5).collect();
            right += on.iter().zip(truth).filter(|(&o, &y)| o == (y > 0.5)).count();
            both += usize::from(truth.iter().filter(|&&y| y > 0.5).count() >= 2);
        }
        assert!(both > 10, "the data must have rows with several labels: {both}");
        assert!(right as f32 / 300.0 > 0.97, "{right} of 300 label decisions right");
        let again = train_multi(
            MultiSplit { features: &x, targets: &t },
            Some(MultiSplit { features: &vx, targets: &vt }),
            4,
            3,
            &cfg,
        )
        .unwrap();
        assert_eq!(h.weight, again.weight);
        assert!(matches!(
            train_multi(MultiSplit { features: &x, targets: &t[..10] }, None, 4, 3, &cfg),
            Err(HeadError::Shape { .. })
        ));
    }

    #[test]
    fn positive_weights_raise_a_rare_label() {
        // Class 0 on in one row of ten, barely told apart: weighting its positives by
        // negatives/positives must raise its probabilities on its own rows.
        let (x, mut t) = multi_blobs(300, 9);
        let mut x2 = x.clone();
        for i in 0..300 {
            t[i * 3] = if i % 10 == 0 { 1.0 } else { 0.0 };
            x2[i * 4] = t[i * 3] * 0.6 + (x[i * 4 + 3] - 0.5);
        }
        let mean_on = |balanced| {
            let cfg = HeadConfig { balanced, max_steps: 200, ..HeadConfig::default() };
            let h = train_multi(MultiSplit { features: &x2, targets: &t }, None, 4, 3, &cfg).unwrap();
            (0..300).step_by(10).map(|i| sigmoid(h.logits(&x2[i * 4..i * 4 + 4])[0])).sum::<f32>() / 30.0
        };
        let (plain, weighted) = (mean_on(false), mean_on(true));
        assert!(weighted > plain + 0.1, "{plain} -> {weighted}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(matches!(
            train(Split { features: &[], labels: &[] }, None, 4, 2, &HeadConfig::default()),
            Err(HeadError::Empty)
        ));
        assert!(matches!(
            train(Split { features: &[1.0; 5], labels: &[0, 1] }, None, 4, 2, &HeadConfig::default()),
            Err(HeadError::Shape { .. })
        ));
    }
}
