//! Near-duplicates by embedding: the cosine of two photos' features (as the open-set score
//! measures them), every pair compared exactly, in tiles of a matrix product so that memory
//! stays linear in the photos (a tile per thread) while time grows as photos² × dimensions.

use rayon::prelude::*;
use std::collections::HashMap;

/// The threshold measured on flowers (`docs/audit.md`): 97% of resized, recompressed, cropped or
/// brightened copies of 200 photos are above it.
pub const DEFAULT_THRESHOLD: f32 = 0.93;

/// Rows per tile.
const TILE: usize = 512;

/// Two photos found alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub similarity: f32,
}

/// `dst [m, n] = a [m, dim] · b [n, dim]ᵀ`, rows contiguous.
fn tile(dst: &mut [f32], a: &[f32], b: &[f32], dim: usize) {
    let (m, n) = (a.len() / dim, b.len() / dim);
    assert!(dim > 0 && a.len() == m * dim && b.len() == n * dim && dst.len() == m * n, "tile: shapes disagree");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: `a` is m×dim (row stride dim), `b` read as dim×n (element (k, j) at j·dim + k) and
    // `dst` m×n (row stride n): every index is inside the slices, checked just above; `dst` is
    // borrowed mutably, so nothing else reads it meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            dim,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            dim as isize,
            b.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Every pair of rows of `unit` (unit rows of `dim`) whose cosine reaches `threshold`, sorted
/// by similarity, highest first; `None` when there would be more than `max_pairs` (a
/// threshold so low that the list would not be read, nor fit in memory).
pub fn near_pairs(unit: &[f32], dim: usize, threshold: f32, max_pairs: usize) -> Option<Vec<Pair>> {
    let n = unit.len() / dim.max(1);
    let blocks: Vec<(usize, usize)> =
        (0..n.div_ceil(TILE)).flat_map(|i| (i..n.div_ceil(TILE)).map(move |j| (i, j))).collect();
    let found = std::sync::atomic::AtomicUsize::new(0);
    let mut pairs: Vec<Pair> = blocks
        .par_iter()
        .map_init(Vec::new, |buf, &(bi, bj)| {
            let (i0, i1) = (bi * TILE, ((bi + 1) * TILE).min(n));
            let (j0, j1) = (bj * TILE, ((bj + 1) * TILE).min(n));
            buf.resize((i1 - i0) * (j1 - j0), 0.0);
            tile(buf, &unit[i0 * dim..i1 * dim], &unit[j0 * dim..j1 * dim], dim);
            let w = j1 - j0;
            let mut out = Vec::new();
            if found.load(std::sync::atomic::Ordering::Relaxed) > max_pairs {
                return out;
            }
            for a in i0..i1 {
                for b in j0.max(a + 1)..j1 {
                    let s = buf[(a - i0) * w + (b - j0)];
                    if s >= threshold {
                        out.push(Pair { a, b, similarity: s });
                    }
                }
            }
            found.fetch_add(out.len(), std::sync::atomic::Ordering::Relaxed);
            out
        })
        .flatten()
        .collect();
    if pairs.len() > max_pairs {
        return None;
    }
    pairs.sort_by(|x, y| y.similarity.total_cmp(&x.similarity).then((x.a, x.b).cmp(&(y.a, y.b))));
    Some(pairs)
}

/// Groups of near-copies from `pairs` (sorted, strongest first), each around its first photo,
/// so that a chain of each-a-little-alike photos (a burst, one flower after another) does not
/// become one group. The strongest pair of two ungrouped photos starts a group; a photo first seen
/// beside a grouped one joins that group when it is also alike to the group's first photo, else
/// a group of its own around its partner (a photo can then be in two groups). So every photo of
/// a pair is grouped with a photo it is alike to. Photos sorted within a group, groups in the
/// order of their strongest pair.
pub fn groups(pairs: &[Pair]) -> Vec<Vec<usize>> {
    let alike: std::collections::HashSet<(usize, usize)> = pairs.iter().map(|p| (p.a.min(p.b), p.a.max(p.b))).collect();
    let is_alike = |x: usize, y: usize| alike.contains(&(x.min(y), x.max(y)));
    // The group each photo was first put in, and the group a photo is the first of.
    let mut first_group: HashMap<usize, usize> = HashMap::new();
    let mut centres: HashMap<usize, usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for p in pairs {
        let (ga, gb) = (first_group.get(&p.a).copied(), first_group.get(&p.b).copied());
        let (grouped, new) = match (ga, gb) {
            (None, None) => {
                first_group.insert(p.a, out.len());
                first_group.insert(p.b, out.len());
                centres.insert(p.a, out.len());
                out.push(vec![p.a, p.b]);
                continue;
            }
            (Some(_), None) => (p.a, p.b),
            (None, Some(_)) => (p.b, p.a),
            (Some(_), Some(_)) => continue,
        };
        let g = match centres.get(&grouped) {
            Some(&g) => g,
            None if is_alike(out[first_group[&grouped]][0], new) => first_group[&grouped],
            None => {
                centres.insert(grouped, out.len());
                out.push(vec![grouped]);
                out.len() - 1
            }
        };
        out[g].push(new);
        first_group.insert(new, g);
    }
    for g in &mut out {
        g.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() - 0.5).collect();
        retrain_openset::unit_rows(&x, dim)
    }

    #[test]
    fn tiles_find_the_same_pairs_as_comparing_every_two_rows() {
        // Over two tiles each way, with 30 perturbed copies planted.
        let (n, dim) = (1100, 24);
        let mut x = random_unit_rows(n, dim, 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for k in 0..30 {
            let (src, dst) = (k * 7, 500 + k * 19);
            for d in 0..dim {
                x[dst * dim + d] = x[src * dim + d] + 0.03 * (rng.random::<f32>() - 0.5);
            }
        }
        let x = retrain_openset::unit_rows(&x, dim);
        let threshold = 0.9;
        let mut exact = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let s: f32 = (0..dim).map(|d| x[a * dim + d] * x[b * dim + d]).sum();
                if s >= threshold {
                    exact.push((a, b));
                }
            }
        }
        let found = near_pairs(&x, dim, threshold, 1000).unwrap();
        let mut got: Vec<(usize, usize)> = found.iter().map(|p| (p.a, p.b)).collect();
        got.sort();
        assert!(exact.len() >= 30, "{}", exact.len());
        assert_eq!(got, exact);
        assert!(found.windows(2).all(|w| w[0].similarity >= w[1].similarity));
    }

    #[test]
    fn too_many_pairs_is_refused_rather_than_collected() {
        let x = random_unit_rows(300, 8, 3);
        assert!(near_pairs(&x, 8, -1.0, 1000).is_none());
        assert_eq!(near_pairs(&x, 8, -1.0, 300 * 299 / 2).map(|p| p.len()), Some(300 * 299 / 2));
    }

    #[test]
    fn groups_grow_around_their_first_photo_not_along_chains() {
        let pairs = [
            Pair { a: 4, b: 5, similarity: 0.99 },
            Pair { a: 0, b: 2, similarity: 0.95 },
            Pair { a: 2, b: 7, similarity: 0.93 },
        ];
        // 7 is like 2 but not like 0, where 2's group started: a group of its own around 2.
        assert_eq!(groups(&pairs), vec![vec![4, 5], vec![0, 2], vec![2, 7]]);
        let mut with_07 = pairs.to_vec();
        with_07.insert(2, Pair { a: 0, b: 7, similarity: 0.94 });
        assert_eq!(groups(&with_07), vec![vec![4, 5], vec![0, 2, 7]]);
        // A chain 10-11-12-13, each like the next only: no group of four.
        let chain: Vec<Pair> = (10..13).map(|a| Pair { a, b: a + 1, similarity: 0.95 }).collect();
        assert_eq!(groups(&chain), vec![vec![10, 11], vec![11, 12], vec![12, 13]]);
    }
}
