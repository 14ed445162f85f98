//! Metrics of photos that may each carry several labels, as scikit-learn computes them: per
//! class precision, recall, F1 (`zero_division=0`) and average precision
//! (`average_precision_score`: Σ (Rₙ − Rₙ₋₁)·Pₙ over the distinct scores, highest first); their
//! macro means, micro F1 over every (photo, class) decision, and subset accuracy (every label
//! of a photo right).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// None for a class no photo has (its ranking has nothing to find).
    pub average_precision: Option<f64>,
    /// Photos that have the class.
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiMetrics {
    /// The mean of the classes' average precisions (those with a photo).
    pub mean_average_precision: f64,
    pub macro_f1: f64,
    pub micro_f1: f64,
    /// Photos whose labels were all right, and no others added.
    pub subset_accuracy: f64,
    pub per_class: Vec<LabelMetrics>,
}

impl MultiMetrics {
    /// `eval`'s text: the averages, then per class precision, recall, F1, AP and support.
    pub fn to_text(&self) -> String {
        let w = self.per_class.iter().map(|c| c.class.len()).max().unwrap_or(5).max(5);
        let mut s = format!(
            "mAP {:.4}  macro F1 {:.4}  micro F1 {:.4}  subset accuracy {:.4}\n\n{:w$}  precision  recall     f1     AP  support\n",
            self.mean_average_precision, self.macro_f1, self.micro_f1, self.subset_accuracy, "class"
        );
        for c in &self.per_class {
            let ap = c.average_precision.map_or("     -".into(), |a| format!("{a:6.3}"));
            s += &format!(
                "{:w$}  {:9.3}  {:6.3}  {:5.3}  {ap}  {:7}\n",
                c.class, c.precision, c.recall, c.f1, c.support
            );
        }
        s
    }

    /// Per class precision, recall, F1, AP and support as CSV, then the averages (mAP in the AP
    /// column, macro and micro F1 and subset accuracy in the F1 column).
    pub fn to_csv(&self) -> String {
        let mut s = String::from("class,precision,recall,f1,average_precision,support\n");
        for c in &self.per_class {
            let ap = c.average_precision.map_or(String::new(), |a| format!("{a:.6}"));
            s += &format!(
                "{},{:.6},{:.6},{:.6},{ap},{}\n",
                retrain_files::names::csv(&c.class),
                c.precision,
                c.recall,
                c.f1,
                c.support
            );
        }
        s += &format!("mean average precision,,,,{:.6},\n", self.mean_average_precision);
        s += &format!("macro f1,,,{:.6},,\n", self.macro_f1);
        s += &format!("micro f1,,,{:.6},,\n", self.micro_f1);
        s += &format!("subset accuracy,,,{:.6},,\n", self.subset_accuracy);
        s
    }
}

/// Average precision of `scores` ranking the `truth` positives (None without positives).
pub fn average_precision(truth: &[bool], scores: &[f32]) -> Option<f64> {
    let positives = truth.iter().filter(|&&t| t).count();
    if positives == 0 {
        return None;
    }
    let (mut last_recall, mut ap) = (0f64, 0f64);
    for (kept, tp) in cuts(truth, scores).1 {
        let recall = tp as f64 / positives as f64;
        ap += (recall - last_recall) * (tp as f64 / kept as f64);
        last_recall = recall;
    }
    Some(ap)
}

/// The photos by score, highest first, and at each distinct score (photos of equal score are
/// one threshold) how many photos score at least that, and how many of those are positives.
fn cuts(truth: &[bool], scores: &[f32]) -> (Vec<usize>, Vec<(usize, usize)>) {
    let mut order: Vec<usize> = (0..truth.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut out, mut tp, mut i) = (Vec::new(), 0usize, 0usize);
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            tp += usize::from(truth[order[i]]);
            i += 1;
        }
        out.push((i, tp));
    }
    (order, out)
}

fn f1(tp: usize, fp: usize, fn_: usize) -> (f64, f64, f64) {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
    (p, r, ratio(2 * tp, 2 * tp + fp + fn_))
}

/// Metrics of `predicted` labels and `scores` against `truth`, each row-major
/// `[photos, names.len()]`.
pub fn compute(truth: &[bool], predicted: &[bool], scores: &[f32], names: &[String]) -> MultiMetrics {
    let k = names.len();
    let n = truth.len().checked_div(k).unwrap_or(0);
    let column = |v: &[bool], c: usize| (0..n).map(|i| v[i * k + c]).collect::<Vec<bool>>();
    let (mut all_tp, mut all_fp, mut all_fn) = (0, 0, 0);
    let per_class: Vec<LabelMetrics> = (0..k)
        .map(|c| {
            let (t, p) = (column(truth, c), column(predicted, c));
            let tp = t.iter().zip(&p).filter(|(&a, &b)| a && b).count();
            let fp = t.iter().zip(&p).filter(|(&a, &b)| !a && b).count();
            let fn_ = t.iter().zip(&p).filter(|(&a, &b)| a && !b).count();
            (all_tp, all_fp, all_fn) = (all_tp + tp, all_fp + fp, all_fn + fn_);
            let s: Vec<f32> = (0..n).map(|i| scores[i * k + c]).collect();
            let (precision, recall, f1) = f1(tp, fp, fn_);
            LabelMetrics {
                class: names[c].clone(),
                precision,
                recall,
                f1,
                average_precision: average_precision(&t, &s),
                support: tp + fn_,
            }
        })
        .collect();
    let aps: Vec<f64> = per_class.iter().filter_map(|m| m.average_precision).collect();
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    let exact = (0..n).filter(|&i| truth[i * k..(i + 1) * k] == predicted[i * k..(i + 1) * k]).count();
    MultiMetrics {
        mean_average_precision: mean(&aps),
        macro_f1: mean(&per_class.iter().map(|m| m.f1).collect::<Vec<_>>()),
        micro_f1: f1(all_tp, all_fp, all_fn).2,
        subset_accuracy: if n == 0 { 0.0 } else { exact as f64 / n as f64 },
        per_class,
    }
}

/// The threshold on one class's `scores` (probabilities) that maximises F1 against `truth`
/// (a photo has the class when its score is at or above it): midway between the lowest score
/// kept and the highest left out, so that a new photo between the two falls to the nearer side.
/// Of equal F1s, the one keeping fewest photos. Without a positive, 1 (nothing kept).
pub fn f1_threshold(truth: &[bool], scores: &[f32]) -> f32 {
    let positives = truth.iter().filter(|&&t| t).count();
    if positives == 0 {
        return 1.0;
    }
    let (order, cuts) = cuts(truth, scores);
    let (mut best, mut cut) = (-1f64, 0usize);
    for (kept, tp) in cuts {
        let f = 2.0 * tp as f64 / (kept + positives) as f64;
        if f > best {
            (best, cut) = (f, kept);
        }
    }
    let lowest_kept = scores[order[cut - 1]];
    let highest_out = order.get(cut).map_or(0.0, |&j| scores[j]);
    (lowest_kept + highest_out) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_is_scikit_learns() {
        // sklearn.metrics.average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333…
        let ap = average_precision(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-12, "{ap}");
        // Ties are one threshold: ([1, 0, 1, 0, 1], [0.5, 0.5, 0.9, 0.2, 0.5]) = 0.8333…
        // (one photo at a time, 0.5's three in file order, it would be 0.7556 or 0.9167).
        let ap = average_precision(&[true, false, true, false, true], &[0.5, 0.5, 0.9, 0.2, 0.5]).unwrap();
        assert!((ap - 0.833_333_333_333_333_3).abs() < 1e-12, "{ap}");
        assert_eq!(average_precision(&[false, false], &[0.3, 0.2]), None);
    }

    #[test]
    fn the_f1_threshold_is_the_best_cut() {
        // Kept: 0.9, 0.8, 0.6 (both positives, one negative): F1 0.8, better than 0.9 alone
        // (0.67) or everything (0.57); the cut lies midway between 0.6 and 0.3.
        let t = f1_threshold(&[true, true, false, false, false], &[0.9, 0.6, 0.8, 0.3, 0.1]);
        assert!((t - 0.45).abs() < 1e-6, "{t}");
        assert_eq!(f1_threshold(&[false, false], &[0.7, 0.2]), 1.0);
        // Against every cut on random scores: none does better.
        let mut s = 11u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        for _ in 0..20 {
            let scores: Vec<f32> = (0..40).map(|_| (rnd() * 20.0).round() / 20.0).collect();
            let truth: Vec<bool> = scores.iter().map(|&v| v + rnd() * 0.6 > 0.7).collect();
            if !truth.contains(&true) {
                continue;
            }
            let f1_at = |th: f32| {
                let p: Vec<bool> = scores.iter().map(|&v| v >= th).collect();
                let tp = truth.iter().zip(&p).filter(|(&a, &b)| a && b).count();
                let (fp, fn_) = (
                    truth.iter().zip(&p).filter(|(&a, &b)| !a && b).count(),
                    truth.iter().zip(&p).filter(|(&a, &b)| a && !b).count(),
                );
                f1(tp, fp, fn_).2
            };
            let chosen = f1_at(f1_threshold(&truth, &scores));
            assert!(scores.iter().all(|&c| f1_at(c) <= chosen + 1e-12));
        }
    }

    #[test]
    fn every_figure_is_scikit_learns() {
        // Five photos, three classes; predicted = score >= 0.5. scikit-learn 1.x:
        // average_precision_score(T, S) (macro), f1_score(average=macro|micro|None,
        // zero_division=0), precision_score, recall_score, accuracy_score (subset).
        let t = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]];
        let s = [[0.9, 0.2, 0.6], [0.3, 0.8, 0.1], [0.7, 0.4, 0.3], [0.2, 0.1, 0.05], [0.4, 0.3, 0.7]];
        let truth: Vec<bool> = t.iter().flatten().map(|&v| v == 1).collect();
        let scores: Vec<f32> = s.iter().flatten().copied().collect();
        let predicted: Vec<bool> = scores.iter().map(|&v| v >= 0.5).collect();
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let m = compute(&truth, &predicted, &scores, &names);
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(m.mean_average_precision, 0.833_333_333_333_333_4);
        close(m.macro_f1, 0.711_111_111_111_111_1);
        close(m.micro_f1, 0.727_272_727_272_727_3);
        close(m.subset_accuracy, 0.6);
        let want = [(1.0, 2.0 / 3.0, 0.8, 1.0, 3), (1.0, 0.5, 2.0 / 3.0, 1.0, 2), (0.5, 1.0, 2.0 / 3.0, 0.5, 1)];
        for (got, (p, r, f, ap, support)) in m.per_class.iter().zip(want) {
            close(got.precision, p);
            close(got.recall, r);
            close(got.f1, f);
            close(got.average_precision.unwrap(), ap);
            assert_eq!(got.support, support);
        }
    }
}
