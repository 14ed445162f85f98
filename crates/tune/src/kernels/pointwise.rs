//! 1×1 convolution (the expand and project layers of MobileNetV2 and EfficientNet, a ResNet
//! bottleneck's outer convolutions) with its own backward pass, as a burn backend extension for
//! the Flex CPU backend.
//!
//! A 1×1 convolution is a matrix product per image: `y[n] = W · x[n]` with `x[n]: [c, h·w]`.
//! burn 0.22 computes the forward pass so, but takes the weight gradient as a convolution of the
//! batch-transposed input with the batch-transposed output gradient (an h×w kernel, through
//! im2col) and the input gradient as a transposed convolution, with copies around both: the
//! backward pass took five times the forward's time. Here all three are matrix products on the
//! tensors as they lie (transposes are strides), one image per task.

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

/// A read-only matrix view: element (r, c) at `r·rs + c·cs`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// `dst [m, n]` (row-major, contiguous) `= lhs [m, k] · rhs [k, n]`, added to what `dst` holds when
/// `accumulate`.
fn matmul(dst: &mut [f32], m: usize, n: usize, k: usize, lhs: View, rhs: View, accumulate: bool) {
    let last = |v: View, rows: usize, cols: usize| (rows - 1) * v.rs + (cols - 1) * v.cs;
    assert!(dst.len() == m * n, "matmul: destination is not {m}×{n}");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    assert!(last(lhs, m, k) < lhs.data.len() && last(rhs, k, n) < rhs.data.len(), "matmul: operand too short");
    // SAFETY: every index the product reads or writes is inside the slices, checked just above;
    // `dst` is borrowed mutably, so nothing else reads it meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Sizes: `x: [batch, c, p]`, `weight: [o, c]`, `y: [batch, o, p]` (p = h·w).
#[derive(Clone, Copy, Debug)]
struct Dims {
    c: usize,
    o: usize,
    p: usize,
}

fn forward(x: &[f32], w: &[f32], b: &[f32], d: Dims) -> Vec<f32> {
    let Dims { c, o, p } = d;
    let mut y = vec![0.0f32; x.len() / (c * p).max(1) * o * p];
    y.par_chunks_mut((o * p).max(1)).zip(x.par_chunks((c * p).max(1))).for_each(|(y, x)| {
        fill_rows(y, b, p);
        matmul(y, o, p, c, View { data: w, rs: c, cs: 1 }, View { data: x, rs: p, cs: 1 }, true);
    });
    y
}

/// `gx[n] = Wᵀ · g[n]`.
fn backward_input(g: &[f32], w: &[f32], d: Dims) -> Vec<f32> {
    let Dims { c, o, p } = d;
    let mut gx = vec![0.0f32; g.len() / (o * p).max(1) * c * p];
    gx.par_chunks_mut((c * p).max(1)).zip(g.par_chunks((o * p).max(1))).for_each(|(gx, g)| {
        matmul(gx, c, p, o, View { data: w, rs: 1, cs: c }, View { data: g, rs: p, cs: 1 }, false);
    });
    gx
}

/// `gW = Σₙ g[n] · x[n]ᵀ` and `gb = Σₙ,ₚ g[n]`: the batch split into one run of images per thread,
/// each summing into its own matrix, then the few matrices added.
fn backward_weight(x: &[f32], g: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>) {
    let Dims { c, o, p } = d;
    let batch = g.len() / (o * p).max(1);
    let per_task = batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let partial: Vec<(Vec<f32>, Vec<f32>)> = (0..batch.div_ceil(per_task))
        .into_par_iter()
        .map(|t| {
            let (mut gw, mut gb) = (vec![0.0f32; o * c], vec![0.0f32; o]);
            for n in t * per_task..((t + 1) * per_task).min(batch) {
                let (g, x) = (&g[n * o * p..(n + 1) * o * p], &x[n * c * p..(n + 1) * c * p]);
                matmul(&mut gw, o, c, p, View { data: g, rs: p, cs: 1 }, View { data: x, rs: 1, cs: p }, true);
                add_row_sums(g, p, &mut gb);
            }
            (gw, gb)
        })
        .collect();
    let mut it = partial.into_iter();
    let (mut gw, mut gb) = it.next().unwrap_or_else(|| (vec![0.0; o * c], vec![0.0; o]));
    for (w, b) in it {
        gw.iter_mut().zip(w).for_each(|(a, v)| *a += v);
        gb.iter_mut().zip(b).for_each(|(a, v)| *a += v);
    }
    (gw, gb)
}

/// Row `r` of `y` (rows of `p`) set to `b[r]`.
#[inline(always)]
fn fill_generic(y: &mut [f32], b: &[f32], p: usize) {
    for (row, bias) in y.chunks_exact_mut(p.max(1)).zip(b) {
        row.fill(*bias);
    }
}

/// `sums[r] += Σ g[r, ·]` (rows of `p`), with eight partial sums so that the loop vectorises.
#[inline(always)]
fn row_sums_generic(g: &[f32], p: usize, sums: &mut [f32]) {
    for (s, row) in sums.iter_mut().zip(g.chunks_exact(p.max(1))) {
        let mut acc = [0.0f32; 8];
        let mut lanes = row.chunks_exact(8);
        for v in &mut lanes {
            for k in 0..8 {
                acc[k] += v[k];
            }
        }
        *s += acc.iter().sum::<f32>() + lanes.remainder().iter().sum::<f32>();
    }
}

dispatch!(fill_rows, fill_generic, fill_avx2, (y: &mut [f32], b: &[f32], p: usize));
dispatch!(add_row_sums, row_sums_generic, row_sums_avx2, (g: &[f32], p: usize, sums: &mut [f32]));

fn dims_of(x: &FlexTensor, w: &FlexTensor) -> ([usize; 4], Dims) {
    let (s, ws) = (x.shape(), w.shape());
    let (n, c, h, wd) = (s[0], s[1], s[2], s[3]);
    ([n, ws[0], h, wd], Dims { c, o: ws[0], p: h * wd })
}

#[backend_extension(Flex, Autodiff)]
pub trait PointwiseOps: Backend {
    /// `x: [n, c, h, w]`, `weight: [o, c, 1, 1]`, `bias: [o]`; stride 1, no padding.
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl PointwiseOps for Flex {
    fn pointwise_conv2d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let (out, d) = dims_of(&x, &weight);
        tensor(forward(&values(&x), &values(&weight), &values(&bias), d), out)
    }
}

#[derive(Debug)]
struct PointwiseBackward;

impl Backward<Flex, 3> for PointwiseBackward {
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let w: FlexTensor = checkpointer.retrieve_node_output(w_state);
        let (_, d) = dims_of(&x, &w);
        let g = values(&grad);
        if let Some(node) = node_x {
            let gx = backward_input(&g, &values(&w), d);
            grads.register::<Flex>(node.id, tensor(gx, x.shape().to_vec()));
        }
        if node_w.is_some() || node_b.is_some() {
            let (gw, gb) = backward_weight(&values(&x), &g, d);
            if let Some(node) = node_w {
                grads.register::<Flex>(node.id, tensor(gw, w.shape().to_vec()));
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, tensor(gb, [d.o]));
            }
        }
    }
}

impl<C: CheckpointStrategy> PointwiseOps for Autodiff<Flex, C> {
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = PointwiseBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful();
        match prep {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
                let y = Flex::pointwise_conv2d(x.into_primitive(), weight.into_primitive(), bias.into_primitive());
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::pointwise_conv2d(x.into_primitive(), weight.into_primitive(), bias.into_primitive()))
            }
        }
    }
}

/// A 1×1 convolution (stride 1, no padding, one group) of `x: [n, c, h, w]` with
/// `weight: [o, c, 1, 1]` plus `bias: [o]`, differentiable on an autodiff Flex device.
pub fn pointwise_conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as PointwiseOps>::pointwise_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution, TensorData};

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn matches_burns_convolution_and_its_gradients() {
        let dev = Device::flex().autodiff();
        // (batch, in, out, h, w): a MobileNetV2 expand and project at 7×7, an odd batch that does
        // not split evenly between threads, a 1×1 plane, a non-square plane.
        for (n, c, o, h, w) in [(4, 16, 96, 7, 7), (5, 96, 16, 7, 7), (3, 8, 5, 1, 1), (2, 6, 10, 3, 5)] {
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &dev).require_grad();
            let wt = Tensor::<4>::random([o, c, 1, 1], Distribution::Normal(0.0, 0.3), &dev).require_grad();
            let b = Tensor::<1>::random([o], Distribution::Normal(0.0, 0.3), &dev).require_grad();
            let ours = pointwise_conv2d(x.clone(), wt.clone(), b.clone());
            let theirs = conv2d(x.clone(), wt.clone(), Some(b.clone()), ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(ours.clone(), theirs.clone()) < 1e-4, "values {n} {c} {o} {h} {w}");
            // A loss that weighs every output differently, so each gradient entry is tested.
            let r = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &dev);
            let g1 = (ours * r.clone()).sum().backward();
            let g2 = (theirs * r).sum().backward();
            assert!(max_diff(x.grad(&g1).unwrap(), x.grad(&g2).unwrap()) < 1e-4, "input gradient {n} {c} {o}");
            assert!(max_diff(wt.grad(&g1).unwrap(), wt.grad(&g2).unwrap()) < 1e-3, "weight gradient {n} {c} {o}");
            assert!(max_diff(b.grad(&g1).unwrap(), b.grad(&g2).unwrap()) < 1e-3, "bias gradient {n} {c} {o}");
        }
    }

    #[test]
    fn two_channels_by_hand() {
        // One image, two input channels of two pixels, one output: y = 2·x₀ − x₁ + 1.
        let dev = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 5.0], [1, 2, 1, 2]), &dev).require_grad();
        let w = Tensor::<4>::from_data(TensorData::new(vec![2.0f32, -1.0], [1, 2, 1, 1]), &dev).require_grad();
        let b = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &dev).require_grad();
        let y = pointwise_conv2d(x.clone(), w.clone(), b.clone());
        assert_eq!(y.clone().into_data().try_to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
        let g = y.sum().backward();
        let v = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v(x.grad(&g).unwrap()), vec![2.0, 2.0, -1.0, -1.0]);
        assert_eq!(v(w.grad(&g).unwrap()), vec![3.0, 8.0]);
        assert_eq!(b.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap(), vec![2.0]);
    }
}
