//! The open-set score and the temperature written into a finished model graph.

use crate::{Fitted, OpenSet, OpenSetError, METADATA_KEY, OUTPUT};
use retrain_onnx::proto::StringStringEntryProto;
use retrain_onnx::{Attr, Dim, GraphBuilder, ModelProto};

/// Whether `model` already has an `ood_score` output.
pub fn has_ood_output(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(|g| g.output.iter().any(|o| o.name == OUTPUT))
}

fn set_metadata(model: &mut ModelProto, key: &str, value: String) {
    model.metadata_props.retain(|p| p.key != key);
    model.metadata_props.push(StringStringEntryProto { key: key.into(), value });
}

/// Adds to a model with `features`, `logits` and `probabilities` outputs:
/// - `ood_score` `[batch]` = 1 − max over the bank of cosine(features, bank row), the bank
///   stored in half precision `[dim, bank]`;
/// - `probabilities` = softmax(logits / temperature) (the `logits` output stays as it was);
/// - `retrain.openset` in the metadata, and `retrain.outputs` saying so.
///
/// Only operators of opset 1–13 whose meaning no later opset changed are used, so imported
/// graphs with newer opset imports run it too.
pub fn add_to_model(model: &mut ModelProto, fitted: &Fitted, temperature: f32) -> Result<(), OpenSetError> {
    let graph = model.graph.as_mut().ok_or_else(|| OpenSetError::Graph("graph".into()))?;
    if !graph.output.iter().any(|o| o.name == "features") {
        return Err(OpenSetError::Graph("features".into()));
    }
    // The Softmax behind `probabilities` (through an Identity that names it) reads the logits.
    let producer =
        |g: &retrain_onnx::proto::GraphProto, v: &str| g.node.iter().position(|n| n.output.iter().any(|o| o == v));
    let mut at = producer(graph, "probabilities").ok_or_else(|| OpenSetError::Graph("probabilities".into()))?;
    if graph.node[at].op_type == "Identity" {
        let input = graph.node[at].input[0].clone();
        at = producer(graph, &input).ok_or(OpenSetError::Graph(input))?;
    }
    if graph.node[at].op_type != "Softmax" {
        return Err(OpenSetError::Graph("softmax of the logits".into()));
    }

    let dim = fitted.dim;
    let rows = fitted.bank.len() / dim.max(1);
    let mut g = GraphBuilder::with_prefix("openset", "openset/");
    // Unit features: f / max(‖f‖, ε), the squared norm as a product with ones.
    let sq = g.node("Mul", &["features", "features"], vec![]);
    let ones = g.constant_f32("ones", &[dim, 1], &vec![1.0; dim]);
    let norm2 = g.node("MatMul", &[&sq, &ones], vec![]);
    let eps = g.constant_f32("eps", &[], &[1e-24]);
    let norm2 = g.node("Max", &[&norm2, &eps], vec![]);
    let norm = g.node("Sqrt", &[&norm2], vec![]);
    let unit = g.node("Div", &["features", &norm], vec![]);
    // The bank transposed, [dim, rows]: one MatMul gives every cosine.
    let mut t = vec![0f32; fitted.bank.len()];
    for (r, row) in fitted.bank.chunks_exact(dim).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + r] = v;
        }
    }
    let bank16 = g.constant_f16("bank", &[dim, rows], &t);
    let bank = g.node("Cast", &[&bank16], vec![Attr::Int("to", retrain_onnx::proto::data_type::FLOAT as i64)]);
    let cos = g.node("MatMul", &[&unit, &bank], vec![]);
    // Max over the bank: GlobalMaxPool over [batch, 1, rows].
    let shape3 = g.constant_i64("shape3", &[0, 1, -1]);
    let cos3 = g.node("Reshape", &[&cos, &shape3], vec![]);
    let best = g.node("GlobalMaxPool", &[&cos3], vec![]);
    let flat = g.constant_i64("flat", &[-1]);
    let best = g.node("Reshape", &[&best, &flat], vec![]);
    let one = g.constant_f32("one", &[], &[1.0]);
    let score = g.node("Sub", &[&one, &best], vec![]);
    g.output_f32(&score, OUTPUT, &[Dim::Named("batch")]);
    // The temperature, before the Softmax.
    let tv = g.constant_f32("temperature", &[], &[temperature]);
    let logits = graph.node[at].input[0].clone();
    let scaled = g.node("Div", &[&logits, &tv], vec![]);
    graph.node[at].input[0] = scaled;
    g.append_to(model);

    let info = OpenSet { temperature, ..fitted.info.clone() };
    set_metadata(model, METADATA_KEY, serde_json::to_string(&info).expect("numbers and strings serialise"));
    set_metadata(
        model,
        "retrain.outputs",
        "`probabilities` [batch, classes] (softmax of logits / temperature), `logits` [batch, classes], `features` [batch, dim], `ood_score` [batch] (1 - cosine similarity to the nearest stored training feature; above `retrain.openset` threshold = none of the classes)".into(),
    );
    Ok(())
}
