//! torchvision `mobilenet_v2` (Sandler et al. 2018), module names as in torchvision.

use super::ops::{conv_bn, global_avg_pool, Act, Conv, Pad};
use super::Pooled;
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

/// (expansion t, output channels c, repeats n, first stride s), torchvision's table.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
const EPS: f32 = 1e-5;

fn conv<'n>(
    conv: &'n str,
    bn: &'n str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    act: Act,
) -> Conv<'n> {
    Conv {
        conv,
        bn,
        bn_eps: EPS,
        cin,
        cout,
        k,
        stride,
        groups,
        pad: Pad::Symmetric,
        act,
    }
}

pub(crate) fn mobilenet_v2(g: &mut GraphBuilder, w: &mut Weights, x: &str, size: usize) -> Pooled {
    let mut h = size;
    let mut x = conv_bn(
        g,
        w,
        x,
        conv("features.0.0", "features.0.1", 3, 32, 3, 2, 1, Act::Relu6),
        &mut h,
    );
    let mut cin = 32;
    let mut idx = 1;
    for (t, c, n, s) in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = cin * t;
            let p = format!("features.{idx}.conv");
            let input = x.clone();
            let mut layer = 0;
            let mut y = x.clone();
            if t != 1 {
                let (cv, bn) = (format!("{p}.0.0"), format!("{p}.0.1"));
                y = conv_bn(
                    g,
                    w,
                    &y,
                    conv(&cv, &bn, cin, hidden, 1, 1, 1, Act::Relu6),
                    &mut h,
                );
                layer = 1;
            }
            let (cv, bn) = (format!("{p}.{layer}.0"), format!("{p}.{layer}.1"));
            y = conv_bn(
                g,
                w,
                &y,
                conv(&cv, &bn, hidden, hidden, 3, stride, hidden, Act::Relu6),
                &mut h,
            );
            let (cv, bn) = (format!("{p}.{}", layer + 1), format!("{p}.{}", layer + 2));
            y = conv_bn(
                g,
                w,
                &y,
                conv(&cv, &bn, hidden, c, 1, 1, 1, Act::None),
                &mut h,
            );
            x = if stride == 1 && cin == c {
                g.node("Add", &[&input, &y], vec![])
            } else {
                y
            };
            cin = c;
            idx += 1;
        }
    }
    let x = conv_bn(
        g,
        w,
        &x,
        conv(
            "features.18.0",
            "features.18.1",
            cin,
            1280,
            1,
            1,
            1,
            Act::Relu6,
        ),
        &mut h,
    );
    Pooled {
        features: global_avg_pool(g, &x),
        classifier_weight: "classifier.1.weight",
        classifier_bias: "classifier.1.bias",
    }
}
