//! torchvision ResNet (He et al. 2015, v1.5: the stride in the bottleneck's 3×3 conv).

use super::ops::{act, add, pool, Act, Conv, Hw};
use super::{pooled_with_fc, Trunk};
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

const EPS: f32 = 1e-5;

fn conv_bn(conv: String, bn: String, cin: usize, cout: usize, k: usize) -> Conv {
    Conv::new(conv, cin, cout, k).bn(bn, EPS)
}

pub(crate) fn resnet(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    mut hw: Hw,
    bottleneck: bool,
    layers: [usize; 4],
    logits: bool,
) -> Trunk {
    let mut x = conv_bn("conv1".into(), "bn1".into(), 3, 64, 7).stride(2).act(Act::Relu).build(g, w, x, &mut hw);
    x = pool(g, &x, true, 3, 2, 1, false, &mut hw);
    let expansion = if bottleneck { 4 } else { 1 };
    let mut cin = 64;
    for (li, &n) in layers.iter().enumerate() {
        let planes = 64 << li;
        for b in 0..n {
            let stride = if b == 0 && li > 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", li + 1);
            let cout = planes * expansion;
            let identity = if stride != 1 || cin != cout {
                let mut hw2 = hw;
                conv_bn(format!("{p}.downsample.0"), format!("{p}.downsample.1"), cin, cout, 1)
                    .stride(stride)
                    .build(g, w, &x, &mut hw2)
            } else {
                x.clone()
            };
            let y = if bottleneck {
                let y = conv_bn(format!("{p}.conv1"), format!("{p}.bn1"), cin, planes, 1)
                    .act(Act::Relu)
                    .build(g, w, &x, &mut hw);
                let y = conv_bn(format!("{p}.conv2"), format!("{p}.bn2"), planes, planes, 3)
                    .stride(stride)
                    .act(Act::Relu)
                    .build(g, w, &y, &mut hw);
                conv_bn(format!("{p}.conv3"), format!("{p}.bn3"), planes, cout, 1).build(g, w, &y, &mut hw)
            } else {
                let y = conv_bn(format!("{p}.conv1"), format!("{p}.bn1"), cin, planes, 3)
                    .stride(stride)
                    .act(Act::Relu)
                    .build(g, w, &x, &mut hw);
                conv_bn(format!("{p}.conv2"), format!("{p}.bn2"), planes, planes, 3).build(g, w, &y, &mut hw)
            };
            let s = add(g, &y, &identity);
            x = act(g, &s, Act::Relu);
            cin = cout;
        }
    }
    pooled_with_fc(g, w, &x, cin, "fc", logits)
}
