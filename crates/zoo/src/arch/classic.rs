//! torchvision `alexnet`, `vgg16`, `vgg16_bn`, `squeezenet1_1`.

use super::ops::{act, concat, flatten, global_avg_pool, linear, pool, Act, Conv, Hw};
use super::Trunk;
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

/// Adaptive average pooling to `out`×`out` where the input divides evenly (true at the
/// registry's input sizes: AlexNet 6×6 → 6×6, VGG 7×7 → 7×7).
fn adaptive_avg(g: &mut GraphBuilder, x: &str, hw: &mut Hw, out: usize) -> String {
    assert!(hw.0.is_multiple_of(out) && hw.1.is_multiple_of(out), "adaptive pool {hw:?} -> {out} needs an even split");
    let k = hw.0 / out;
    if k == 1 {
        return x.to_string();
    }
    pool(g, x, false, k, k, 0, false, hw)
}

/// The two 4096-wide fully connected layers (with ReLU) of AlexNet and VGG, then the
/// ImageNet layer: features are the second 4096 activations.
fn fc_head(g: &mut GraphBuilder, w: &mut Weights, x: &str, cin: usize, names: [&str; 3], logits: bool) -> Trunk {
    let x = flatten(g, x);
    let x = linear(g, w, &x, names[0], cin, 4096);
    let x = act(g, &x, Act::Relu);
    let x = linear(g, w, &x, names[1], 4096, 4096);
    let features = act(g, &x, Act::Relu);
    let logits = logits.then(|| linear(g, w, &features, names[2], 4096, 1000));
    Trunk { features, logits }
}

pub(crate) fn alexnet(g: &mut GraphBuilder, w: &mut Weights, x: &str, mut hw: Hw, logits: bool) -> Trunk {
    let mut x = Conv::new("features.0", 3, 64, 11)
        .stride(4)
        .pad(super::ops::Pad::Explicit(2, 2))
        .bias()
        .act(Act::Relu)
        .build(g, w, x, &mut hw);
    x = pool(g, &x, true, 3, 2, 0, false, &mut hw);
    x = Conv::new("features.3", 64, 192, 5).bias().act(Act::Relu).build(g, w, &x, &mut hw);
    x = pool(g, &x, true, 3, 2, 0, false, &mut hw);
    x = Conv::new("features.6", 192, 384, 3).bias().act(Act::Relu).build(g, w, &x, &mut hw);
    x = Conv::new("features.8", 384, 256, 3).bias().act(Act::Relu).build(g, w, &x, &mut hw);
    x = Conv::new("features.10", 256, 256, 3).bias().act(Act::Relu).build(g, w, &x, &mut hw);
    x = pool(g, &x, true, 3, 2, 0, false, &mut hw);
    x = adaptive_avg(g, &x, &mut hw, 6);
    fc_head(g, w, &x, 256 * 36, ["classifier.1", "classifier.4", "classifier.6"], logits)
}

/// VGG configuration "D": channel counts, 0 for a max pool.
const VGG16: [usize; 18] = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];

pub(crate) fn vgg16(g: &mut GraphBuilder, w: &mut Weights, x: &str, mut hw: Hw, bn: bool, logits: bool) -> Trunk {
    let mut x = x.to_string();
    let (mut idx, mut cin) = (0, 3);
    for c in VGG16 {
        if c == 0 {
            x = pool(g, &x, true, 2, 2, 0, false, &mut hw);
            idx += 1;
            continue;
        }
        let mut conv = Conv::new(format!("features.{idx}"), cin, c, 3).bias().act(Act::Relu);
        if bn {
            conv = conv.bn(format!("features.{}", idx + 1), 1e-5);
        }
        x = conv.build(g, w, &x, &mut hw);
        idx += if bn { 3 } else { 2 };
        cin = c;
    }
    x = adaptive_avg(g, &x, &mut hw, 7);
    fc_head(g, w, &x, 512 * 49, ["classifier.0", "classifier.3", "classifier.6"], logits)
}

/// SqueezeNet's Fire module: squeeze 1×1, then expand 1×1 and 3×3 side by side.
fn fire(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    hw: &mut Hw,
    p: &str,
    cin: usize,
    s: usize,
    e: usize,
) -> String {
    let sq = Conv::new(format!("{p}.squeeze"), cin, s, 1).bias().act(Act::Relu).build(g, w, x, hw);
    let a = Conv::new(format!("{p}.expand1x1"), s, e, 1).bias().act(Act::Relu).build(g, w, &sq, hw);
    let b = Conv::new(format!("{p}.expand3x3"), s, e, 3).bias().act(Act::Relu).build(g, w, &sq, hw);
    concat(g, &[&a, &b], 1)
}

pub(crate) fn squeezenet1_1(g: &mut GraphBuilder, w: &mut Weights, x: &str, mut hw: Hw, logits: bool) -> Trunk {
    let mut x = Conv::new("features.0", 3, 64, 3)
        .stride(2)
        .pad(super::ops::Pad::Explicit(0, 0))
        .bias()
        .act(Act::Relu)
        .build(g, w, x, &mut hw);
    x = pool(g, &x, true, 3, 2, 0, true, &mut hw);
    x = fire(g, w, &x, &mut hw, "features.3", 64, 16, 64);
    x = fire(g, w, &x, &mut hw, "features.4", 128, 16, 64);
    x = pool(g, &x, true, 3, 2, 0, true, &mut hw);
    x = fire(g, w, &x, &mut hw, "features.6", 128, 32, 128);
    x = fire(g, w, &x, &mut hw, "features.7", 256, 32, 128);
    x = pool(g, &x, true, 3, 2, 0, true, &mut hw);
    x = fire(g, w, &x, &mut hw, "features.9", 256, 48, 192);
    x = fire(g, w, &x, &mut hw, "features.10", 384, 48, 192);
    x = fire(g, w, &x, &mut hw, "features.11", 384, 64, 256);
    x = fire(g, w, &x, &mut hw, "features.12", 512, 64, 256);
    let p = global_avg_pool(g, &x);
    let features = flatten(g, &p);
    // The ImageNet classifier is a 1×1 conv + ReLU applied before the pooling.
    let logits = logits.then(|| {
        let y = Conv::new("classifier.1", 512, 1000, 1).bias().act(Act::Relu).build(g, w, &x, &mut hw);
        let y = global_avg_pool(g, &y);
        flatten(g, &y)
    });
    Trunk { features, logits }
}
