//! Near-duplicates by embedding: features centred on the folder's mean and scaled to unit
//! length, so that the cosine of two photos says how alike they are beyond "both are flowers";
//! candidate pairs from random-hyperplane hashing (several tables of sign bits, a pair is a
//! candidate when any table puts it in one bucket), each candidate checked exactly. Memory is
//! linear in the photos; no N×N matrix is ever formed.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// How the search is tuned.
#[derive(Clone, Copy, Debug)]
pub struct Search {
    /// Centred cosine at or above which two photos are near-duplicates.
    pub threshold: f32,
    pub tables: usize,
    /// Sign bits per table (at most 64).
    pub bits: usize,
    pub seed: u64,
    /// Buckets larger than this are searched only within runs of this many photos, shuffled
    /// differently in each table, so one crowded bucket (hundreds of copies of one photo)
    /// cannot make the search quadratic; the groups still join them.
    pub max_bucket: usize,
}

impl Default for Search {
    fn default() -> Self {
        Self { threshold: DEFAULT_THRESHOLD, tables: 32, bits: 14, seed: 0, max_bucket: 256 }
    }
}

/// The threshold measured on flowers (`docs/audit.md`): every resized, recompressed, cropped or
/// brightened copy of 200 photos is above it, and pairs of distinct photos rarely are.
pub const DEFAULT_THRESHOLD: f32 = 0.90;

/// Two photos found alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub similarity: f32,
}

/// Rows of `x` (each `dim` long) minus their mean, scaled to unit length (a zero row stays zero).
pub fn centred_unit_rows(x: &[f32], dim: usize) -> Vec<f32> {
    let n = x.len() / dim.max(1);
    let mut mean = vec![0f64; dim];
    for r in x.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64;
        }
    }
    let mean: Vec<f32> = mean.iter().map(|m| (m / n.max(1) as f64) as f32).collect();
    let mut out = Vec::with_capacity(x.len());
    for r in x.chunks_exact(dim) {
        let c: Vec<f32> = r.iter().zip(&mean).map(|(v, m)| v - m).collect();
        let norm = c.iter().map(|v| v * v).sum::<f32>().sqrt();
        out.extend(c.iter().map(|v| if norm > 0.0 { v / norm } else { 0.0 }));
    }
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Every pair of rows of `unit` (centred unit rows of `dim`) whose cosine reaches the threshold,
/// found by hashing; sorted by similarity, highest first.
pub fn near_pairs(unit: &[f32], dim: usize, s: &Search) -> Vec<Pair> {
    let n = unit.len() / dim.max(1);
    let bits = s.bits.clamp(1, 64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed);
    // Gaussian hyperplanes (Box–Muller), one per bit per table.
    let mut planes = vec![0f32; s.tables * bits * dim];
    for v in planes.iter_mut() {
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        *v = ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32;
    }
    let codes: Vec<Vec<u64>> = (0..s.tables)
        .into_par_iter()
        .map(|t| {
            (0..n)
                .map(|i| {
                    let row = &unit[i * dim..(i + 1) * dim];
                    (0..bits).fold(0u64, |code, b| {
                        let p = &planes[(t * bits + b) * dim..(t * bits + b + 1) * dim];
                        code | (u64::from(dot(row, p) >= 0.0) << b)
                    })
                })
                .collect()
        })
        .collect();
    let candidates: HashSet<(usize, usize)> = codes
        .par_iter()
        .enumerate()
        .map(|(t, code)| {
            let mut buckets: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            for (i, &c) in code.iter().enumerate() {
                buckets.entry(c).or_default().push(i);
            }
            let mut shuffle = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed ^ (t as u64 + 1));
            let mut out = HashSet::new();
            for members in buckets.values_mut() {
                if members.len() > s.max_bucket {
                    members.shuffle(&mut shuffle);
                }
                for run in members.chunks(s.max_bucket.max(2)) {
                    for (x, &a) in run.iter().enumerate() {
                        for &b in &run[x + 1..] {
                            out.insert((a, b));
                        }
                    }
                }
            }
            out
        })
        .reduce(HashSet::new, |mut a, b| {
            a.extend(b);
            a
        });
    let mut pairs: Vec<Pair> = candidates
        .into_par_iter()
        .filter_map(|(a, b)| {
            let sim = dot(&unit[a * dim..(a + 1) * dim], &unit[b * dim..(b + 1) * dim]);
            (sim >= s.threshold).then_some(Pair { a, b, similarity: sim })
        })
        .collect();
    pairs.sort_by(|x, y| y.similarity.total_cmp(&x.similarity).then((x.a, x.b).cmp(&(y.a, y.b))));
    pairs
}

/// The photos joined by `pairs` into groups (connected components), each sorted, groups in the
/// order of their strongest pair.
pub fn groups(n: usize, pairs: &[Pair]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for p in pairs {
        let (ra, rb) = (root(&mut parent, p.a), root(&mut parent, p.b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut order = Vec::new();
    for p in pairs {
        let r = root(&mut parent, p.a);
        if let std::collections::hash_map::Entry::Vacant(e) = by_root.entry(r) {
            order.push(r);
            e.insert(Vec::new());
        }
    }
    for i in 0..n {
        let r = root(&mut parent, i);
        if let Some(g) = by_root.get_mut(&r) {
            g.push(i);
        }
    }
    order.into_iter().filter_map(|r| by_root.remove(&r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.random::<f32>()).collect()
    }

    #[test]
    fn hashing_finds_the_same_pairs_as_an_exhaustive_search() {
        let (n, dim) = (600, 64);
        let mut x = random_rows(n, dim, 1);
        // 30 photos get a slightly perturbed copy among the others.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut copies = Vec::new();
        for k in 0..30 {
            let (src, dst) = (k * 7, 300 + k * 9);
            for d in 0..dim {
                x[dst * dim + d] = x[src * dim + d] * (1.0 + 0.05 * (rng.random::<f32>() - 0.5));
            }
            copies.push((src.min(dst), src.max(dst)));
        }
        let unit = centred_unit_rows(&x, dim);
        let s = Search { threshold: 0.9, ..Search::default() };
        let mut exact = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                if dot(&unit[a * dim..(a + 1) * dim], &unit[b * dim..(b + 1) * dim]) >= s.threshold {
                    exact.push((a, b));
                }
            }
        }
        let mut found: Vec<(usize, usize)> = near_pairs(&unit, dim, &s).iter().map(|p| (p.a, p.b)).collect();
        found.sort();
        exact.sort();
        copies.sort();
        assert_eq!(exact, copies);
        assert_eq!(found, exact);
    }

    #[test]
    fn a_crowded_bucket_searched_in_runs_still_ends_in_one_group() {
        let dim = 16;
        let mut x = random_rows(50, dim, 3);
        let copy: Vec<f32> = x[..dim].to_vec();
        for _ in 0..1000 {
            x.extend(&copy);
        }
        let unit = centred_unit_rows(&x, dim);
        let pairs = near_pairs(&unit, dim, &Search::default());
        let g = groups(1050, &pairs);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0], std::iter::once(0).chain(50..1050).collect::<Vec<_>>());
    }

    #[test]
    fn pairs_join_into_groups() {
        let pairs = [
            Pair { a: 4, b: 5, similarity: 0.99 },
            Pair { a: 0, b: 2, similarity: 0.95 },
            Pair { a: 2, b: 7, similarity: 0.93 },
        ];
        assert_eq!(groups(8, &pairs), vec![vec![4, 5], vec![0, 2, 7]]);
    }
}
