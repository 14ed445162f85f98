//! Temperature scaling (Guo et al. 2017) and how calibrated probabilities are.

use serde::{Deserialize, Serialize};

/// `softmax(logits / t)` of one row.
pub fn softmax_t(logits: &[f32], t: f32) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&l| ((l - m) / t).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn nll(logits: &[f32], labels: &[usize], classes: usize, t: f64) -> f64 {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(r, &y)| {
            let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = r.iter().map(|&l| ((l as f64 - m) / t).exp()).sum::<f64>().ln();
            lse - (r[y] as f64 - m) / t
        })
        .sum::<f64>()
        / labels.len().max(1) as f64
}

/// The temperature minimising the mean negative log-likelihood of `labels` under
/// `softmax(logits / t)` (rows of `classes`), searched over 0.05–20 (golden section on
/// log t: the loss is unimodal there). Without rows, 1.
pub fn fit_temperature(logits: &[f32], labels: &[usize], classes: usize) -> f32 {
    if labels.is_empty() || classes == 0 || logits.len() != labels.len() * classes {
        return 1.0;
    }
    let f = |u: f64| nll(logits, labels, classes, u.exp());
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - r * (b - a), a + r * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - r * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + r * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

/// One bin of a reliability diagram: photos whose top probability fell in `[lo, hi)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    /// Mean top probability of the bin's photos.
    pub confidence: f64,
    /// Share of them whose top class was right.
    pub accuracy: f64,
}

/// `bins` equal-width bins of the top probability of each row of `probs`.
pub fn reliability(probs: &[Vec<f32>], labels: &[usize], bins: usize) -> Vec<Bin> {
    let bins = bins.max(1);
    let mut acc = vec![(0usize, 0f64, 0usize); bins];
    for (p, &y) in probs.iter().zip(labels) {
        let (top, conf) =
            p.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let conf = if conf.is_finite() { conf.clamp(0.0, 1.0) } else { 0.0 };
        let at = ((conf as f64 * bins as f64) as usize).min(bins - 1);
        acc[at].0 += 1;
        acc[at].1 += conf as f64;
        acc[at].2 += usize::from(top == y);
    }
    acc.into_iter()
        .enumerate()
        .map(|(i, (n, c, right))| Bin {
            lo: i as f64 / bins as f64,
            hi: (i + 1) as f64 / bins as f64,
            count: n,
            confidence: if n > 0 { c / n as f64 } else { 0.0 },
            accuracy: if n > 0 { right as f64 / n as f64 } else { 0.0 },
        })
        .collect()
}

/// Expected calibration error over 15 equal-width bins: the photo-weighted mean gap between
/// confidence and accuracy.
pub fn ece(probs: &[Vec<f32>], labels: &[usize]) -> f64 {
    let total = labels.len().max(1) as f64;
    reliability(probs, labels, 15).iter().map(|b| b.count as f64 / total * (b.confidence - b.accuracy).abs()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits three times too sharp: the fitted temperature is about three, and it lowers
    /// the calibration error.
    #[test]
    fn temperature_undoes_overconfidence() {
        let mut rng = 3u64;
        let mut u = || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut logits, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            // True logits: class 0 ahead by a random margin; the label drawn from them.
            let margin = (u() * 4.0) as f32;
            let p0 = 1.0 / (1.0 + (-margin as f64).exp());
            labels.push(usize::from(u() >= p0));
            logits.extend([3.0 * margin, 0.0]);
        }
        let t = fit_temperature(&logits, &labels, 2);
        assert!((t - 3.0).abs() < 0.3, "{t}");
        let probs = |t| logits.chunks_exact(2).map(|r| softmax_t(r, t)).collect::<Vec<_>>();
        let (before, after) = (ece(&probs(1.0), &labels), ece(&probs(t), &labels));
        assert!(after < 0.03 && before > after + 0.05, "{before} {after}");
    }

    #[test]
    fn reliability_bins_count_every_row_once() {
        let probs = vec![vec![0.95, 0.05], vec![0.55, 0.45], vec![0.2, 0.8]];
        let bins = reliability(&probs, &[0, 1, 1], 10);
        assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 3);
        assert_eq!(bins[9].count, 1);
        assert_eq!(bins[9].accuracy, 1.0);
        assert_eq!(bins[5].accuracy, 0.0);
        assert!((ece(&probs, &[0, 1, 1]) - (0.05 + 0.55 + 0.2) / 3.0).abs() < 1e-6);
        assert_eq!(fit_temperature(&[], &[], 2), 1.0);
    }
}
