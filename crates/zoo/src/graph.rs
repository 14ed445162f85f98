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
    /// Photos with several labels: one sigmoid per class instead of a softmax, and a `labels`
    /// output (1 where the probability reaches the class's threshold, else 0).
    pub thresholds: Option<Vec<f32>>,
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
    /// BatchNorm after a convolution stays a `BatchNormalization` node (for training it with
    /// batch statistics) instead of being folded into the convolution's weights.
    pub batchnorm_nodes: bool,
}

/// Reads named tensors from a state dict, recording every missing or mis-shaped tensor
/// instead of stopping at the first, so the error lists them together.
pub(crate) struct Weights<'a> {
    sd: &'a StateDict,
    problems: Vec<String>,
    pub(crate) used: BTreeSet<String>,
    /// The backbone's trainable units (module prefixes) and, once seen, the graph value each
    /// one reads: where the graph can be cut into a frozen trunk and a trainable tail.
    blocks: Vec<(String, Option<String>)>,
    /// See [`GraphOutputs::batchnorm_nodes`].
    pub(crate) batchnorm_nodes: bool,
    /// Every tensor asked for, in the order asked: what a state dict for this backbone holds.
    wanted: Vec<(String, Vec<usize>)>,
}

impl<'a> Weights<'a> {
    /// Notes that the layer `module` reads value `x`: the first such read of a block is its input.
    pub(crate) fn reads(&mut self, module: &str, x: &str) {
        for (prefix, input) in &mut self.blocks {
            if input.is_none()
                && (module == prefix || module.strip_prefix(prefix.as_str()).is_some_and(|r| r.starts_with('.')))
            {
                *input = Some(x.to_string());
            }
        }
    }

    pub(crate) fn get(&mut self, name: &str, shape: &[usize]) -> Vec<f32> {
        if self.used.insert(name.to_string()) {
            self.wanted.push((name.to_string(), shape.to_vec()));
        }
        match self.sd.get(name) {
            Some(t) if t.shape == shape => t.data.clone(),
            Some(t) => {
                self.problems.push(format!("{name} has shape {:?}, expected {shape:?}", t.shape));
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
    Ok(build_with_blocks(backbone, sd, outputs, metadata)?.model)
}

/// A built graph and, for each of the backbone's [`Backbone::blocks`], the name of the value
/// that block reads: cutting the graph there splits it into a frozen trunk and a tail.
#[derive(Clone, Debug)]
pub struct Built {
    pub model: ModelProto,
    /// The normalised image `[N, 3, crop, crop]` the first layer reads (empty for imported graphs).
    pub input: String,
    /// `None` where a block starts with a layer that does not note what it reads.
    pub block_inputs: Vec<Option<String>>,
}

/// [`build`], also naming each block's input value (empty for imported graphs).
pub fn build_with_blocks(
    backbone: &Backbone,
    sd: &StateDict,
    outputs: &GraphOutputs,
    metadata: &[(String, String)],
) -> Result<Built, ZooError> {
    if let Some(imp) = &backbone.imported {
        return Ok(Built {
            model: build_imported(backbone, imp, outputs, metadata)?,
            input: String::new(),
            block_inputs: Vec::new(),
        });
    }
    let crop = backbone.preprocess.crop as i64;
    let mut g = GraphBuilder::new(backbone.name);
    let image = g.input_u8("image", &[Dim::Named("batch"), Dim::Fixed(crop), Dim::Fixed(crop), Dim::Fixed(3)]);
    let x = g.node("Cast", &[&image], vec![Attr::Int("to", 1)]);
    let x = g.node("Transpose", &[&x], vec![Attr::Ints("perm", vec![0, 3, 1, 2])]);
    let p = backbone.preprocess;
    let mean = g.constant_f32("mean", &[1, 3, 1, 1], &p.mean);
    let std = g.constant_f32("std", &[1, 3, 1, 1], &p.std);
    let x = g.node("Sub", &[&x, &mean], vec![]);
    let x = g.node("Div", &[&x, &std], vec![]);

    let remapped;
    let sd = if backbone.family == crate::registry::Family::DenseNet121
        && sd.keys().any(|k| arch::densenet_modern_key(k).is_some())
    {
        remapped = sd
            .iter()
            .map(|(k, v)| (arch::densenet_modern_key(k).unwrap_or_else(|| k.clone()), v.clone()))
            .collect::<StateDict>();
        &remapped
    } else {
        sd
    };
    let blocks = backbone.blocks.iter().map(|b| (b.clone(), None)).collect();
    let mut w = Weights {
        sd,
        problems: Vec::new(),
        used: BTreeSet::new(),
        blocks,
        batchnorm_nodes: outputs.batchnorm_nodes,
        wanted: Vec::new(),
    };
    let trunk = arch::build(backbone.family, &mut g, &mut w, &x, p.crop as usize, outputs.imagenet_logits);
    let features = trunk.features;
    let batch = Dim::Named("batch");
    let d = backbone.feature_dim;
    if outputs.features {
        g.output_f32(&features, "features", &[batch.clone(), Dim::Fixed(d as i64)]);
    }
    if let Some(logits) = &trunk.logits {
        g.output_f32(logits, "imagenet_logits", &[batch.clone(), Dim::Fixed(1000)]);
    }
    if !w.problems.is_empty() {
        return Err(ZooError::WrongWeights {
            model: backbone.name.into(),
            count: w.problems.len(),
            first: w.problems.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
        });
    }
    if let Some(head) = &outputs.head {
        attach_head(&mut g, &features, head, d);
    }
    let block_inputs = w.blocks.into_iter().map(|(_, x)| x).collect();
    Ok(Built { model: g.finish(metadata), input: x, block_inputs })
}

/// The name and shape of every tensor `backbone` reads from its state dict (with the ImageNet
/// classifier's), in the order the graph reads them: the parameters a random initialisation fills.
pub fn parameter_shapes(backbone: &Backbone) -> Vec<(String, Vec<usize>)> {
    if backbone.imported.is_some() {
        return Vec::new();
    }
    let sd = StateDict::new();
    let mut g = GraphBuilder::new(backbone.name);
    let image = g.input_u8("image", &[Dim::Named("batch"), Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(3)]);
    let mut w = Weights {
        sd: &sd,
        problems: Vec::new(),
        used: BTreeSet::new(),
        blocks: Vec::new(),
        batchnorm_nodes: false,
        wanted: Vec::new(),
    };
    arch::build(backbone.family, &mut g, &mut w, &image, backbone.preprocess.crop as usize, true);
    w.wanted
}

/// The trained classifier on the features: `logits` and `probabilities` (softmax, or one
/// sigmoid per class with a `labels` output when the head has thresholds).
fn attach_head(g: &mut GraphBuilder, features: &str, head: &LinearHead, dim: usize) {
    let classes = head.bias.len();
    // A head trained on a cut backbone's features reads fewer than the backbone's `dim`.
    let dim = if classes > 0 && head.weight.len().is_multiple_of(classes) { head.weight.len() / classes } else { dim };
    let logits = gemm(g, features, &head.weight, &head.bias, classes, dim);
    let (batch, c) = (Dim::Named("batch"), Dim::Fixed(classes as i64));
    let (probs, labels) = match &head.thresholds {
        None => (g.node("Softmax", &[&logits], vec![Attr::Int("axis", 1)]), None),
        Some(t) => {
            let probs = g.node("Sigmoid", &[&logits], vec![]);
            // probability >= threshold, as Not(Less) (GreaterOrEqual needs opset 12; an
            // imported graph may declare less).
            let t = g.constant_f32("thresholds", &[classes], t);
            let below = g.node("Less", &[&probs, &t], vec![]);
            let on = g.node("Not", &[&below], vec![]);
            (probs, Some(g.node("Cast", &[&on], vec![Attr::Int("to", 1)])))
        }
    };
    g.output_f32(&logits, "logits", &[batch.clone(), c.clone()]);
    g.output_f32(&probs, "probabilities", &[batch.clone(), c.clone()]);
    if let Some(on) = labels {
        g.output_f32(&on, LABELS_OUTPUT, &[batch, c]);
    }
}

/// The output of a several-labels model: 1 for each label the photo has, else 0.
pub const LABELS_OUTPUT: &str = "labels";

/// Replaces the thresholds behind a several-labels graph's `labels` output (the constant its
/// `Less` compares the probabilities with); false when the graph has no such output.
pub fn set_thresholds(graph: &mut retrain_onnx::proto::GraphProto, thresholds: &[f32]) -> bool {
    let mut value = LABELS_OUTPUT.to_string();
    // Back from the output through Identity, Cast and Not to the comparison.
    for _ in 0..4 {
        let Some(n) = graph.node.iter().find(|n| n.output.first() == Some(&value)) else { return false };
        if n.op_type == "Less" {
            let name = n.input.get(1).cloned().unwrap_or_default();
            return retrain_onnx::set_initializer_f32(graph, &name, thresholds);
        }
        value = n.input.first().cloned().unwrap_or_default();
    }
    false
}

fn gemm(g: &mut GraphBuilder, x: &str, weight: &[f32], bias: &[f32], out: usize, inp: usize) -> String {
    let wt = g.constant_f32("fc_weight", &[out, inp], weight);
    let b = g.constant_f32("fc_bias", &[out], bias);
    g.node("Gemm", &[x, &wt, &b], vec![Attr::Int("transB", 1)])
}

/// The name an imported graph's input is renamed to, fed by retrain's preprocessing.
const IMPORTED_INPUT: &str = "retrain/backbone_input";

/// A user's ONNX model behind retrain's uint8 input and normalisation, its feature value
/// flattened as `features`, and the head on top: its own nodes and opsets are kept as they are.
fn build_imported(
    backbone: &Backbone,
    imp: &crate::Imported,
    outputs: &GraphOutputs,
    metadata: &[(String, String)],
) -> Result<ModelProto, ZooError> {
    let err = |reason: String| ZooError::Import { path: imp.onnx.clone(), reason };
    let model = retrain_onnx::read(&imp.onnx).map_err(|e| err(e.to_string()))?;
    let graph = model.graph.clone().ok_or_else(|| err("the file holds no graph".into()))?;
    let inits: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph
        .input
        .iter()
        .find(|i| !inits.contains(i.name.as_str()))
        .ok_or_else(|| err("the graph has no input".into()))?
        .name
        .clone();
    if outputs.imagenet_logits {
        return Err(err("an imported model has no ImageNet classifier".into()));
    }
    let crop = backbone.preprocess.crop as i64;
    let mut g = GraphBuilder::with_prefix(backbone.name, "retrain/");
    let image = g.input_u8("image", &[Dim::Named("batch"), Dim::Fixed(crop), Dim::Fixed(crop), Dim::Fixed(3)]);
    let mut x = g.node("Cast", &[&image], vec![Attr::Int("to", 1)]);
    let p = backbone.preprocess;
    let (shape, perm) = match imp.layout {
        crate::Layout::Nchw => ([1, 3, 1, 1], true),
        crate::Layout::Nhwc => ([1, 1, 1, 3], false),
    };
    if perm {
        x = g.node("Transpose", &[&x], vec![Attr::Ints("perm", vec![0, 3, 1, 2])]);
    }
    let mean = g.constant_f32("mean", &shape, &p.mean);
    let std = g.constant_f32("std", &shape, &p.std);
    let x = g.node("Sub", &[&x, &mean], vec![]);
    g.node_to("Div", &[&x, &std], vec![], IMPORTED_INPUT);
    let produced: BTreeSet<&str> = graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    if !produced.contains(imp.feature_output.as_str()) {
        return Err(err(format!("no value named `{}` in the graph", imp.feature_output)));
    }
    // Names retrain's own inputs and outputs use are renamed inside the imported graph.
    let reserved = ["image", "features", "logits", "probabilities", "imagenet_logits", LABELS_OUTPUT];
    let renamed: Vec<(String, String)> = std::iter::once((input.clone(), IMPORTED_INPUT.to_string()))
        .chain(reserved.iter().filter(|r| **r != input).map(|r| (r.to_string(), format!("imported/{r}"))))
        .collect();
    let feature_value = renamed
        .iter()
        .find(|(from, _)| *from == imp.feature_output)
        .map(|(_, to)| to.clone())
        .unwrap_or_else(|| imp.feature_output.clone());
    let pairs: Vec<(&str, &str)> = renamed.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    g.append_graph(graph, &pairs);
    let features = g.node("Flatten", &[&feature_value], vec![Attr::Int("axis", 1)]);
    let batch = Dim::Named("batch");
    let d = backbone.feature_dim;
    if outputs.features {
        // feature_dim 0: not known yet (the import probes it by running this graph).
        let dim = if d == 0 { Dim::Named("feature_dim") } else { Dim::Fixed(d as i64) };
        g.output_f32(&features, "features", &[batch.clone(), dim]);
    }
    if let Some(head) = &outputs.head {
        attach_head(&mut g, &features, head, d);
    }
    Ok(g.finish_with(metadata, model.ir_version.max(7), model.opset_import, model.functions))
}
