//! The fine-tuning tail's own CPU kernels: burn backend extensions for the Flex backend, each with
//! a hand-written backward pass, for the layers where burn 0.22's generic implementation was most
//! of a fine-tuning step.

mod clip;
mod depthwise;

pub use clip::clip;
pub use depthwise::{depthwise_conv2d, Geometry};

use burn::backend::TensorMetadata;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;
use std::borrow::Cow;

/// A Flex tensor's values, row-major: borrowed when the tensor is already laid out so.
fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("the tail computes in f32").to_vec()),
    }
}

fn tensor(values: Vec<f32>, shape: impl Into<Vec<usize>>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

fn shape(t: &FlexTensor) -> Vec<usize> {
    t.shape().to_vec()
}
