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

fn out_and_pads(
    size: usize,
    k: usize,
    s: usize,
    d: usize,
    pad: Pad,
    ceil: bool,
    axis: usize,
) -> (usize, usize, usize) {
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
            let mut out = if ceil {
                span.div_ceil(s) + 1
            } else {
                span / s + 1
            };
            // PyTorch drops a last window that would start in the right padding.
            if ceil && (out - 1) * s >= size + p {
                out -= 1;
            }
            let extra = if ceil {
                ((out - 1) * s + eff).saturating_sub(size + 2 * p)
            } else {
                0
            };
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
        let per_group = self.cin / self.groups;
        let (kh, kw) = self.k;
        let mut kernel = w.get(
            &format!("{}.weight", self.name),
            &[self.cout, per_group, kh, kw],
        );
        let mut bias = if self.bias {
            w.get(&format!("{}.bias", self.name), &[self.cout])
        } else {
            vec![0.0; self.cout]
        };
        if let Some((bn, eps)) = &self.bn {
            let (scale, shift) = batchnorm(w, bn, self.cout, *eps);
            let per_out = per_group * kh * kw;
            for o in 0..self.cout {
                kernel[o * per_out..(o + 1) * per_out]
                    .iter_mut()
                    .for_each(|v| *v *= scale[o]);
                bias[o] = bias[o] * scale[o] + shift[o];
            }
        }
        let (oh, pt, pb) = out_and_pads(hw.0, kh, self.stride, self.dilation, self.pad, false, 0);
        let (ow, pl, pr) = out_and_pads(hw.1, kw, self.stride, self.dilation, self.pad, false, 1);
        *hw = Hw(oh, ow);
        let wname = g.constant_f32("conv_weight", &[self.cout, per_group, kh, kw], &kernel);
        let bname = g.constant_f32("conv_bias", &[self.cout], &bias);
        let y = g.node(
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
        act(g, &y, self.act)
    }
}

/// BatchNorm's running statistics as a per-channel scale and shift.
pub(crate) fn batchnorm(w: &mut Weights, name: &str, c: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let gamma = w.get(&format!("{name}.weight"), &[c]);
    let beta = w.get(&format!("{name}.bias"), &[c]);
    let mean = w.get(&format!("{name}.running_mean"), &[c]);
    let var = w.get(&format!("{name}.running_var"), &[c]);
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
