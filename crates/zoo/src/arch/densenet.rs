//! torchvision `densenet121` (Huang et al. 2016): pre-activation BatchNorm, so the norms
//! before a convolution are affine maps and only the one after `conv1` is folded.

use super::ops::{act, bn_affine, concat, pool, Act, Conv, Hw};
use super::{pooled_with_fc, Trunk};
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

const EPS: f32 = 1e-5;
const GROWTH: usize = 32;
const BN_SIZE: usize = 4;

pub(crate) fn densenet121(g: &mut GraphBuilder, w: &mut Weights, x: &str, mut hw: Hw, logits: bool) -> Trunk {
    let mut x = Conv::new("features.conv0", 3, 64, 7)
        .stride(2)
        .bn("features.norm0", EPS)
        .act(Act::Relu)
        .build(g, w, x, &mut hw);
    x = pool(g, &x, true, 3, 2, 1, false, &mut hw);
    let mut c = 64;
    for (bi, layers) in [6, 12, 24, 16].into_iter().enumerate() {
        let b = format!("features.denseblock{}", bi + 1);
        for li in 1..=layers {
            let p = format!("{b}.denselayer{li}");
            let y = bn_affine(g, w, &x, &format!("{p}.norm1"), c, EPS);
            let y = act(g, &y, Act::Relu);
            let y = Conv::new(format!("{p}.conv1"), c, BN_SIZE * GROWTH, 1)
                .bn(format!("{p}.norm2"), EPS)
                .act(Act::Relu)
                .build(g, w, &y, &mut hw);
            let y = Conv::new(format!("{p}.conv2"), BN_SIZE * GROWTH, GROWTH, 3).build(g, w, &y, &mut hw);
            x = concat(g, &[&x, &y], 1);
            c += GROWTH;
        }
        if bi < 3 {
            let t = format!("features.transition{}", bi + 1);
            let y = bn_affine(g, w, &x, &format!("{t}.norm"), c, EPS);
            let y = act(g, &y, Act::Relu);
            let y = Conv::new(format!("{t}.conv"), c, c / 2, 1).build(g, w, &y, &mut hw);
            x = pool(g, &y, false, 2, 2, 0, false, &mut hw);
            c /= 2;
        }
    }
    let y = bn_affine(g, w, &x, "features.norm5", c, EPS);
    let y = act(g, &y, Act::Relu);
    pooled_with_fc(g, w, &y, c, "classifier", logits)
}

/// The official checkpoint predates torchvision's module renaming (`norm.1` for `norm1`);
/// torchvision rewrites those keys on load, and so does retrain.
pub(crate) fn modern_key(key: &str) -> Option<String> {
    if !key.contains(".denselayer") {
        return None;
    }
    let mut out = key.to_string();
    let mut changed = false;
    for part in ["norm", "relu", "conv"] {
        for i in ["1", "2"] {
            let old = format!(".{part}.{i}.");
            if out.contains(&old) {
                out = out.replace(&old, &format!(".{part}{i}."));
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::modern_key;

    #[test]
    fn legacy_densenet_keys_are_renamed_like_torchvision_does() {
        assert_eq!(
            modern_key("features.denseblock1.denselayer1.norm.1.weight").as_deref(),
            Some("features.denseblock1.denselayer1.norm1.weight")
        );
        assert_eq!(
            modern_key("features.denseblock4.denselayer16.conv.2.weight").as_deref(),
            Some("features.denseblock4.denselayer16.conv2.weight")
        );
        assert_eq!(modern_key("features.denseblock1.denselayer1.norm1.weight"), None);
        assert_eq!(modern_key("features.transition1.norm.weight"), None);
    }
}
