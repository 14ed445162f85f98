//! Clip (ReLU6 in MobileNetV2 and EfficientNet-Lite) as one pass forward and one backward, a
//! burn backend extension for the Flex CPU backend. burn 0.22's differentiable clamp is two
//! comparisons and two masked fills forward and two masked fills backward, each a pass over the
//! activations with a boolean tensor in between: a tenth of a fine-tuning step.

use super::{shape, tensor, values};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Flex};
use burn::tensor::Tensor;
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Elements per parallel task: large enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 16;

#[inline(always)]
fn clip_generic(x: &[f32], lo: f32, hi: f32, out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(x) {
        // Compare-and-select rather than f32::max/min, whose NaN rules keep it from vectorising.
        let v = if *x < lo { lo } else { *x };
        *o = if v > hi { hi } else { v };
    }
}

/// The gradient passes where `lo <= x <= hi` (at the bounds too, as burn's clamp), as a bit mask
/// so that the loop vectorises.
#[inline(always)]
fn gate_generic(g: &[f32], x: &[f32], lo: f32, hi: f32, out: &mut [f32]) {
    for (o, (g, x)) in out.iter_mut().zip(g.iter().zip(x)) {
        let inside = ((*x >= lo) & (*x <= hi)) as u32;
        *o = f32::from_bits(g.to_bits() & inside.wrapping_neg());
    }
}

dispatch!(clip_chunk, clip_generic, clip_avx2, (x: &[f32], lo: f32, hi: f32, out: &mut [f32]));
dispatch!(gate_chunk, gate_generic, gate_avx2, (g: &[f32], x: &[f32], lo: f32, hi: f32, out: &mut [f32]));

#[backend_extension(Flex, Autodiff)]
pub trait ClipOps: Backend {
    /// `min(max(x, lo), hi)`.
    fn clip(x: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self>;
}

impl ClipOps for Flex {
    fn clip(x: FlexTensor, lo: f32, hi: f32) -> FlexTensor {
        let src = values(&x);
        let mut out = vec![0.0f32; src.len()];
        out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| clip_chunk(s, lo, hi, o));
        tensor(out, shape(&x))
    }
}

#[derive(Debug)]
struct ClipBackward;

impl Backward<Flex, 1> for ClipBackward {
    type State = (NodeId, f32, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else { return };
        let (x_state, lo, hi) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let (x, g) = (values(&x), values(&grad));
        let mut gx = vec![0.0f32; g.len()];
        gx.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(x.par_chunks(CHUNK)))
            .for_each(|(o, (g, x))| gate_chunk(g, x, lo, hi, o));
        grads.register::<Flex>(node.id, tensor(gx, shape(&grad)));
    }
}

impl<C: CheckpointStrategy> ClipOps for Autodiff<Flex, C> {
    fn clip(x: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self> {
        match ClipBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), lo, hi);
                let y = Flex::clip(x.into_primitive(), lo, hi);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::clip(x.into_primitive(), lo, hi)),
        }
    }
}

/// `x` clipped to `[lo, hi]`, differentiable on an autodiff Flex device.
pub fn clip<const D: usize>(x: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as ClipOps>::clip(x.into_dispatch(), lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    #[test]
    fn equals_burns_clamp_and_its_gradient() {
        let dev = Device::flex().autodiff();
        // Large enough for several parallel chunks; values on both sides of both bounds, and the
        // bounds themselves.
        let mut v: Vec<f32> =
            Tensor::<1>::random([200_000], Distribution::Normal(3.0, 4.0), &dev).into_data().try_to_vec().unwrap();
        v[7] = 0.0;
        v[8] = 6.0;
        let x = Tensor::<2>::from_data(TensorData::new(v, [400, 500]), &dev).require_grad();
        let r = Tensor::<2>::random([400, 500], Distribution::Normal(0.0, 1.0), &dev);
        let ours = clip(x.clone(), 0.0, 6.0);
        let theirs = x.clone().clamp(0.0, 6.0);
        assert_eq!(ours.clone().into_data(), theirs.clone().into_data());
        let g1 = x.grad(&(ours * r.clone()).sum().backward()).unwrap();
        let g2 = x.grad(&(theirs * r).sum().backward()).unwrap();
        assert_eq!(g1.into_data(), g2.into_data());
    }

    #[test]
    fn the_gradient_passes_inside_and_at_the_bounds_only() {
        let dev = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 6.0, 7.0, -1.0, 0.0], [5]), &dev).require_grad();
        let y = clip(x.clone(), 0.0, 6.0);
        assert_eq!(y.clone().into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 6.0, 6.0, 0.0, 0.0]);
        let g = y.sum().backward();
        assert_eq!(x.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 1.0, 0.0, 0.0, 1.0]);
    }
}
