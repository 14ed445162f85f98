//! The bank of training features and the nearest-neighbour score against it.

use rayon::prelude::*;

/// Each row of `x` scaled to unit length (an all-zero row stays zero).
pub fn unit_rows(x: &[f32], dim: usize) -> Vec<f32> {
    x.chunks_exact(dim)
        .flat_map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(move |v| v / n)
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Rounded through half precision, as the graph stores the bank.
fn as_stored(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Up to `want` of `rows` (indices into the unit rows `unit`) that cover them: greedy
/// k-centre, starting from the row nearest the rows' mean, each next row the one farthest
/// from those chosen. Deterministic.
fn cover(unit: &[f32], dim: usize, rows: &[usize], want: usize) -> Vec<usize> {
    if rows.len() <= want {
        return rows.to_vec();
    }
    let row = |i: usize| &unit[i * dim..(i + 1) * dim];
    let mut mean = vec![0f32; dim];
    for &i in rows {
        mean.iter_mut().zip(row(i)).for_each(|(m, v)| *m += v);
    }
    let first = rows.iter().copied().max_by(|&a, &b| dot(row(a), &mean).total_cmp(&dot(row(b), &mean))).expect("rows");
    let mut chosen = vec![first];
    let mut far: Vec<f32> = rows.par_iter().map(|&i| 1.0 - dot(row(i), row(first))).collect();
    while chosen.len() < want {
        let (at, _) = far.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("rows");
        let next = rows[at];
        chosen.push(next);
        far.par_iter_mut().zip(rows.par_iter()).for_each(|(d, &i)| *d = d.min(1.0 - dot(row(i), row(next))));
    }
    chosen
}

/// The bank from the unit rows `unit` listed in `rows`: at most about `max` of them, each
/// class given a share by its size (at least one), as unit rows rounded as stored.
pub fn bank(unit: &[f32], labels: &[usize], dim: usize, rows: &[usize], max: usize) -> Vec<f32> {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut out = Vec::new();
    for c in 0..classes {
        let of: Vec<usize> = rows.iter().copied().filter(|&i| labels[i] == c).collect();
        if of.is_empty() {
            continue;
        }
        let share = (max as u128 * of.len() as u128).div_ceil(rows.len().max(1) as u128) as usize;
        for i in cover(unit, dim, &of, share.max(1)) {
            out.extend(unit[i * dim..(i + 1) * dim].iter().map(|&v| as_stored(v)));
        }
    }
    out
}

/// Each unit row of `queries` scored against `bank`: 1 − its largest cosine similarity.
pub fn nearest(bank: &[f32], dim: usize, queries: &[f32]) -> Vec<f32> {
    queries
        .par_chunks_exact(dim)
        .map(|q| 1.0 - bank.chunks_exact(dim).map(|b| dot(q, b)).fold(f32::NEG_INFINITY, f32::max))
        .collect()
}

/// A fold for each row: each class dealt round-robin over `k` folds in a seeded order, so
/// every fold holds about the same share of each class. Fewer rows than `k`: one fold each.
pub fn folds(labels: &[usize], k: usize, seed: u64) -> Vec<usize> {
    let k = k.clamp(2, labels.len().max(2));
    let mut order: Vec<usize> = (0..labels.len()).collect();
    // A seeded shuffle (splitmix64 keys), so runs are reproducible.
    let key = |i: usize| {
        let mut z = seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    order.sort_by_key(|&i| (labels[i], key(i)));
    let mut fold = vec![0; labels.len()];
    for (next, i) in order.into_iter().enumerate() {
        fold[i] = next % k;
    }
    fold
}

/// Each row's score against a bank built, as [`bank`], from the rows of the other folds.
pub fn out_of_fold_scores(unit: &[f32], labels: &[usize], dim: usize, fold: &[usize], max: usize) -> Vec<f32> {
    let k = fold.iter().max().map_or(0, |m| m + 1);
    let mut out = vec![f32::NAN; labels.len()];
    for f in 0..k {
        let (held, rest): (Vec<usize>, Vec<usize>) = (0..labels.len()).partition(|&i| fold[i] == f);
        if held.is_empty() || rest.is_empty() {
            continue;
        }
        let b = bank(unit, labels, dim, &rest, max);
        let q: Vec<f32> = held.iter().flat_map(|&i| unit[i * dim..(i + 1) * dim].iter().copied()).collect();
        for (i, s) in held.into_iter().zip(nearest(&b, dim, &q)) {
            out[i] = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_reproducible() {
        let labels: Vec<usize> = (0..50).map(|i| usize::from(i >= 40)).collect();
        let f = folds(&labels, 5, 7);
        assert_eq!(f, folds(&labels, 5, 7));
        assert_ne!(f, folds(&labels, 5, 8));
        for k in 0..5 {
            assert_eq!((0..50).filter(|&i| f[i] == k && labels[i] == 0).count(), 8);
            assert_eq!((0..50).filter(|&i| f[i] == k && labels[i] == 1).count(), 2);
        }
        // Three rows: three folds, not five.
        assert_eq!(*folds(&[0, 1, 0], 5, 0).iter().max().unwrap(), 2);
    }

    #[test]
    fn the_bank_is_bounded_shared_by_class_size_and_covers_each_class() {
        let dim = 2;
        // Class 0: 30 rows on the unit circle's first quarter; class 1: 10 rows at one point.
        let mut x = Vec::new();
        for i in 0..30 {
            let a = i as f32 / 29.0 * std::f32::consts::FRAC_PI_2;
            x.extend([a.cos(), a.sin()]);
        }
        for _ in 0..10 {
            x.extend([-1.0, 0.0]);
        }
        let labels: Vec<usize> = (0..40).map(|i| usize::from(i >= 30)).collect();
        let unit = unit_rows(&x, dim);
        let rows: Vec<usize> = (0..40).collect();
        let b = bank(&unit, &labels, dim, &rows, 8);
        // 8·30/40 = 6 of class 0, 8·10/40 = 2 of class 1.
        assert_eq!(b.len() / dim, 8);
        // Covering: both ends of the quarter circle are in it.
        let has = |p: [f32; 2]| b.chunks_exact(2).any(|r| (r[0] - p[0]).abs() < 1e-3 && (r[1] - p[1]).abs() < 1e-3);
        assert!(has([1.0, 0.0]) && has([0.0, 1.0]), "{b:?}");
        assert_eq!(bank(&unit, &labels, dim, &rows, 1000).len(), 80);
    }

    #[test]
    fn nearest_is_one_minus_the_best_cosine() {
        let b = unit_rows(&[1.0, 0.0, 0.0, 1.0], 2);
        let q = unit_rows(&[3.0, 0.0, -1.0, 0.0, 1.0, 1.0], 2);
        let s = nearest(&b, 2, &q);
        assert!(s[0].abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6);
        assert!((s[2] - (1.0 - std::f32::consts::FRAC_1_SQRT_2)).abs() < 1e-3);
    }
}
