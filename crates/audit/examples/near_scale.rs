//! How the near-duplicate search scales (docs/audit.md): N synthetic unit rows of DIM
//! (clustered, non-negative like pooled ReLU features), timed.
//! usage: cargo run --release -p retrain-audit --example near_scale -- N [DIM]
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (n, dim) = (args.first().copied().unwrap_or(10_000), args.get(1).copied().unwrap_or(1280));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let centres: Vec<f32> = (0..10 * dim).map(|_| rng.random::<f32>()).collect();
    let x: Vec<f32> = (0..n)
        .flat_map(|i| {
            let c = (i % 10) * dim;
            (0..dim).map(|d| (centres[c + d] + rng.random::<f32>()).max(0.0)).collect::<Vec<_>>()
        })
        .collect();
    let unit = retrain_openset::unit_rows(&x, dim);
    let t = Instant::now();
    let pairs = retrain_audit::near::near_pairs(&unit, dim, 0.99, 20 * n).map_or(0, |p| p.len());
    println!(
        "{{\"photos\": {n}, \"dim\": {dim}, \"seconds\": {:.2}, \"pairs\": {pairs}, \"threads\": {}}}",
        t.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
}
