//! Why a model predicted what it did. For the zoo's CNNs the head is linear on globally
//! pooled features, so the class activation map (Zhou et al. 2016) is exact: the last spatial
//! feature map weighted by the head's weights averages to the class's logit. It costs one
//! forward pass (the map is exposed as one more graph output when the model is opened). For
//! models without that structure, occlusion: the logit margin lost when each cell of a grid
//! is covered with grey, one forward pass per cell.

mod cam;
mod layers;
mod render;

pub use cam::{margin, upsample, Crop, Explainer, Explanation, Method, GREY};
pub use layers::{layers, render_filters, render_stage, Filters, Layers, Stage};
pub use render::{colour, jpeg_uri, overlay, png_uri, render};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Retrain(#[from] retrain::Error),
    #[error(transparent)]
    Features(#[from] retrain_features::FeatureError),
    #[error("{model}: no class `{class}` (its classes: {known})")]
    UnknownClass { model: PathBuf, class: String, known: String },
}

pub type Result<T, E = ExplainError> = std::result::Result<T, E>;
