//! EfficientNet-Lite (Tan & Le 2019, the TF TPU "lite" variants: ReLU6, no squeeze-excite;
//! `fix_head_stem`: the stem, the head and the repeats of the first and last stages are not
//! scaled), module names of `efficientnet_pytorch`, TF "SAME" padding.

use super::efficientnet::B0;
use super::ops::{make_divisible, Act, Conv, Hw, Pad};
use super::{pooled_with_fc, Trunk};
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

const EPS: f32 = 1e-3;

fn conv(name: String, bn: String, cin: usize, cout: usize, k: usize) -> Conv {
    Conv::new(name, cin, cout, k).bn(bn, EPS).pad(Pad::TfSame)
}

pub(crate) fn efficientnet_lite(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    mut hw: Hw,
    width: f64,
    depth: f64,
    logits: bool,
) -> Trunk {
    let ch = |c: usize| if c == 32 { 32 } else { make_divisible(c as f64 * width, 8) };
    let last = B0.len() - 1;
    let mut x = conv("_conv_stem".into(), "_bn0".into(), 3, 32, 3).stride(2).act(Act::Relu6).build(g, w, x, &mut hw);
    let mut idx = 0;
    for (si, (e, k, s, cin0, cout, repeats)) in B0.into_iter().enumerate() {
        let (cin0, cout) = (ch(cin0), ch(cout));
        let repeats = if si == 0 || si == last { repeats } else { (repeats as f64 * depth).ceil() as usize };
        for i in 0..repeats {
            let (cin, stride) = if i == 0 { (cin0, s) } else { (cout, 1) };
            let hidden = cin * e;
            let p = format!("_blocks.{idx}");
            let mut y = x.clone();
            if e != 1 {
                y = conv(format!("{p}._expand_conv"), format!("{p}._bn0"), cin, hidden, 1)
                    .act(Act::Relu6)
                    .build(g, w, &y, &mut hw);
            }
            y = conv(format!("{p}._depthwise_conv"), format!("{p}._bn1"), hidden, hidden, k)
                .stride(stride)
                .depthwise()
                .act(Act::Relu6)
                .build(g, w, &y, &mut hw);
            y = conv(format!("{p}._project_conv"), format!("{p}._bn2"), hidden, cout, 1).build(g, w, &y, &mut hw);
            x = if stride == 1 && cin == cout { g.node("Add", &[&x, &y], vec![]) } else { y };
            idx += 1;
        }
    }
    let x = conv("_conv_head".into(), "_bn1".into(), ch(320), 1280, 1).act(Act::Relu6).build(g, w, &x, &mut hw);
    pooled_with_fc(g, w, &x, 1280, "_fc", logits)
}
