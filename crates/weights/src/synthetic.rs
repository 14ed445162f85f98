//! A small deterministic weight generator, so that architectures can be checked against
//! PyTorch without real weights: `tools/make_parity_fixtures.py` fills torchvision's models
//! with the same values. The rule is documented there; both sides must change together.

use crate::Tensor;

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3))
}

/// The `i`-th (0-based) splitmix64 output for `seed`.
fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The synthetic value of every element of tensor `name` with `shape`.
pub fn synthetic(name: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let seed = fnv1a(name);
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let fan_in = if shape.is_empty() { 1 } else { n / shape[0].max(1) };
    let (scale, offset) = match leaf {
        "running_var" => (0.5, 1.0),
        "running_mean" => (0.1, 0.0),
        "layer_scale" => (0.5, 0.0),
        "class_token" | "pos_embedding" => (0.1, 0.0),
        "weight" if shape.len() == 1 => (0.2, 1.0),
        _ if shape.len() <= 1 => (0.1, 0.0),
        _ => ((3.0 / fan_in as f64).sqrt(), 0.0),
    };
    let data = (0..n as u64)
        .map(|i| {
            let r = (splitmix(seed, i) >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0;
            (scale * r + offset) as f32
        })
        .collect();
    Tensor { shape: shape.to_vec(), data }
}

/// Synthetic pixels: `n` bytes for `name` (the fixtures' inputs).
pub fn synthetic_bytes(name: &str, n: usize) -> Vec<u8> {
    let seed = fnv1a(name);
    (0..n as u64).map(|i| (splitmix(seed, i) >> 56) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // FNV-1a 64 of "a" and the first splitmix64 outputs of seed 0 (the published test vector
        // of splitmix64 starts 0xE220A8397B1DCDAF).
        assert_eq!(fnv1a("a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(splitmix(0, 0), 0xE220_A839_7B1D_CDAF);
        let t = synthetic("x.running_var", &[1000]);
        assert!(t.data.iter().all(|v| (0.5..1.5).contains(v)));
        let w = synthetic("conv.weight", &[8, 4, 3, 3]);
        let bound = (3.0f32 / 36.0).sqrt();
        assert!(w.data.iter().all(|v| v.abs() <= bound));
        assert_ne!(w.data[0], w.data[1]);
    }
}
