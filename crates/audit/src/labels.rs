//! Likely mislabelled photos: out-of-fold probabilities from a K-fold linear head, then
//! confident learning (Northcutt, Jiang and Chuang, 2021) as cleanlab's `find_label_issues`
//! does it by default: per-class thresholds, the calibrated confident joint, and in each given
//! class the photos with the largest margin for each class it is confused with, pruned by the
//! estimated noise rate; a photo whose top class is its label is never flagged.

use crate::Result;
use retrain_head::{HeadConfig, Split};

/// A photo confident learning flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub index: usize,
    /// The class it most likely belongs to.
    pub suggested: usize,
    /// The out-of-fold probability of its given label (lowest = most suspicious).
    pub self_confidence: f32,
    /// Whether its out-of-fold probability of the suggested class is at least [`MOVE_AT`]:
    /// surely that class, rather than only not its label.
    pub confident: bool,
}

/// The out-of-fold probability of the class a flagged photo looks like from which the audit
/// suggests moving it there rather than setting it aside. Confident learning's own per-class
/// thresholds (a class's mean probability) moved about as many correctly labelled photos as
/// mislabelled ones; measured in docs/audit.md.
pub const MOVE_AT: f32 = 0.95;

/// Out-of-fold probabilities of features `x` (rows of `dim`) with
/// labels `y`: `k` stratified folds, each predicted by a linear head trained on the others.
/// The number of steps is found once, by early stopping on one fold held out of a first run, so
/// that no head chooses its steps by the labels it is asked about.
pub fn out_of_fold(
    x: &[f32],
    y: &[usize],
    dim: usize,
    classes: usize,
    k: usize,
    head: &HeadConfig,
    seed: u64,
) -> Result<OutOfFold> {
    let n = y.len();
    let fold = retrain_files::dataset::stratified_folds(y, k, seed);
    let rows = |idx: &[usize]| idx.iter().flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied()).collect::<Vec<_>>();
    let labels = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<_>>();
    // Steps: train on folds ≥ 2, stop early on fold 1 (fold 0 is never looked at).
    let inner: Vec<usize> = (0..n).filter(|&i| fold[i] >= 2).collect();
    let stop: Vec<usize> = (0..n).filter(|&i| fold[i] == 1).collect();
    let steps = if inner.is_empty() || stop.is_empty() {
        head.max_steps
    } else {
        let (ix, iy, sx, sy) = (rows(&inner), labels(&inner), rows(&stop), labels(&stop));
        let h = retrain_head::train(
            Split { features: &ix, labels: &iy },
            Some(Split { features: &sx, labels: &sy }),
            dim,
            classes,
            head,
        )?;
        h.best_step.max(1)
    };
    let cfg = HeadConfig { max_steps: steps, ..head.clone() };
    let mut probs = vec![0f32; n * classes];
    for f in 0..k {
        let (held, rest): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold[i] == f);
        if held.is_empty() || rest.is_empty() {
            continue;
        }
        let (rx, ry) = (rows(&rest), labels(&rest));
        let h = retrain_head::train(Split { features: &rx, labels: &ry }, None, dim, classes, &cfg)?;
        for &i in &held {
            let p = retrain_head::softmax(&h.logits(&x[i * dim..(i + 1) * dim]));
            probs[i * classes..(i + 1) * classes].copy_from_slice(&p);
        }
    }
    Ok(OutOfFold { probs, fold, steps })
}

/// Out-of-fold probabilities and how they were made.
pub struct OutOfFold {
    /// `[n, classes]`, row-major.
    pub probs: Vec<f32>,
    pub fold: Vec<usize>,
    /// Steps each head was trained.
    pub steps: usize,
}

pub use retrain::metrics::argmax;

/// Per-class thresholds: the mean probability of class `j` over the photos labelled `j` (2, out
/// of reach, for a class no photo has).
pub fn thresholds(probs: &[f32], labels: &[usize], classes: usize) -> Vec<f32> {
    let (mut sum, mut count) = (vec![0f64; classes], vec![0usize; classes]);
    for (i, &l) in labels.iter().enumerate() {
        sum[l] += probs[i * classes + l] as f64;
        count[l] += 1;
    }
    (0..classes).map(|j| if count[j] == 0 { 2.0 } else { ((sum[j] / count[j] as f64) as f32).max(2e-6) }).collect()
}

/// `v` rounded to integers whose sum is `v`'s sum rounded: the values furthest from their
/// rounding move first (as cleanlab's `round_preserving_sum`).
fn round_preserving_sum(v: &[f64]) -> Vec<usize> {
    let mut ints: Vec<f64> = v.iter().map(|x| x.round()).collect();
    let target = v.iter().sum::<f64>().round();
    let mut diff = target - ints.iter().sum::<f64>();
    while diff.abs() > 0.5 {
        let step = diff.signum();
        let mut order: Vec<usize> = (0..v.len()).collect();
        // Up: those rounded down the most first (ties: the later first); down: those rounded
        // up the most (ties: the earlier first), as numpy's argsort reversed or not.
        let key = |i: usize| v[i] - ints[i];
        if step > 0.0 {
            order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(b.cmp(&a)));
        } else {
            order.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
        }
        for &i in order.iter().take((diff.abs() as usize).min(v.len())) {
            ints[i] += step;
            diff -= step;
        }
    }
    ints.iter().map(|&x| x.max(0.0) as usize).collect()
}

/// The calibrated confident joint `C[given][true]`: each photo counted where its given label
/// meets the class it is confident of (of several, its most probable class), at least one on
/// the diagonal; each row rescaled to the number of photos of its given label, the whole to the
/// number of photos, rounded keeping row totals.
pub fn confident_joint(probs: &[f32], labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let t = thresholds(probs, labels, classes);
    let mut c = vec![vec![0f64; classes]; classes];
    for (i, &l) in labels.iter().enumerate() {
        let p = &probs[i * classes..(i + 1) * classes];
        let confident: Vec<usize> = (0..classes).filter(|&j| p[j] >= t[j] - 1e-6).collect();
        let guess = match confident.len() {
            0 => continue,
            1 => confident[0],
            _ => argmax(p),
        };
        c[l][guess] += 1.0;
    }
    for (k, row) in c.iter_mut().enumerate() {
        row[k] = row[k].max(1.0);
    }
    let mut per_label = vec![0f64; classes];
    for &l in labels {
        per_label[l] += 1.0;
    }
    for (k, row) in c.iter_mut().enumerate() {
        let s: f64 = row.iter().sum();
        for v in row.iter_mut() {
            *v = *v / s.max(1e-100) * per_label[k];
        }
    }
    let total: f64 = c.iter().flatten().sum();
    let n = labels.len() as f64;
    c.iter()
        .map(|row| round_preserving_sum(&row.iter().map(|v| v / total.max(1e-100) * n).collect::<Vec<_>>()))
        .collect()
}

/// The photos confident learning flags, most suspicious (lowest self-confidence) first.
pub fn confident_learning(probs: &[f32], labels: &[usize], classes: usize) -> Vec<Issue> {
    let n = labels.len();
    if classes < 2 || probs.len() != n * classes {
        return Vec::new();
    }
    let c = confident_joint(probs, labels, classes);
    let mut flagged = vec![false; n];
    for (k, row) in c.iter().enumerate() {
        let members: Vec<usize> = (0..n).filter(|&i| labels[i] == k).collect();
        // Leave at least one photo in the class.
        let mut budget = members.len().saturating_sub(1);
        for (j, &count) in row.iter().enumerate() {
            if j == k || count == 0 {
                continue;
            }
            let take = count.min(budget);
            budget -= take;
            let mut by_margin = members.clone();
            let margin = |i: usize| probs[i * classes + j] - probs[i * classes + k];
            by_margin.sort_by(|&a, &b| margin(b).total_cmp(&margin(a)).then(a.cmp(&b)));
            for &i in by_margin.iter().take(take) {
                flagged[i] = true;
            }
        }
    }
    let mut issues: Vec<Issue> = (0..n)
        .filter(|&i| flagged[i])
        .filter_map(|i| {
            let p = &probs[i * classes..(i + 1) * classes];
            let top = argmax(p);
            // Not when its label is (within rounding) its most probable class.
            (p[top] > p[labels[i]] + 1e-6).then_some(Issue {
                index: i,
                suggested: top,
                self_confidence: p[labels[i]],
                confident: p[top] >= MOVE_AT,
            })
        })
        .collect();
    issues.sort_by(|a, b| a.self_confidence.total_cmp(&b.self_confidence).then(a.index.cmp(&b.index)));
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_the_sum() {
        assert_eq!(round_preserving_sum(&[0.5, 0.5, 0.5, 0.5]).iter().sum::<usize>(), 2);
        assert_eq!(round_preserving_sum(&[2.4, 2.4, 0.2]), vec![2, 3, 0]);
        assert_eq!(round_preserving_sum(&[1.6, 1.6, 0.8]), vec![1, 2, 1]);
    }

    #[test]
    fn the_confident_joint_counts_where_labels_meet_confident_classes() {
        // Class 0 photos are sure of 0, class 1 photos of 1, one class-0 photo is sure of 1.
        let probs = [0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.05, 0.95];
        let labels = [0, 0, 1, 1, 1, 0];
        let c = confident_joint(&probs, &labels, 2);
        assert_eq!(c, vec![vec![2, 1], vec![0, 3]]);
        let issues = confident_learning(&probs, &labels, 2);
        assert_eq!(issues, vec![Issue { index: 5, suggested: 1, self_confidence: 0.05, confident: true }]);
    }

    #[test]
    fn a_flagged_photo_is_suggested_a_move_only_when_surely_that_class() {
        // As above, but the misfiled photo is 0.85 class 1: flagged, above class 1's threshold
        // (0.8), below MOVE_AT.
        let probs = [0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.15, 0.85];
        let labels = [0, 0, 1, 1, 1, 0];
        let issues = confident_learning(&probs, &labels, 2);
        assert_eq!(issues.len(), 1);
        assert_eq!((issues[0].index, issues[0].suggested, issues[0].confident), (5, 1, false));
    }

    #[test]
    fn a_photo_whose_top_class_is_its_label_is_never_flagged() {
        // Photo 4 (label 1) reaches only class 0's low threshold, so the joint counts it as a
        // 1-labelled 0, but its top class is still 1.
        let probs = [
            0.4, 0.35, 0.25, 0.2, 0.1, 0.7, 0.05, 0.9, 0.05, 0.05, 0.85, 0.1, 0.35, 0.45, 0.2, 0.1, 0.1, 0.8, 0.1, 0.1,
            0.8,
        ];
        let labels = [0, 0, 1, 1, 1, 2, 2];
        assert_eq!(confident_joint(&probs, &labels, 3)[1], vec![1, 2, 0]);
        assert!(confident_learning(&probs, &labels, 3).is_empty());
    }

    #[test]
    fn out_of_fold_heads_find_flipped_labels_on_separable_blobs() {
        // Three well-separated blobs; five labels flipped.
        let mut s = 7u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for c in 0..3 {
            for _ in 0..40 {
                for d in 0..4 {
                    x.push(if d == c { 3.0 } else { 0.0 } + rnd());
                }
                y.push(c);
            }
        }
        let flipped = [3usize, 17, 50, 71, 100];
        for &i in &flipped {
            y[i] = (y[i] + 1) % 3;
        }
        let oof = out_of_fold(&x, &y, 4, 3, 5, &HeadConfig::default(), 1).unwrap();
        assert_eq!(oof.fold.iter().max(), Some(&4));
        let found: Vec<usize> = confident_learning(&oof.probs, &y, 3).iter().map(|i| i.index).collect();
        // Every photo flagged was flipped; the two flipped photos of class 0 are less sure of
        // their class than its mean (its threshold), so confident learning passes over them.
        assert!(found.iter().all(|i| flipped.contains(i)), "{found:?}");
        assert!(found.len() >= 3, "{found:?}");
    }
}
