//! Fine-tuning: the upper part of a backbone (a "tail" cut from its ONNX graph) trained in burn
//! on the activations that ONNX Runtime computes for the frozen lower part.
//!
//! [`Tail`] reads the tail's nodes from the model's graph and runs them in burn; [`Trainer`]
//! owns its parameters and optimisers (AdamW or SGD with momentum, one learning rate for the
//! new head and a lower one for the unfrozen blocks, warm-up then cosine decay, label
//! smoothing) and checkpoints everything a bit-identical resume needs.

mod kernels;
mod schedule;
mod tail;
mod trainer;

pub use kernels::{clip, depthwise_conv2d, pointwise_conv2d, Geometry};
pub use schedule::learning_rate;
pub use tail::{BatchStat, ParamSpec, Tail, TailParams};
pub use trainer::{BatchNormMode, Checkpoint, EpochStats, OptimizerKind, Progress, Targets, Trainer, TuneConfig};

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("the graph cannot be fine-tuned: {0}")]
    Graph(String),
    #[error("fine-tuning does not support this layer yet: {0}")]
    Unsupported(String),
    #[error("{path}: {reason}")]
    Checkpoint { path: std::path::PathBuf, reason: String },
}
