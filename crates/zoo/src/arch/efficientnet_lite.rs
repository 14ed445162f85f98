//! EfficientNet-Lite (Tan & Le 2019, the TF TPU "lite" variants: ReLU6, no squeeze-excite,
//! stem and head not scaled), module names of `efficientnet_pytorch`, TF "SAME" padding.

use super::ops::{conv_bn, global_avg_pool, Act, Conv, Pad};
use super::Pooled;
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

/// (repeats, kernel, stride, expansion, in, out): the EfficientNet-B0 block table.
const BLOCKS: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
const EPS: f32 = 1e-3;

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
        pad: Pad::TfSame,
        act,
    }
}

pub(crate) fn efficientnet_lite(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    size: usize,
) -> Pooled {
    let mut h = size;
    let mut x = conv_bn(
        g,
        w,
        x,
        conv("_conv_stem", "_bn0", 3, 32, 3, 2, 1, Act::Relu6),
        &mut h,
    );
    let mut idx = 0;
    for (repeats, k, s, e, cin0, cout) in BLOCKS {
        for i in 0..repeats {
            let (cin, stride) = if i == 0 { (cin0, s) } else { (cout, 1) };
            let hidden = cin * e;
            let p = format!("_blocks.{idx}");
            let input = x.clone();
            let mut y = x.clone();
            if e != 1 {
                let (cv, bn) = (format!("{p}._expand_conv"), format!("{p}._bn0"));
                y = conv_bn(
                    g,
                    w,
                    &y,
                    conv(&cv, &bn, cin, hidden, 1, 1, 1, Act::Relu6),
                    &mut h,
                );
            }
            let (cv, bn) = (format!("{p}._depthwise_conv"), format!("{p}._bn1"));
            y = conv_bn(
                g,
                w,
                &y,
                conv(&cv, &bn, hidden, hidden, k, stride, hidden, Act::Relu6),
                &mut h,
            );
            let (cv, bn) = (format!("{p}._project_conv"), format!("{p}._bn2"));
            y = conv_bn(
                g,
                w,
                &y,
                conv(&cv, &bn, hidden, cout, 1, 1, 1, Act::None),
                &mut h,
            );
            x = if stride == 1 && cin == cout {
                g.node("Add", &[&input, &y], vec![])
            } else {
                y
            };
            idx += 1;
        }
    }
    let x = conv_bn(
        g,
        w,
        &x,
        conv("_conv_head", "_bn1", 320, 1280, 1, 1, 1, Act::Relu6),
        &mut h,
    );
    Pooled {
        features: global_avg_pool(g, &x),
        classifier_weight: "_fc.weight",
        classifier_bias: "_fc.bias",
    }
}
