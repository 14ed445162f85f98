//! The backbone zoo: what each pretrained network is (input size, preprocessing, feature
//! dimension, weight source) and how to build it as an ONNX graph from torchvision-named weights.

mod arch;
mod graph;
mod registry;

pub use graph::set_thresholds;
pub use graph::{build, build_with_blocks, parameter_shapes, Built, GraphOutputs, LinearHead, LABELS_OUTPUT};
pub use registry::{find, registry, Backbone, Family, Imported, Layout, Preprocess};

/// The 1000 ImageNet-1k class names, in the order of the classifiers' outputs (torchvision's).
pub fn imagenet_classes() -> Vec<&'static str> {
    include_str!("imagenet_classes.txt").lines().collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel { name: String, known: String },
    #[error("{path}: {reason}")]
    Import { path: std::path::PathBuf, reason: String },
    #[error("these weights do not fit {model}: {count} tensor(s) missing or mis-shaped, first: {first}")]
    WrongWeights { model: String, count: usize, first: String },
}
