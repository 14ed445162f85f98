//! Classification metrics: accuracy, per-class precision/recall/F1, confusion matrix.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    pub accuracy: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion_matrix[true][predicted]`.
    pub confusion_matrix: Vec<Vec<usize>>,
    pub class_names: Vec<String>,
}

/// Metrics of predicted against true labels.
pub fn compute(truth: &[usize], predicted: &[usize], class_names: &[String]) -> Metrics {
    let k = class_names.len();
    let mut cm = vec![vec![0usize; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        cm[t][p] += 1;
    }
    let correct: usize = (0..k).map(|i| cm[i][i]).sum();
    let per_class = (0..k)
        .map(|c| {
            let tp = cm[c][c] as f64;
            let support: usize = cm[c].iter().sum();
            let predicted: usize = (0..k).map(|t| cm[t][c]).sum();
            let precision = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
            let recall = if support > 0 { tp / support as f64 } else { 0.0 };
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassMetrics { class: class_names[c].clone(), precision, recall, f1, support }
        })
        .collect();
    Metrics {
        accuracy: if truth.is_empty() { 0.0 } else { correct as f64 / truth.len() as f64 },
        per_class,
        confusion_matrix: cm,
        class_names: class_names.to_vec(),
    }
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// The class an answer is: the index of the largest value, the first of equals (as `predict`
/// ranks ties, and as numpy's `argmax`); a NaN is never the largest. Every stage that turns
/// probabilities into a class calls this one.
pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold(0, |b, (j, &v)| if v > p[b] || p[b].is_nan() && !v.is_nan() { j } else { b })
}

impl Metrics {
    /// A plain-text table for the terminal.
    pub fn to_text(&self) -> String {
        let w = self.class_names.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
        let mut s = format!("accuracy {:.4}\n\n{:w$}  precision  recall     f1  support\n", self.accuracy, "class");
        for c in &self.per_class {
            s += &format!("{:w$}  {:9.3}  {:6.3}  {:5.3}  {:7}\n", c.class, c.precision, c.recall, c.f1, c.support);
        }
        s += "\nconfusion matrix (rows: true, columns: predicted)\n";
        s += &format!(
            "{:w$}  {}\n",
            "",
            self.class_names.iter().map(|c| format!("{c:>8.8}")).collect::<Vec<_>>().join(" ")
        );
        for (i, row) in self.confusion_matrix.iter().enumerate() {
            s += &format!(
                "{:w$}  {}\n",
                self.class_names[i],
                row.iter().map(|v| format!("{v:>8}")).collect::<Vec<_>>().join(" ")
            );
        }
        s
    }

    /// Per class precision, recall, F1 and support as CSV, then accuracy in the F1 column
    /// with the total support (as scikit-learn's classification report lays it out).
    pub fn to_csv(&self) -> String {
        let mut s = String::from("class,precision,recall,f1,support\n");
        for c in &self.per_class {
            let name = retrain_files::names::csv(&c.class);
            s += &format!("{name},{:.6},{:.6},{:.6},{}\n", c.precision, c.recall, c.f1, c.support);
        }
        let total: usize = self.per_class.iter().map(|c| c.support).sum();
        s += &format!("accuracy,,,{:.6},{total}\n", self.accuracy);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equals_and_never_a_nan() {
        assert_eq!(argmax(&[0.5, 0.5]), 0);
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.1, 0.3]), 2);
        assert_eq!(argmax(&[0.3, f32::NAN, 0.1]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn known_values() {
        let names = vec!["a".to_string(), "b".to_string()];
        // truth a a a b b, predicted a a b b a
        let m = compute(&[0, 0, 0, 1, 1], &[0, 0, 1, 1, 0], &names);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert_eq!(m.confusion_matrix, vec![vec![2, 1], vec![1, 1]]);
        assert!((m.per_class[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].f1 - 0.5).abs() < 1e-12);
        assert_eq!(m.per_class[1].support, 2);
        assert!(m.to_text().contains("accuracy 0.6000"));
        assert_eq!(
            m.to_csv(),
            "class,precision,recall,f1,support\na,0.666667,0.666667,0.666667,3\nb,0.500000,0.500000,0.500000,2\naccuracy,,,0.600000,5\n"
        );
    }
}
