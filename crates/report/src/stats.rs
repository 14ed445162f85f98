//! The numbers the page shows beyond `retrain::metrics`: an interval for the accuracy, the
//! most confused pairs, and a 2-D projection of the features.

use serde::Serialize;

/// Wilson's 95% score interval for `correct` of `n`: unlike p ± 1.96·se it stays inside [0, 1]
/// and is honest near 100%, where small validation sets usually are.
pub fn wilson(correct: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (z, n) = (1.959_963_984_540_054_f64, n as f64);
    let p = correct as f64 / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// A true class taken for another, `count` times.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Confusion {
    #[serde(rename = "true")]
    pub truth: String,
    pub predicted: String,
    pub count: usize,
}

/// The off-diagonal cells of `matrix[true][predicted]`, most frequent first, at most `n`.
pub fn confused_pairs(matrix: &[Vec<usize>], names: &[String], n: usize) -> Vec<Confusion> {
    let mut pairs: Vec<Confusion> = matrix
        .iter()
        .enumerate()
        .flat_map(|(t, row)| {
            row.iter().enumerate().filter(move |&(p, &c)| p != t && c > 0).map(move |(p, &count)| Confusion {
                truth: names[t].clone(),
                predicted: names[p].clone(),
                count,
            })
        })
        .collect();
    pairs.sort_by_key(|p| std::cmp::Reverse(p.count));
    pairs.truncate(n);
    pairs
}

/// The first two principal components of `rows` (each `dim` long): each row's coordinates and
/// the share of the variance each component explains. Power iteration with deflation: two
/// components of a few thousand rows need nothing more.
pub fn pca2(rows: &[Vec<f32>]) -> (Vec<[f32; 2]>, [f64; 2]) {
    let n = rows.len();
    let dim = rows.first().map_or(0, Vec::len);
    if n < 2 || dim == 0 {
        return (vec![[0.0, 0.0]; n], [0.0, 0.0]);
    }
    let mean: Vec<f64> = (0..dim).map(|k| rows.iter().map(|r| r[k] as f64).sum::<f64>() / n as f64).collect();
    let x: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect()).collect();
    let total: f64 = x.iter().flatten().map(|v| v * v).sum();
    let mut components: Vec<Vec<f64>> = Vec::new();
    let mut explained = [0.0; 2];
    for (c, share) in explained.iter_mut().enumerate() {
        // A fixed, uneven start: the result must not depend on chance.
        let mut v: Vec<f64> = (0..dim).map(|k| 1.0 + ((k * 7 + c * 13) % 17) as f64 / 17.0).collect();
        let mut eigen = 0.0;
        for _ in 0..200 {
            let xv: Vec<f64> = x.iter().map(|r| dot(r, &v)).collect();
            let mut next = vec![0.0; dim];
            for (r, s) in x.iter().zip(&xv) {
                for (a, b) in next.iter_mut().zip(r) {
                    *a += s * b;
                }
            }
            for u in &components {
                let p = dot(&next, u);
                next.iter_mut().zip(u).for_each(|(a, b)| *a -= p * b);
            }
            let norm = dot(&next, &next).sqrt();
            if norm == 0.0 {
                break;
            }
            next.iter_mut().for_each(|a| *a /= norm);
            let moved: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            (v, eigen) = (next, norm);
            if moved < 1e-9 {
                break;
            }
        }
        *share = if total > 0.0 { eigen / total } else { 0.0 };
        components.push(v);
    }
    let coords = x.iter().map(|r| [dot(r, &components[0]) as f32, dot(r, &components[1]) as f32]).collect();
    (coords, explained)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_textbook_values() {
        // 95 of 100: 0.888–0.978 (Newcombe 1998's method 3).
        let [lo, hi] = wilson(95, 100);
        assert!((lo - 0.8883).abs() < 1e-3 && (hi - 0.9785).abs() < 1e-3, "{lo} {hi}");
        let [lo, hi] = wilson(10, 10);
        assert!((hi - 1.0).abs() < 1e-12 && (lo - 0.7225).abs() < 1e-3, "{lo} {hi}");
    }

    #[test]
    fn pairs_are_the_largest_off_diagonal_cells() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let m = vec![vec![9, 1, 4], vec![0, 8, 2], vec![3, 0, 7]];
        let p = confused_pairs(&m, &names, 2);
        assert_eq!(p[0], Confusion { truth: "a".into(), predicted: "c".into(), count: 4 });
        assert_eq!(p[1].count, 3);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn pca_finds_the_direction_of_largest_spread() {
        // Points along (1, 1, 0) with spread 10, along (1, -1, 0) with spread 1, z constant.
        let rows: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                let (a, b) = ((i as f32 - 20.0) / 2.0, if i % 2 == 0 { 0.5 } else { -0.5 });
                vec![a + b, a - b, 3.0]
            })
            .collect();
        let (coords, share) = pca2(&rows);
        assert!(share[0] > 0.95 && share[1] > 0.0 && share[0] + share[1] > 0.999, "{share:?}");
        // The first coordinate orders the points as `a` does.
        let first: Vec<f32> = coords.iter().map(|c| c[0] * coords[39][0].signum()).collect();
        assert!(first.windows(2).all(|w| w[0] < w[1]));
        assert!(coords.iter().all(|c| c[1].abs() < 0.8), "{coords:?}");
    }
}
