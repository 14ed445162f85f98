//! Graph-building blocks shared by the families: convolutions with folded BatchNorm,
//! activations, pooling, linear layers, all reading torchvision-named tensors.

use crate::graph::Weights;
use retrain_onnx::{Attr, GraphBuilder};

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Act {
    None,
    Relu,
    Relu6,
    Silu,
    Hardswish,
    Gelu,
}

/// Spatial padding of a convolution or pooling window.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pad {
    /// PyTorch's `padding = (k - 1) / 2 * dilation` on each side.
    Same,
    /// Explicit (height, width) padding on each side.
    Explicit(usize, usize),
    /// TensorFlow's "SAME": `ceil(size / stride)` outputs, the odd pixel padded at the end.
    TfSame,
}

/// Height and width of the activation flowing through the graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hw(pub usize, pub usize);

fn out_and_pads(size: usize, k: usize, s: usize, d: usize, pad: Pad, ceil: bool, axis: usize) -> (usize, usize, usize) {
    let eff = (k - 1) * d + 1;
    match pad {
        Pad::TfSame => {
            let out = size.div_ceil(s);
            let total = ((out - 1) * s + eff).saturating_sub(size);
            (out, total / 2, total - total / 2)
        }
        Pad::Same | Pad::Explicit(..) => {
            let p = match pad {
                Pad::Explicit(ph, pw) => [ph, pw][axis],
                _ => (k - 1) / 2 * d,
            };
            let span = size + 2 * p - eff;
            let mut out = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
            // PyTorch drops a last window that would start in the right padding.
            if ceil && (out - 1) * s >= size + p {
                out -= 1;
            }
            let extra = if ceil { ((out - 1) * s + eff).saturating_sub(size + 2 * p) } else { 0 };
            (out, p, p + extra)
        }
    }
}

/// A Conv2d, optionally followed by BatchNorm (running statistics, folded into the
/// convolution's weights) and an activation.
#[derive(Clone, Debug)]
pub(crate) struct Conv {
    name: String,
    cin: usize,
    cout: usize,
    k: (usize, usize),
    stride: usize,
    dilation: usize,
    groups: usize,
    pad: Pad,
    bias: bool,
    bn: Option<(String, f32)>,
    act: Act,
}

impl Conv {
    /// `name.weight` of shape `[cout, cin/groups, k, k]`.
    pub fn new(name: impl Into<String>, cin: usize, cout: usize, k: usize) -> Self {
        Self {
            name: name.into(),
            cin,
            cout,
            k: (k, k),
            stride: 1,
            dilation: 1,
            groups: 1,
            pad: Pad::Same,
            bias: false,
            bn: None,
            act: Act::None,
        }
    }
    pub fn kernel(mut self, kh: usize, kw: usize) -> Self {
        self.k = (kh, kw);
        self
    }
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn depthwise(self) -> Self {
        let c = self.cin;
        self.groups(c)
    }
    pub fn pad(mut self, p: Pad) -> Self {
        self.pad = p;
        self
    }
    /// The convolution has its own `name.bias`.
    pub fn bias(mut self) -> Self {
        self.bias = true;
        self
    }
    /// Followed by BatchNorm `name.{weight,bias,running_mean,running_var}`.
    pub fn bn(mut self, name: impl Into<String>, eps: f32) -> Self {
        self.bn = Some((name.into(), eps));
        self
    }
    pub fn act(mut self, a: Act) -> Self {
        self.act = a;
        self
    }

    pub fn build(self, g: &mut GraphBuilder, w: &mut Weights, x: &str, hw: &mut Hw) -> String {
        w.reads(&self.name, x);
        let per_group = self.cin / self.groups;
        let (kh, kw) = self.k;
        let mut kernel = w.get(&format!("{}.weight", self.name), &[self.cout, per_group, kh, kw]);
        let mut bias =
            if self.bias { w.get(&format!("{}.bias", self.name), &[self.cout]) } else { vec![0.0; self.cout] };
        let unfolded =
            self.bn.as_ref().filter(|_| w.batchnorm_nodes).map(|(bn, eps)| (bn_tensors(w, bn, self.cout), *eps));
        if let (Some((bn, eps)), None) = (&self.bn, &unfolded) {
            let (scale, shift) = batchnorm(w, bn, self.cout, *eps);
            let per_out = per_group * kh * kw;
            for o in 0..self.cout {
                kernel[o * per_out..(o + 1) * per_out].iter_mut().for_each(|v| *v *= scale[o]);
                bias[o] = bias[o] * scale[o] + shift[o];
            }
        }
        let (oh, pt, pb) = out_and_pads(hw.0, kh, self.stride, self.dilation, self.pad, false, 0);
        let (ow, pl, pr) = out_and_pads(hw.1, kw, self.stride, self.dilation, self.pad, false, 1);
        *hw = Hw(oh, ow);
        let wname = g.constant_f32("conv_weight", &[self.cout, per_group, kh, kw], &kernel);
        let bname = g.constant_f32("conv_bias", &[self.cout], &bias);
        let mut y = g.node(
            "Conv",
            &[x, &wname, &bname],
            vec![
                Attr::Ints("kernel_shape", vec![kh as i64, kw as i64]),
                Attr::Ints("strides", vec![self.stride as i64; 2]),
                Attr::Ints("dilations", vec![self.dilation as i64; 2]),
                Attr::Ints("pads", [pt, pl, pb, pr].iter().map(|&p| p as i64).collect()),
                Attr::Int("group", self.groups as i64),
            ],
        );
        if let Some(([gamma, beta, mean, var], eps)) = unfolded {
            let names: Vec<String> = [("bn_scale", gamma), ("bn_bias", beta), ("bn_mean", mean), ("bn_var", var)]
                .iter()
                .map(|(hint, v)| g.constant_f32(hint, &[self.cout], v))
                .collect();
            let inputs: Vec<&str> = std::iter::once(y.as_str()).chain(names.iter().map(String::as_str)).collect();
            y = g.node("BatchNormalization", &inputs, vec![Attr::Float("epsilon", eps)]);
        }
        act(g, &y, self.act)
    }
}

/// BatchNorm `name`'s weight, bias, running mean and running variance.
fn bn_tensors(w: &mut Weights, name: &str, c: usize) -> [Vec<f32>; 4] {
    ["weight", "bias", "running_mean", "running_var"].map(|t| w.get(&format!("{name}.{t}"), &[c]))
}

/// BatchNorm's running statistics as a per-channel scale and shift.
pub(crate) fn batchnorm(w: &mut Weights, name: &str, c: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let [gamma, beta, mean, var] = bn_tensors(w, name, c);
    let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let shift = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    (scale, shift)
}

pub(crate) fn act(g: &mut GraphBuilder, x: &str, a: Act) -> String {
    match a {
        Act::None => x.to_string(),
        Act::Relu => g.node("Relu", &[x], vec![]),
        Act::Relu6 => {
            let lo = g.constant_f32("zero", &[], &[0.0]);
            let hi = g.constant_f32("six", &[], &[6.0]);
            g.node("Clip", &[x, &lo, &hi], vec![])
        }
        Act::Silu => {
            let s = g.node("Sigmoid", &[x], vec![]);
            g.node("Mul", &[x, &s], vec![])
        }
        Act::Hardswish => g.node("HardSwish", &[x], vec![]),
        Act::Gelu => {
            // Exact (erf) GELU, as torch.nn.GELU() by default: x * 0.5 * (1 + erf(x / sqrt 2)).
            let r2 = g.constant_f32("sqrt2", &[], &[std::f32::consts::SQRT_2]);
            let half = g.constant_f32("half", &[], &[0.5]);
            let one = g.constant_f32("one", &[], &[1.0]);
            let t = g.node("Div", &[x, &r2], vec![]);
            let t = g.node("Erf", &[&t], vec![]);
            let t = g.node("Add", &[&t, &one], vec![]);
            let t = g.node("Mul", &[x, &t], vec![]);
            g.node("Mul", &[&t, &half], vec![])
        }
    }
}

pub(crate) fn global_avg_pool(g: &mut GraphBuilder, x: &str) -> String {
    g.node("GlobalAveragePool", &[x], vec![])
}

/// `y = x·Wᵀ + b` with torch's `name.weight` `[out, in]` and `name.bias`, on `[N, in]` rows.
pub(crate) fn linear(g: &mut GraphBuilder, w: &mut Weights, x: &str, name: &str, cin: usize, cout: usize) -> String {
    w.reads(name, x);
    let wt = w.get(&format!("{name}.weight"), &[cout, cin]);
    let b = w.get(&format!("{name}.bias"), &[cout]);
    let wt = g.constant_f32("fc_weight", &[cout, cin], &wt);
    let b = g.constant_f32("fc_bias", &[cout], &b);
    g.node("Gemm", &[x, &wt, &b], vec![Attr::Int("transB", 1)])
}

/// `x·Wᵀ + b` on the last axis of any-rank `x` (MatMul + Add), for token sequences.
pub(crate) fn linear_nd(g: &mut GraphBuilder, w: &mut Weights, x: &str, name: &str, cin: usize, cout: usize) -> String {
    w.reads(name, x);
    let wt = w.get(&format!("{name}.weight"), &[cout, cin]);
    let mut t = vec![0f32; cin * cout];
    for o in 0..cout {
        for i in 0..cin {
            t[i * cout + o] = wt[o * cin + i];
        }
    }
    let b = w.get(&format!("{name}.bias"), &[cout]);
    let wt = g.constant_f32("mm_weight", &[cin, cout], &t);
    let b = g.constant_f32("mm_bias", &[cout], &b);
    let y = g.node("MatMul", &[x, &wt], vec![]);
    g.node("Add", &[&y, &b], vec![])
}

/// LayerNorm over the last axis with torch's `name.weight` / `name.bias`.
pub(crate) fn layer_norm(g: &mut GraphBuilder, w: &mut Weights, x: &str, name: &str, c: usize, eps: f32) -> String {
    w.reads(name, x);
    let s = w.get(&format!("{name}.weight"), &[c]);
    let b = w.get(&format!("{name}.bias"), &[c]);
    let s = g.constant_f32("ln_scale", &[c], &s);
    let b = g.constant_f32("ln_bias", &[c], &b);
    g.node("LayerNormalization", &[x, &s, &b], vec![Attr::Int("axis", -1), Attr::Float("epsilon", eps)])
}

/// BatchNorm (running statistics) as a per-channel affine map on NCHW, for networks where it
/// precedes the convolution and cannot be folded into it.
pub(crate) fn bn_affine(g: &mut GraphBuilder, w: &mut Weights, x: &str, name: &str, c: usize, eps: f32) -> String {
    w.reads(name, x);
    let (scale, shift) = batchnorm(w, name, c, eps);
    let s = g.constant_f32("bn_scale", &[1, c, 1, 1], &scale);
    let b = g.constant_f32("bn_shift", &[1, c, 1, 1], &shift);
    let y = g.node("Mul", &[x, &s], vec![]);
    g.node("Add", &[&y, &b], vec![])
}

/// Max or average pooling with PyTorch's semantics (`ceil_mode`, `count_include_pad`).
pub(crate) fn pool(
    g: &mut GraphBuilder,
    x: &str,
    max: bool,
    k: usize,
    s: usize,
    p: usize,
    ceil: bool,
    hw: &mut Hw,
) -> String {
    let (oh, pt, pb) = out_and_pads(hw.0, k, s, 1, Pad::Explicit(p, p), ceil, 0);
    let (ow, pl, pr) = out_and_pads(hw.1, k, s, 1, Pad::Explicit(p, p), ceil, 1);
    *hw = Hw(oh, ow);
    // The extra right/bottom padding of ceil mode is expressed as explicit pads; for average
    // pooling PyTorch never counts it, so ceil-mode average pools are not used by the zoo.
    let mut attrs = vec![
        Attr::Ints("kernel_shape", vec![k as i64, k as i64]),
        Attr::Ints("strides", vec![s as i64, s as i64]),
        Attr::Ints("pads", vec![pt as i64, pl as i64, pb as i64, pr as i64]),
    ];
    if !max {
        attrs.push(Attr::Int("count_include_pad", 1));
    }
    g.node(if max { "MaxPool" } else { "AveragePool" }, &[x], attrs)
}

pub(crate) fn flatten(g: &mut GraphBuilder, x: &str) -> String {
    g.node("Flatten", &[x], vec![Attr::Int("axis", 1)])
}

pub(crate) fn concat(g: &mut GraphBuilder, xs: &[&str], axis: i64) -> String {
    g.node("Concat", xs, vec![Attr::Int("axis", axis)])
}

pub(crate) fn add(g: &mut GraphBuilder, a: &str, b: &str) -> String {
    g.node("Add", &[a, b], vec![])
}

/// torchvision's `_make_divisible(v, 8)`.
pub(crate) fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let new_v = ((v + d / 2.0) as usize / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v + divisor
    } else {
        new_v
    }
}

/// Squeeze-and-excitation (torchvision's `SqueezeExcitation`): global pool, `fc1` (1×1 conv),
/// activation, `fc2`, gate (sigmoid or hard-sigmoid), channel-wise scale of `x`.
pub(crate) fn squeeze_excite(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    p: &str,
    c: usize,
    squeeze: usize,
    inner: Act,
    hard_gate: bool,
) -> String {
    let mut one = Hw(1, 1);
    let s = global_avg_pool(g, x);
    let s = Conv::new(format!("{p}.fc1"), c, squeeze, 1).bias().act(inner).build(g, w, &s, &mut one);
    let s = Conv::new(format!("{p}.fc2"), squeeze, c, 1).bias().build(g, w, &s, &mut one);
    let gate = if hard_gate {
        g.node("HardSigmoid", &[&s], vec![Attr::Float("alpha", 1.0 / 6.0), Attr::Float("beta", 0.5)])
    } else {
        g.node("Sigmoid", &[&s], vec![])
    };
    g.node("Mul", &[x, &gate], vec![])
}

/// `x·M + b` on the last axis with `m` already laid out `[cin, cout]`.
pub(crate) fn matmul_bias(g: &mut GraphBuilder, x: &str, m: &[f32], b: &[f32], cin: usize, cout: usize) -> String {
    let m = g.constant_f32("mm_weight", &[cin, cout], m);
    let b = g.constant_f32("mm_bias", &[cout], b);
    let y = g.node("MatMul", &[x, &m], vec![]);
    g.node("Add", &[&y, &b], vec![])
}

/// Rows `rows` of a row-major `[_, cin]` torch weight, transposed to `[cin, rows.len()]`.
pub(crate) fn transpose_rows(wt: &[f32], rows: std::ops::Range<usize>, cin: usize) -> Vec<f32> {
    let n = rows.len();
    let mut t = vec![0f32; cin * n];
    for (o, r) in rows.enumerate() {
        for i in 0..cin {
            t[i * n + o] = wt[r * cin + i];
        }
    }
    t
}

pub(crate) fn transpose(g: &mut GraphBuilder, x: &str, perm: &[i64]) -> String {
    g.node("Transpose", &[x], vec![Attr::Ints("perm", perm.to_vec())])
}

pub(crate) fn reshape(g: &mut GraphBuilder, x: &str, shape: &[i64]) -> String {
    let s = g.constant_i64("shape", shape);
    g.node("Reshape", &[x, &s], vec![])
}

/// LayerNorm over the channels of NCHW (torchvision's `LayerNorm2d`).
pub(crate) fn layer_norm_2d(g: &mut GraphBuilder, w: &mut Weights, x: &str, name: &str, c: usize, eps: f32) -> String {
    let t = transpose(g, x, &[0, 2, 3, 1]);
    let t = layer_norm(g, w, &t, name, c, eps);
    transpose(g, &t, &[0, 3, 1, 2])
}
