use crate::arch;
use crate::registry::Backbone;
use crate::ZooError;
use retrain_onnx::{Attr, Dim, GraphBuilder, ModelProto};
use retrain_weights::StateDict;
use std::collections::BTreeSet;

/// A trained linear classifier on the backbone's features: `logits = W·f + b`.
#[derive(Clone, Debug)]
pub struct LinearHead {
    /// Row-major `[classes, feature_dim]`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Which outputs the built graph has (any combination).
#[derive(Clone, Debug, Default)]
pub struct GraphOutputs {
    /// `features` `[N, feature_dim]`: the pooled features.
    pub features: bool,
    /// `imagenet_logits` `[N, 1000]`: the original ImageNet classifier.
    pub imagenet_logits: bool,
    /// `logits` and `probabilities` `[N, classes]` from a trained head.
    pub head: Option<LinearHead>,
}

/// Reads named tensors from a state dict, recording every missing or mis-shaped tensor
/// instead of stopping at the first, so the error lists them together.
pub(crate) struct Weights<'a> {
    sd: &'a StateDict,
    problems: Vec<String>,
    pub(crate) used: BTreeSet<String>,
}

impl<'a> Weights<'a> {
    pub(crate) fn get(&mut self, name: &str, shape: &[usize]) -> Vec<f32> {
        self.used.insert(name.to_string());
        match self.sd.get(name) {
            Some(t) if t.shape == shape => t.data.clone(),
            Some(t) => {
                self.problems.push(format!(
                    "{name} has shape {:?}, expected {shape:?}",
                    t.shape
                ));
                vec![0.0; shape.iter().product()]
            }
            None => {
                self.problems.push(format!("{name} {shape:?} is missing"));
                vec![0.0; shape.iter().product()]
            }
        }
    }
}

/// Builds the backbone as an ONNX model. Its input `image` is uint8 RGB `[N, crop, crop, 3]`
/// (already resized and cropped); normalisation happens inside the graph.
pub fn build(
    backbone: &Backbone,
    sd: &StateDict,
    outputs: &GraphOutputs,
    metadata: &[(String, String)],
) -> Result<ModelProto, ZooError> {
    let crop = backbone.preprocess.crop as i64;
    let mut g = GraphBuilder::new(backbone.name);
    let image = g.input_u8(
        "image",
        &[
            Dim::Named("batch"),
            Dim::Fixed(crop),
            Dim::Fixed(crop),
            Dim::Fixed(3),
        ],
    );
    let x = g.node("Cast", &[&image], vec![Attr::Int("to", 1)]);
    let x = g.node(
        "Transpose",
        &[&x],
        vec![Attr::Ints("perm", vec![0, 3, 1, 2])],
    );
    let p = backbone.preprocess;
    let mean = g.constant_f32("mean", &[1, 3, 1, 1], &p.mean);
    let std = g.constant_f32("std", &[1, 3, 1, 1], &p.std);
    let x = g.node("Sub", &[&x, &mean], vec![]);
    let x = g.node("Div", &[&x, &std], vec![]);

    let mut w = Weights {
        sd,
        problems: Vec::new(),
        used: BTreeSet::new(),
    };
    let pooled = match backbone.family {
        "mobilenet_v2" => arch::mobilenet_v2(&mut g, &mut w, &x, p.crop as usize),
        "efficientnet_lite" => arch::efficientnet_lite(&mut g, &mut w, &x, p.crop as usize),
        other => unreachable!("registry names an unbuilt family {other}"),
    };
    let features = g.node("Flatten", &[&pooled.features], vec![Attr::Int("axis", 1)]);
    let batch = Dim::Named("batch");
    let d = backbone.feature_dim;
    if outputs.features {
        g.output_f32(
            &features,
            "features",
            &[batch.clone(), Dim::Fixed(d as i64)],
        );
    }
    if outputs.imagenet_logits {
        let wt = w.get(pooled.classifier_weight, &[1000, d]);
        let b = w.get(pooled.classifier_bias, &[1000]);
        let logits = gemm(&mut g, &features, &wt, &b, 1000, d);
        g.output_f32(
            &logits,
            "imagenet_logits",
            &[batch.clone(), Dim::Fixed(1000)],
        );
    }
    if !w.problems.is_empty() {
        return Err(ZooError::WrongWeights {
            model: backbone.name.into(),
            count: w.problems.len(),
            first: w
                .problems
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    if let Some(head) = &outputs.head {
        let classes = head.bias.len();
        let logits = gemm(&mut g, &features, &head.weight, &head.bias, classes, d);
        let probs = g.node("Softmax", &[&logits], vec![Attr::Int("axis", 1)]);
        let c = Dim::Fixed(classes as i64);
        g.output_f32(&logits, "logits", &[batch.clone(), c.clone()]);
        g.output_f32(&probs, "probabilities", &[batch, c]);
    }
    Ok(g.finish(metadata))
}

fn gemm(
    g: &mut GraphBuilder,
    x: &str,
    weight: &[f32],
    bias: &[f32],
    out: usize,
    inp: usize,
) -> String {
    let wt = g.constant_f32("fc_weight", &[out, inp], weight);
    let b = g.constant_f32("fc_bias", &[out], bias);
    g.node("Gemm", &[x, &wt, &b], vec![Attr::Int("transB", 1)])
}
