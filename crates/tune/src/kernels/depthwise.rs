//! Depthwise convolution (one filter per channel: MobileNet's and EfficientNet's 3×3 and 5×5
//! convolutions) with its own backward pass, as a burn backend extension for the Flex CPU backend.
//!
//! burn 0.22 takes a grouped convolution's weight gradient one group at a time: 576 small
//! convolutions, slices and slice assignments for one MobileNetV2 block, on one thread; that made
//! fine-tuning eight blocks spend most of its time there. Here each pass (forward, input gradient,
//! weight + bias gradient) is one sweep over the activations, channel planes in parallel. A plane
//! is first copied into a zero-padded buffer, so at stride 1 every filter tap becomes one
//! contiguous multiply-add over the whole plane, which the compiler vectorises.

use super::{tensor, values};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Flex, TensorMetadata};
use burn::tensor::Tensor;
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Stride and zero padding of a depthwise convolution (dilation 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub pad: [usize; 4],
}

/// The sizes one channel plane goes through.
#[derive(Clone, Copy, Debug)]
struct Plane {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    /// Padded input.
    hp: usize,
    wp: usize,
    ho: usize,
    wo: usize,
    geo: Geometry,
}

impl Plane {
    fn new(h: usize, w: usize, kh: usize, kw: usize, geo: Geometry) -> Plane {
        let [pt, pl, pb, pr] = geo.pad;
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        let [sh, sw] = geo.stride;
        let (ho, wo) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
        Plane { h, w, kh, kw, hp, wp, ho, wo, geo }
    }

    fn stride_one(&self) -> bool {
        self.geo.stride == [1, 1]
    }

    /// At stride 1 output (oh, ow) sits at oh·wp + ow of a "wide" row-major buffer whose rows are
    /// as long as the padded input's, so tap (i, j) reads the padded input at i·wp + j + index.
    fn wide_len(&self) -> usize {
        (self.ho - 1) * self.wp + self.wo
    }

    /// Each filter tap at stride 1: its index in the filter and where its window of `wide_len`
    /// values starts in the padded input.
    fn stride_one_taps(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.kh).flat_map(move |i| (0..self.kw).map(move |j| (i * self.kw + j, i * self.wp + j)))
    }

    /// An output-shaped plane (a gradient) laid out in the wide buffer, zeros between rows.
    fn widen(&self, src: &[f32], wide: &mut Vec<f32>) {
        wide.clear();
        wide.resize(self.wide_len(), 0.0);
        for (oh, row) in src.chunks_exact(self.wo).enumerate() {
            wide[oh * self.wp..oh * self.wp + self.wo].copy_from_slice(row);
        }
    }

    fn pad(&self, src: &[f32], dst: &mut Vec<f32>) {
        let [pt, pl, ..] = self.geo.pad;
        dst.clear();
        dst.resize(self.hp * self.wp, 0.0);
        for (r, row) in src.chunks_exact(self.w).enumerate() {
            let at = (r + pt) * self.wp + pl;
            dst[at..at + self.w].copy_from_slice(row);
        }
    }
}

/// `y[n, c] = b[c] + Σ w[c, i, j] · x_padded[n, c, oh·s + i, ow·s + j]`.
fn forward(x: &[f32], w: &[f32], b: &[f32], p: Plane) -> Vec<f32> {
    let taps = p.kh * p.kw;
    let (plane_in, plane_out) = (p.h * p.w, p.ho * p.wo);
    let mut out = vec![0.0; x.len() / plane_in * plane_out];
    let channels = b.len();
    out.par_chunks_mut(plane_out).zip(x.par_chunks(plane_in)).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(xp, wide), (k, (out, x))| {
            let c = k % channels;
            simd::forward_plane(x, &w[c * taps..(c + 1) * taps], b[c], out, p, xp, wide);
        },
    );
    out
}

/// The gradient with respect to the input: each output gradient spread back over the inputs
/// its taps read.
fn backward_input(g: &[f32], w: &[f32], channels: usize, p: Plane) -> Vec<f32> {
    let taps = p.kh * p.kw;
    let (plane_in, plane_out) = (p.h * p.w, p.ho * p.wo);
    let mut gx = vec![0.0; g.len() / plane_out * plane_in];
    gx.par_chunks_mut(plane_in).zip(g.par_chunks(plane_out)).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(gxp, wide), (k, (gx, g))| {
            let c = k % channels;
            simd::input_plane(g, &w[c * taps..(c + 1) * taps], gx, p, gxp, wide);
        },
    );
    gx
}

/// The gradients with respect to the weights `[c, kh, kw]` and the bias `[c]`, summed over the
/// batch: one task per channel.
fn backward_weight(x: &[f32], g: &[f32], channels: usize, p: Plane) -> (Vec<f32>, Vec<f32>) {
    let taps = p.kh * p.kw;
    let (plane_in, plane_out) = (p.h * p.w, p.ho * p.wo);
    let batch = g.len() / plane_out / channels;
    let sums: Vec<Vec<f32>> = (0..channels)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(xp, wide), c| {
                let mut acc = vec![0.0f32; taps + 1];
                for n in 0..batch {
                    let k = n * channels + c;
                    let x = &x[k * plane_in..(k + 1) * plane_in];
                    let g = &g[k * plane_out..(k + 1) * plane_out];
                    simd::weight_plane(x, g, &mut acc, p, xp, wide);
                }
                acc
            },
        )
        .collect();
    let mut gw = Vec::with_capacity(channels * taps);
    let mut gb = Vec::with_capacity(channels);
    for s in sums {
        gw.extend_from_slice(&s[..taps]);
        gb.push(s[taps]);
    }
    (gw, gb)
}

/// The per-plane loops, compiled twice: for AVX2 + FMA when the CPU has them (chosen at run
/// time), and for the baseline x86-64 / other targets.
mod simd {
    use super::Plane;

    dispatch!(forward_plane, forward_generic, forward_avx2,
        (x: &[f32], w: &[f32], b: f32, out: &mut [f32], p: Plane, xp: &mut Vec<f32>, wide: &mut Vec<f32>));
    dispatch!(input_plane, input_generic, input_avx2,
        (g: &[f32], w: &[f32], gx: &mut [f32], p: Plane, gxp: &mut Vec<f32>, wide: &mut Vec<f32>));
    dispatch!(weight_plane, weight_generic, weight_avx2,
        (x: &[f32], g: &[f32], acc: &mut [f32], p: Plane, xp: &mut Vec<f32>, wide: &mut Vec<f32>));

    #[inline(always)]
    fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }

    /// Eight independent partial sums, so the loop vectorises without reassociating one sum.
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        let mut ca = a.chunks_exact(8);
        let mut cb = b.chunks_exact(8);
        for (a, b) in (&mut ca).zip(&mut cb) {
            for k in 0..8 {
                acc[k] += a[k] * b[k];
            }
        }
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(a, b)| a * b).sum();
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    fn forward_generic(
        x: &[f32],
        w: &[f32],
        b: f32,
        out: &mut [f32],
        p: Plane,
        xp: &mut Vec<f32>,
        wide: &mut Vec<f32>,
    ) {
        p.pad(x, xp);
        if p.stride_one() {
            let len = p.wide_len();
            wide.clear();
            wide.resize(len, b);
            for (tap, at) in p.stride_one_taps() {
                axpy(wide, w[tap], &xp[at..at + len]);
            }
            for (oh, row) in out.chunks_exact_mut(p.wo).enumerate() {
                row.copy_from_slice(&wide[oh * p.wp..oh * p.wp + p.wo]);
            }
        } else {
            let [sh, sw] = p.geo.stride;
            for (oh, row) in out.chunks_exact_mut(p.wo).enumerate() {
                row.fill(b);
                for i in 0..p.kh {
                    let src = &xp[(oh * sh + i) * p.wp..(oh * sh + i + 1) * p.wp];
                    for j in 0..p.kw {
                        let wv = w[i * p.kw + j];
                        for (ow, o) in row.iter_mut().enumerate() {
                            *o += wv * src[ow * sw + j];
                        }
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn input_generic(g: &[f32], w: &[f32], gx: &mut [f32], p: Plane, gxp: &mut Vec<f32>, wide: &mut Vec<f32>) {
        gxp.clear();
        gxp.resize(p.hp * p.wp, 0.0);
        if p.stride_one() {
            let len = p.wide_len();
            p.widen(g, wide);
            for (tap, at) in p.stride_one_taps() {
                axpy(&mut gxp[at..at + len], w[tap], wide);
            }
        } else {
            let [sh, sw] = p.geo.stride;
            for (oh, row) in g.chunks_exact(p.wo).enumerate() {
                for i in 0..p.kh {
                    let dst = &mut gxp[(oh * sh + i) * p.wp..(oh * sh + i + 1) * p.wp];
                    for j in 0..p.kw {
                        let wv = w[i * p.kw + j];
                        for (ow, gv) in row.iter().enumerate() {
                            dst[ow * sw + j] += wv * gv;
                        }
                    }
                }
            }
        }
        let [pt, pl, ..] = p.geo.pad;
        for (r, row) in gx.chunks_exact_mut(p.w).enumerate() {
            let at = (r + pt) * p.wp + pl;
            row.copy_from_slice(&gxp[at..at + p.w]);
        }
    }

    #[inline(always)]
    fn weight_generic(x: &[f32], g: &[f32], acc: &mut [f32], p: Plane, xp: &mut Vec<f32>, wide: &mut Vec<f32>) {
        p.pad(x, xp);
        let taps = p.kh * p.kw;
        acc[taps] += g.iter().sum::<f32>();
        if p.stride_one() {
            let len = p.wide_len();
            p.widen(g, wide);
            for (tap, at) in p.stride_one_taps() {
                acc[tap] += dot(wide, &xp[at..at + len]);
            }
        } else {
            let [sh, sw] = p.geo.stride;
            for (oh, row) in g.chunks_exact(p.wo).enumerate() {
                for i in 0..p.kh {
                    let src = &xp[(oh * sh + i) * p.wp..(oh * sh + i + 1) * p.wp];
                    for j in 0..p.kw {
                        let s: f32 = row.iter().enumerate().map(|(ow, gv)| gv * src[ow * sw + j]).sum();
                        acc[i * p.kw + j] += s;
                    }
                }
            }
        }
    }
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

fn plane_of(x: &FlexTensor, w: &FlexTensor, geo: Geometry) -> (usize, usize, Plane) {
    let [n, c, h, wd] = dims4(x);
    let [_, _, kh, kw] = dims4(w);
    (n, c, Plane::new(h, wd, kh, kw, geo))
}

#[backend_extension(Flex, Autodiff)]
pub trait DepthwiseOps: Backend {
    /// `x: [n, c, h, w]`, `weight: [c, 1, kh, kw]`, `bias: [c]`.
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self>;
}

impl DepthwiseOps for Flex {
    fn depthwise_conv2d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, geometry: Geometry) -> FlexTensor {
        let (n, c, p) = plane_of(&x, &weight, geometry);
        let y = forward(&values(&x), &values(&weight), &values(&bias), p);
        tensor(y, [n, c, p.ho, p.wo])
    }
}

#[derive(Debug)]
struct DepthwiseBackward;

impl Backward<Flex, 3> for DepthwiseBackward {
    type State = (NodeId, NodeId, Geometry);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state, geometry) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let w: FlexTensor = checkpointer.retrieve_node_output(w_state);
        let (_, c, p) = plane_of(&x, &w, geometry);
        let g = values(&grad);
        if let Some(node) = node_x {
            let gx = backward_input(&g, &values(&w), c, p);
            grads.register::<Flex>(node.id, tensor(gx, dims4(&x)));
        }
        if node_w.is_some() || node_b.is_some() {
            let (gw, gb) = backward_weight(&values(&x), &g, c, p);
            if let Some(node) = node_w {
                grads.register::<Flex>(node.id, tensor(gw, dims4(&w)));
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, tensor(gb, [c]));
            }
        }
    }
}

impl<C: CheckpointStrategy> DepthwiseOps for Autodiff<Flex, C> {
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self> {
        let prep = DepthwiseBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful();
        match prep {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight), geometry);
                let y = Flex::depthwise_conv2d(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    geometry,
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::depthwise_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                geometry,
            )),
        }
    }
}

/// A depthwise convolution of `x: [n, c, h, w]` with `weight: [c, 1, kh, kw]` plus `bias: [c]`,
/// differentiable on an autodiff Flex device.
pub fn depthwise_conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, geometry: Geometry) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as DepthwiseOps>::depthwise_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        geometry,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution, TensorData};

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn matches_burns_grouped_convolution_and_its_gradients() {
        let dev = Device::flex().autodiff();
        // (channels, size, kernel, stride, pad [t, l, b, r]): MobileNetV2's 3×3 at strides 1 and 2,
        // EfficientNet-Lite's 5×5, an odd size, and TensorFlow-style asymmetric padding.
        for (c, hw, k, s, pad) in [
            (6, 7, 3, 1, [1, 1, 1, 1]),
            (5, 14, 3, 2, [1, 1, 1, 1]),
            (4, 9, 5, 1, [2, 2, 2, 2]),
            (3, 11, 5, 2, [2, 2, 2, 2]),
            (4, 8, 3, 2, [0, 0, 1, 1]),
        ] {
            let x = Tensor::<4>::random([2, c, hw, hw], Distribution::Normal(0.0, 1.0), &dev).require_grad();
            let w = Tensor::<4>::random([c, 1, k, k], Distribution::Normal(0.0, 0.3), &dev).require_grad();
            let b = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.3), &dev).require_grad();
            let geometry = Geometry { stride: [s, s], pad };
            let ours = depthwise_conv2d(x.clone(), w.clone(), b.clone(), geometry);
            let [pt, pl, pb, pr] = pad;
            let opts = ConvOptions::new_with_padding([s, s], [(pt, pb), (pl, pr)], [1, 1], c);
            let theirs = conv2d(x.clone(), w.clone(), Some(b.clone()), opts);
            assert_eq!(ours.dims(), theirs.dims(), "{c} {hw} {k} {s}");
            assert!(max_diff(ours.clone(), theirs.clone()) < 1e-5);
            // A loss that weighs every output differently, so each gradient entry is tested.
            let r = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &dev);
            let g1 = (ours * r.clone()).sum().backward();
            let g2 = (theirs * r).sum().backward();
            let close = |a: Tensor<4>, b: Tensor<4>| max_diff(a, b) < 1e-4;
            assert!(close(x.grad(&g1).unwrap(), x.grad(&g2).unwrap()), "input gradient {c} {hw} {k} {s}");
            assert!(close(w.grad(&g1).unwrap(), w.grad(&g2).unwrap()), "weight gradient {c} {hw} {k} {s}");
            let (gb1, gb2) = (b.grad(&g1).unwrap(), b.grad(&g2).unwrap());
            assert!((gb1 - gb2).abs().max().into_scalar::<f32>() < 1e-4, "bias gradient");
        }
    }

    #[test]
    fn a_single_tap_by_hand() {
        // 1 channel, 3×3 input, 3×3 filter with only the centre tap, pad 1: y = 2x + 0.5, and the
        // weight gradient of sum(y) at the centre is sum(x), at a corner the sum of the 2×2 block
        // that tap sees.
        let dev = Device::flex().autodiff();
        let xs: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(xs.clone(), [1, 1, 3, 3]), &dev).require_grad();
        let mut ws = vec![0.0f32; 9];
        ws[4] = 2.0;
        let w = Tensor::<4>::from_data(TensorData::new(ws, [1, 1, 3, 3]), &dev).require_grad();
        let b = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &dev).require_grad();
        let y = depthwise_conv2d(x.clone(), w.clone(), b.clone(), Geometry { stride: [1, 1], pad: [1; 4] });
        let got: Vec<f32> = y.clone().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(got, xs.iter().map(|v| 2.0 * v + 0.5).collect::<Vec<_>>());
        let g = y.sum().backward();
        let gw: Vec<f32> = w.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap();
        // Tap (0, 0) reads x[r-1, c-1]: the top-left 2×2 block of outputs' inputs, 1+2+4+5.
        assert_eq!(gw[0], 12.0);
        assert_eq!(gw[4], 45.0);
        assert_eq!(gw[8], 5.0 + 6.0 + 8.0 + 9.0);
        let gx: Vec<f32> = x.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(gx, vec![2.0; 9]);
        let gb: Vec<f32> = b.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(gb, vec![9.0]);
    }
}
