//! Network families, written against torchvision's (or the reference implementation's)
//! module names so that published state dicts load unchanged.

mod efficientnet_lite;
mod mobilenet_v2;
mod ops;

pub(crate) use efficientnet_lite::efficientnet_lite;
pub(crate) use mobilenet_v2::mobilenet_v2;

/// What a family hands back: the pooled features and where its ImageNet classifier lives.
pub(crate) struct Pooled {
    pub features: String,
    pub classifier_weight: &'static str,
    pub classifier_bias: &'static str,
}
