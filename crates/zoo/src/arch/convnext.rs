//! torchvision `convnext_tiny` (Liu et al. 2022).

use super::ops::{
    act, add, flatten, global_avg_pool, layer_norm, layer_norm_2d, linear, linear_nd, transpose, Act, Conv, Hw, Pad,
};
use super::Trunk;
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

const EPS: f32 = 1e-6;

pub(crate) fn convnext_tiny(g: &mut GraphBuilder, w: &mut Weights, x: &str, mut hw: Hw, logits: bool) -> Trunk {
    let mut x = Conv::new("features.0.0", 3, 96, 4).stride(4).pad(Pad::Explicit(0, 0)).bias().build(g, w, x, &mut hw);
    x = layer_norm_2d(g, w, &x, "features.0.1", 96, EPS);
    let stages = [(96, 3), (192, 3), (384, 9), (768, 3)];
    for (si, &(dim, n)) in stages.iter().enumerate() {
        let f = 1 + 2 * si;
        for b in 0..n {
            let p = format!("features.{f}.{b}");
            let y = Conv::new(format!("{p}.block.0"), dim, dim, 7).depthwise().bias().build(g, w, &x, &mut hw);
            let y = transpose(g, &y, &[0, 2, 3, 1]);
            let y = layer_norm(g, w, &y, &format!("{p}.block.2"), dim, EPS);
            let y = linear_nd(g, w, &y, &format!("{p}.block.3"), dim, 4 * dim);
            let y = act(g, &y, Act::Gelu);
            let y = linear_nd(g, w, &y, &format!("{p}.block.5"), 4 * dim, dim);
            let scale = w.get(&format!("{p}.layer_scale"), &[dim, 1, 1]);
            let scale = g.constant_f32("layer_scale", &[dim], &scale);
            let y = g.node("Mul", &[&y, &scale], vec![]);
            let y = transpose(g, &y, &[0, 3, 1, 2]);
            x = add(g, &x, &y);
        }
        if si + 1 < stages.len() {
            let next = stages[si + 1].0;
            x = layer_norm_2d(g, w, &x, &format!("features.{}.0", f + 1), dim, EPS);
            x = Conv::new(format!("features.{}.1", f + 1), dim, next, 2)
                .stride(2)
                .pad(Pad::Explicit(0, 0))
                .bias()
                .build(g, w, &x, &mut hw);
        }
    }
    let p = global_avg_pool(g, &x);
    let p = flatten(g, &p);
    let features = layer_norm(g, w, &p, "classifier.0", 768, EPS);
    let logits = logits.then(|| linear(g, w, &features, "classifier.2", 768, 1000));
    Trunk { features, logits }
}
