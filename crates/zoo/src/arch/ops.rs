use crate::graph::Weights;
use retrain_onnx::{Attr, GraphBuilder};

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Act {
    None,
    Relu6,
}

/// Spatial padding of a convolution.
#[derive(Clone, Copy)]
pub(crate) enum Pad {
    /// PyTorch's symmetric `(k - 1) / 2`.
    Symmetric,
    /// TensorFlow's "SAME": `ceil(h / s)` outputs, the odd pixel padded at the bottom/right.
    TfSame,
}

pub(crate) struct Conv<'n> {
    pub conv: &'n str,
    pub bn: &'n str,
    pub bn_eps: f32,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub groups: usize,
    pub pad: Pad,
    pub act: Act,
}

/// Conv2d (no bias) + BatchNorm (running statistics) + activation. The BatchNorm is folded
/// into the convolution's weights and bias: the frozen network computes the same function
/// with one op less per layer. `h` is the square input size, updated to the output size.
pub(crate) fn conv_bn(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    c: Conv,
    h: &mut usize,
) -> String {
    let per_group = c.cin / c.groups;
    let mut kernel = w.get(
        &format!("{}.weight", c.conv),
        &[c.cout, per_group, c.k, c.k],
    );
    let gamma = w.get(&format!("{}.weight", c.bn), &[c.cout]);
    let beta = w.get(&format!("{}.bias", c.bn), &[c.cout]);
    let mean = w.get(&format!("{}.running_mean", c.bn), &[c.cout]);
    let var = w.get(&format!("{}.running_var", c.bn), &[c.cout]);
    let per_out = per_group * c.k * c.k;
    let mut bias = vec![0f32; c.cout];
    for o in 0..c.cout {
        let scale = gamma[o] / (var[o] + c.bn_eps).sqrt();
        for v in &mut kernel[o * per_out..(o + 1) * per_out] {
            *v *= scale;
        }
        bias[o] = beta[o] - mean[o] * scale;
    }
    let (out, pads) = match c.pad {
        Pad::Symmetric => {
            let p = (c.k - 1) / 2;
            ((*h + 2 * p - c.k) / c.stride + 1, [p, p, p, p])
        }
        Pad::TfSame => {
            let out = h.div_ceil(c.stride);
            let total = ((out - 1) * c.stride + c.k).saturating_sub(*h);
            let lo = total / 2;
            (out, [lo, lo, total - lo, total - lo])
        }
    };
    *h = out;
    let wname = g.constant_f32("conv_weight", &[c.cout, per_group, c.k, c.k], &kernel);
    let bname = g.constant_f32("conv_bias", &[c.cout], &bias);
    let y = g.node(
        "Conv",
        &[x, &wname, &bname],
        vec![
            Attr::Ints("kernel_shape", vec![c.k as i64, c.k as i64]),
            Attr::Ints("strides", vec![c.stride as i64, c.stride as i64]),
            Attr::Ints("pads", pads.iter().map(|&p| p as i64).collect()),
            Attr::Int("group", c.groups as i64),
        ],
    );
    match c.act {
        Act::None => y,
        Act::Relu6 => relu6(g, &y),
    }
}

pub(crate) fn relu6(g: &mut GraphBuilder, x: &str) -> String {
    let lo = g.constant_f32("zero", &[], &[0.0]);
    let hi = g.constant_f32("six", &[], &[6.0]);
    g.node("Clip", &[x, &lo, &hi], vec![])
}

pub(crate) fn global_avg_pool(g: &mut GraphBuilder, x: &str) -> String {
    g.node("GlobalAveragePool", &[x], vec![])
}
