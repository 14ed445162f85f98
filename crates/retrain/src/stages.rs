//! A backbone's stages, found in its graph: for each spatial size, from the largest down, the
//! last feature map of that size. `retrain explain --layers` draws them; `retrain study
//! --layers` trains a linear head on each one, pooled; `retrain train --cut N` keeps the
//! backbone up to stage N.

use crate::{Error, Result};
use retrain_features::Session;
use retrain_onnx::proto::NodeProto;
use retrain_onnx::ModelProto;
use std::collections::HashMap;

/// Ops whose outputs are float feature maps worth looking at (integer and shape values are not).
const MAP_OPS: &[&str] = &[
    "Conv",
    "Relu",
    "Clip",
    "Add",
    "Mul",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "MaxPool",
    "AveragePool",
    "Concat",
    "BatchNormalization",
    "DequantizeLinear",
    "LeakyRelu",
    "Elu",
    "Gelu",
];

/// One stage: the graph value that ends it and, on the image it was found with, its maps.
#[derive(Clone, Debug)]
pub struct StageMap {
    pub value: String,
    /// [height, width] of its maps.
    pub size: [usize; 2],
    pub channels: usize,
    /// `channels` maps of `size`, channel-major, for the image it was run on.
    pub data: Vec<f32>,
}

/// Runs one image (`crop`×`crop` RGB bytes) through `model` with every candidate map exposed
/// and keeps, for each spatial size from the largest down, the last map of that size.
pub fn find(model: &ModelProto, pixels: &[u8], crop: usize, what: &str, threads: usize) -> Result<Vec<StageMap>> {
    let mut model = model.clone();
    let order: Vec<String> = model
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| MAP_OPS.contains(&n.op_type.as_str()))
        .flat_map(|n| n.output.first().cloned())
        .collect();
    for v in &order {
        retrain_onnx::expose(&mut model, v);
    }
    let mut session = Session::new(&retrain_onnx::encode(&model), what, threads)?;
    let outputs = session.run(pixels.to_vec(), 1, crop)?;
    let found: HashMap<&str, (&Vec<usize>, &Vec<f32>)> = outputs.iter().map(|(n, s, d)| (n.as_str(), (s, d))).collect();
    let mut by_size: Vec<([usize; 2], usize)> = Vec::new(); // size → index of its last map in `order`
    for (i, v) in order.iter().enumerate() {
        let Some((shape, _)) = found.get(v.as_str()) else { continue };
        // Feature maps only: [1, C, H, W] with more channels than the image and H = W above 1
        // (the crop is square; channels-last tensors, as in ConvNeXt's blocks, are not maps).
        if shape.len() != 4 || shape[1] <= 3 || shape[2] < 2 || shape[2] != shape[3] {
            continue;
        }
        let size = [shape[2], shape[3]];
        match by_size.iter_mut().find(|(s, _)| *s == size) {
            Some(slot) => slot.1 = i,
            None => by_size.push((size, i)),
        }
    }
    by_size.sort_by(|a, b| (b.0[0] * b.0[1]).cmp(&(a.0[0] * a.0[1])));
    Ok(by_size
        .into_iter()
        .map(|(size, i)| {
            let (shape, data) = found[order[i].as_str()];
            StageMap { value: order[i].clone(), size, channels: shape[1], data: data.clone() }
        })
        .collect())
}

fn node(op: &str, input: &str, output: &str, attribute: Vec<retrain_onnx::proto::AttributeProto>) -> NodeProto {
    NodeProto {
        input: vec![input.into()],
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        attribute,
        ..Default::default()
    }
}

/// Rewires a built backbone graph so that its features are stage `value` globally pooled
/// (`channels` of them): whatever read the features (the `features` output, the head) now
/// reads the pooled stage, and the layers after it are dropped.
pub fn cut(model: &mut ModelProto, value: &str, channels: usize) -> Result<()> {
    let graph = model.graph.as_mut().ok_or_else(|| cut_error("the model has no graph"))?;
    let features = graph
        .node
        .iter()
        .find(|n| n.op_type == "Identity" && n.output.first().is_some_and(|o| o == "features"))
        .and_then(|n| n.input.first().cloned())
        .ok_or_else(|| cut_error("no `features` value to replace"))?;
    let (pooled, flat) = (format!("retrain/cut/{value}/pool"), format!("retrain/cut/{value}/flatten"));
    for n in &mut graph.node {
        for i in &mut n.input {
            if *i == features {
                *i = flat.clone();
            }
        }
    }
    let at = graph.node.iter().position(|n| n.output.iter().any(|o| o == value)).ok_or_else(|| cut_error(value))?;
    let axis = retrain_onnx::proto::AttributeProto {
        name: "axis".into(),
        r#type: retrain_onnx::proto::attribute_type::INT,
        i: 1,
        ..Default::default()
    };
    graph.node.insert(at + 1, node("GlobalAveragePool", value, &pooled, Vec::new()));
    graph.node.insert(at + 2, node("Flatten", &pooled, &flat, vec![axis]));
    for o in &mut graph.output {
        if o.name == "features" {
            if let Some(dim) = o
                .r#type
                .as_mut()
                .and_then(|t| t.tensor_type.as_mut())
                .and_then(|t| t.shape.as_mut())
                .and_then(|s| s.dim.get_mut(1))
            {
                *dim = retrain_onnx::proto::Dimension { dim_value: Some(channels as i64), ..Default::default() };
            }
        }
    }
    retrain_onnx::prune(graph);
    Ok(())
}

fn cut_error(reason: &str) -> Error {
    Error::Data { path: "--cut".into(), reason: format!("cannot cut the backbone there: {reason}") }
}
