//! Random initialisation, as torchvision initialises its classification networks: the start of
//! training from scratch (`retrain train --strategy scratch`).

use crate::{StateDict, Tensor};

/// splitmix64: small, seedable, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// One tensor's initial values. Convolutions: Kaiming normal, fan-out, ReLU gain (torchvision's
/// ResNet, MobileNet and EfficientNet); linear layers: N(0, 0.01²); BatchNorm and LayerNorm: weight
/// 1, bias 0, running statistics 0 and 1; other vectors (biases) 0.
pub fn kaiming(name: &str, shape: &[usize], rng_seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let constant = |v: f32| Tensor { shape: shape.to_vec(), data: vec![v; n] };
    let mut rng =
        Rng(rng_seed
            ^ name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)));
    let normal = |std: f64, rng: &mut Rng| Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|_| (rng.normal() * std) as f32).collect(),
    };
    match (leaf, shape.len()) {
        ("running_var", _) => constant(1.0),
        ("weight", 1) => constant(1.0),
        (_, 0 | 1) => constant(0.0),
        (_, 2) => normal(0.01, &mut rng),
        _ => {
            // [out, in/groups, kh, kw]: fan-out is out · kh · kw.
            let fan_out = shape[0] * shape[2..].iter().product::<usize>();
            normal((2.0 / fan_out.max(1) as f64).sqrt(), &mut rng)
        }
    }
}

/// A state dict of freshly initialised tensors for these names and shapes.
pub fn initialised(shapes: &[(String, Vec<usize>)], seed: u64) -> StateDict {
    shapes.iter().map(|(name, shape)| (name.clone(), kaiming(name, shape, seed))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convolutions_get_kaimings_spread_and_norms_start_as_identity() {
        let w = kaiming("features.1.conv.0.weight", &[64, 32, 3, 3], 7);
        let mean = w.data.iter().map(|&v| v as f64).sum::<f64>() / w.data.len() as f64;
        let var = w.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w.data.len() as f64;
        let want = 2.0 / (64.0 * 9.0);
        assert!(mean.abs() < 0.01 && (var / want - 1.0).abs() < 0.1, "mean {mean} var {var} want {want}");
        assert!(kaiming("bn.weight", &[8], 0).data.iter().all(|&v| v == 1.0));
        assert!(kaiming("bn.running_var", &[8], 0).data.iter().all(|&v| v == 1.0));
        assert!(kaiming("bn.bias", &[8], 0).data.iter().all(|&v| v == 0.0));
        let fc = kaiming("classifier.1.weight", &[10, 1000], 0);
        let sd = (fc.data.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 10_000.0).sqrt();
        assert!((sd - 0.01).abs() < 0.001, "{sd}");
        // Seeded: the same seed gives the same values, another seed others.
        assert_eq!(w.data, kaiming("features.1.conv.0.weight", &[64, 32, 3, 3], 7).data);
        assert_ne!(w.data, kaiming("features.1.conv.0.weight", &[64, 32, 3, 3], 8).data);
    }
}
