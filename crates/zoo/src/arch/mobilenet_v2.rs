//! torchvision `mobilenet_v2` (Sandler et al. 2018), module names as in torchvision.

use super::ops::{Act, Conv, Hw};
use super::{pooled_with_fc, Trunk};
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

/// (expansion t, output channels c, repeats n, first stride s), torchvision's table.
const SETTINGS: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
const EPS: f32 = 1e-5;

/// Conv `{p}.0` + BatchNorm `{p}.1` + ReLU6, torchvision's `Conv2dNormActivation` layout.
fn cbr(p: &str, cin: usize, cout: usize, k: usize) -> Conv {
    Conv::new(format!("{p}.0"), cin, cout, k).bn(format!("{p}.1"), EPS).act(Act::Relu6)
}

pub(crate) fn mobilenet_v2(g: &mut GraphBuilder, w: &mut Weights, x: &str, mut hw: Hw, logits: bool) -> Trunk {
    let mut x = cbr("features.0", 3, 32, 3).stride(2).build(g, w, x, &mut hw);
    let mut cin = 32;
    let mut idx = 1;
    for (t, c, n, s) in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = cin * t;
            let p = format!("features.{idx}.conv");
            let mut y = x.clone();
            let mut layer = 0;
            if t != 1 {
                y = cbr(&format!("{p}.0"), cin, hidden, 1).build(g, w, &y, &mut hw);
                layer = 1;
            }
            y = cbr(&format!("{p}.{layer}"), hidden, hidden, 3).stride(stride).depthwise().build(g, w, &y, &mut hw);
            y = Conv::new(format!("{p}.{}", layer + 1), hidden, c, 1)
                .bn(format!("{p}.{}", layer + 2), EPS)
                .build(g, w, &y, &mut hw);
            x = if stride == 1 && cin == c { g.node("Add", &[&x, &y], vec![]) } else { y };
            cin = c;
            idx += 1;
        }
    }
    let x = cbr("features.18", cin, 1280, 1).build(g, w, &x, &mut hw);
    pooled_with_fc(g, w, &x, 1280, "classifier.1", logits)
}
