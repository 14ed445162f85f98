//! The fine-tuning tail's own CPU kernels: burn backend extensions for the Flex backend, each with
//! a hand-written backward pass, for the layers where burn 0.22's generic implementation was most
//! of a fine-tuning step.

/// Defines `$name` to run `$generic` compiled for AVX2 + FMA when the CPU has them (checked at run
/// time), and the baseline build otherwise: the loops are written plainly and the compiler
/// vectorises them for each target.
macro_rules! dispatch {
    ($name:ident, $generic:ident, $avx:ident, ($($arg:ident : $ty:ty),*)) => {
        pub(super) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                return unsafe { $avx($($arg),*) };
            }
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx($($arg: $ty),*) {
            $generic($($arg),*)
        }
    };
}

mod clip;
mod depthwise;
mod pointwise;

pub use clip::clip;
pub use depthwise::{depthwise_conv2d, Geometry};
pub use pointwise::pointwise_conv2d;

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
