//! Network families, written against torchvision's (or the reference implementation's)
//! module names so that published state dicts load unchanged.

mod classic;
mod convnext;
mod densenet;
mod efficientnet;
mod efficientnet_lite;
mod inception;
mod mobilenet_v2;
mod mobilenet_v3;
mod ops;
mod resnet;
mod vit;

use crate::graph::Weights;
use crate::registry::Family;
pub(crate) use densenet::modern_key as densenet_modern_key;
use ops::Hw;
use retrain_onnx::GraphBuilder;

/// What a family hands back: the features `[N, dim]` and, when asked, ImageNet logits.
pub(crate) struct Trunk {
    pub features: String,
    pub logits: Option<String>,
}

pub(crate) fn build(
    family: Family,
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    size: usize,
    logits: bool,
) -> Trunk {
    let hw = Hw(size, size);
    match family {
        Family::AlexNet => classic::alexnet(g, w, x, hw, logits),
        Family::Vgg16 { bn } => classic::vgg16(g, w, x, hw, bn, logits),
        Family::SqueezeNet11 => classic::squeezenet1_1(g, w, x, hw, logits),
        Family::ResNet { bottleneck, layers } => resnet::resnet(g, w, x, hw, bottleneck, layers, logits),
        Family::InceptionV3 => inception::inception_v3(g, w, x, hw, logits),
        Family::DenseNet121 => densenet::densenet121(g, w, x, hw, logits),
        Family::MobileNetV2 => mobilenet_v2::mobilenet_v2(g, w, x, hw, logits),
        Family::MobileNetV3 { large } => mobilenet_v3::mobilenet_v3(g, w, x, hw, large, logits),
        Family::EfficientNet { width, depth } => {
            efficientnet::efficientnet(g, w, x, hw, width as f64, depth as f64, logits)
        }
        Family::EfficientNetLite { width, depth } => {
            efficientnet_lite::efficientnet_lite(g, w, x, hw, width as f64, depth as f64, logits)
        }
        Family::ConvNextTiny => convnext::convnext_tiny(g, w, x, hw, logits),
        Family::VitB16 => vit::vit_b_16(g, w, x, hw, logits),
        Family::Imported => unreachable!("imported graphs are merged, not built"),
    }
}

/// Global average pool + flatten, then (when asked) torch's `fc`-style classifier.
pub(crate) fn pooled_with_fc(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    dim: usize,
    fc: &str,
    logits: bool,
) -> Trunk {
    let p = ops::global_avg_pool(g, x);
    let features = ops::flatten(g, &p);
    let logits = logits.then(|| ops::linear(g, w, &features, fc, dim, 1000));
    Trunk { features, logits }
}
