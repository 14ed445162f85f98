//! Photos with several labels: the per-class thresholds of a sigmoid head, chosen for F1 on the
//! training split by cross-validation (never on validation, which scores them).

use crate::multi_metrics::{average_precision, f1_threshold};
use crate::Result;
use retrain_head::{sigmoid, HeadConfig, MultiSplit};

/// L2 penalties a several-labels head chooses among (`--l2` not given).
pub const L2_GRID: [f32; 5] = [0.1, 0.3, 1.0, 3.0, 10.0];

/// Each row's probabilities from a head that did not see it: the training rows dealt (seeded)
/// into `k` folds, stratified by each row's rarest label so that a rare label's few rows spread
/// over the folds; each fold scored by a head trained as `cfg` says on the others (with
/// `early_stop`, stopped on the fold itself). `x` is row-major `[rows, dim]`, `targets`
/// `[rows, classes]` of 0/1.
#[allow(clippy::too_many_arguments)]
pub fn out_of_fold(
    x: &[f32],
    targets: &[f32],
    dim: usize,
    classes: usize,
    k: usize,
    cfg: &HeadConfig,
    seed: u64,
    early_stop: bool,
) -> Result<Vec<f32>> {
    let n = targets.len() / classes.max(1);
    let on = |i: usize, c: usize| targets[i * classes + c] > 0.5;
    let count: Vec<usize> = (0..classes).map(|c| (0..n).filter(|&i| on(i, c)).count()).collect();
    let rarest: Vec<usize> =
        (0..n).map(|i| (0..classes).filter(|&c| on(i, c)).min_by_key(|&c| count[c]).unwrap_or(classes)).collect();
    let fold = crate::dataset::stratified_folds(&rarest, k, seed);
    let rows = |idx: &[usize], v: &[f32], w: usize| idx.iter().flat_map(|&i| v[i * w..(i + 1) * w].to_vec()).collect();
    let mut scores = vec![0f32; n * classes];
    for f in 0..k {
        let (held, rest): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold[i] == f);
        if held.is_empty() || rest.is_empty() {
            continue;
        }
        let (rx, rt): (Vec<f32>, Vec<f32>) = (rows(&rest, x, dim), rows(&rest, targets, classes));
        let (hx, ht): (Vec<f32>, Vec<f32>) = (rows(&held, x, dim), rows(&held, targets, classes));
        let val = early_stop.then_some(MultiSplit { features: &hx, targets: &ht });
        let h = retrain_head::train_multi(MultiSplit { features: &rx, targets: &rt }, val, dim, classes, cfg)?;
        for &i in &held {
            for (c, z) in h.logits(&x[i * dim..(i + 1) * dim]).into_iter().enumerate() {
                scores[i * classes + c] = sigmoid(z);
            }
        }
    }
    Ok(scores)
}

/// The L2 penalty of [`L2_GRID`] whose heads rank the training rows best out of fold (mean
/// average precision over the classes), each fold's head stopped early on that fold.
pub fn choose_l2(x: &[f32], targets: &[f32], dim: usize, classes: usize, cfg: &HeadConfig, seed: u64) -> Result<f32> {
    let n = targets.len() / classes.max(1);
    let mut best = (f64::NEG_INFINITY, cfg.l2);
    for l2 in L2_GRID {
        let cfg = HeadConfig { l2, ..cfg.clone() };
        let s = out_of_fold(x, targets, dim, classes, FOLDS, &cfg, seed, true)?;
        let aps: Vec<f64> = (0..classes)
            .filter_map(|c| {
                let truth: Vec<bool> = (0..n).map(|i| targets[i * classes + c] > 0.5).collect();
                average_precision(&truth, &(0..n).map(|i| s[i * classes + c]).collect::<Vec<_>>())
            })
            .collect();
        let map = aps.iter().sum::<f64>() / aps.len().max(1) as f64;
        if map > best.0 {
            best = (map, l2);
        }
    }
    Ok(best.1)
}

/// Folds of the training split that choose a several-labels head's L2 penalty and thresholds.
pub const FOLDS: usize = 5;

/// Each class's threshold: per class, the F1-best threshold of the [`out_of_fold`]
/// probabilities of heads trained as `cfg` says (as many steps, no early stop).
pub fn cv_thresholds(
    x: &[f32],
    targets: &[f32],
    dim: usize,
    classes: usize,
    k: usize,
    cfg: &HeadConfig,
    seed: u64,
) -> Result<Vec<f32>> {
    let n = targets.len() / classes.max(1);
    let scores = out_of_fold(x, targets, dim, classes, k, cfg, seed, false)?;
    Ok((0..classes)
        .map(|c| {
            let truth: Vec<bool> = (0..n).map(|i| targets[i * classes + c] > 0.5).collect();
            let s: Vec<f32> = (0..n).map(|i| scores[i * classes + c]).collect();
            f1_threshold(&truth, &s)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi_metrics::compute;

    /// Rows of 6-D features with three labels, each on with its own rate; a label's feature
    /// tells it apart only roughly, so where its cut lies matters.
    fn rows(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        let rate = [0.5, 0.2, 0.08];
        let (mut x, mut t) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let on: Vec<bool> = rate.iter().map(|&r| rnd() < r).collect();
            for &o in &on {
                x.push(if o { 1.0 } else { 0.0 } + 1.4 * (rnd() - 0.5));
                t.push(if o { 1.0 } else { 0.0 });
            }
            for _ in 0..3 {
                x.push(rnd());
            }
        }
        (x, t)
    }

    #[test]
    fn thresholds_chosen_on_training_folds_beat_one_half_on_new_rows() {
        let (x, t) = rows(600, 1);
        let (tx, tt) = rows(2000, 2);
        let cfg = HeadConfig { max_steps: 300, ..HeadConfig::default() };
        let th = cv_thresholds(&x, &t, 6, 3, 5, &cfg, 0).unwrap();
        assert_eq!(th, cv_thresholds(&x, &t, 6, 3, 5, &cfg, 0).unwrap());
        assert!(th.iter().all(|&v| v > 0.0 && v < 1.0), "{th:?}");
        let h = retrain_head::train_multi(MultiSplit { features: &x, targets: &t }, None, 6, 3, &cfg).unwrap();
        let scores: Vec<f32> = tx.chunks_exact(6).flat_map(|r| h.logits(r).into_iter().map(sigmoid)).collect();
        let truth: Vec<bool> = tt.iter().map(|&v| v > 0.5).collect();
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let f1 = |cut: &dyn Fn(usize) -> f32| {
            let p: Vec<bool> = scores.iter().enumerate().map(|(i, &s)| s >= cut(i % 3)).collect();
            compute(&truth, &p, &scores, &names).macro_f1
        };
        let (half, tuned) = (f1(&|_| 0.5), f1(&|c| th[c]));
        assert!(tuned > half, "macro F1 at 0.5: {half}, at {th:?}: {tuned}");
    }
}
