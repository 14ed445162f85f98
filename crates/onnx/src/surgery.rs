//! Cutting and editing built graphs: the frozen trunk of a fine-tune is the graph up to a
//! value, and tuned weights go back into the graph's initializers by name.

use crate::proto::{self, data_type, GraphProto, ModelProto};
use std::collections::BTreeSet;

/// The model computing only `output` (a float value of the graph), which becomes its one output:
/// every node and initializer it does not need is dropped.
pub fn truncate(model: &ModelProto, output: &str) -> ModelProto {
    let mut m = model.clone();
    let graph = m.graph.get_or_insert_with(GraphProto::default);
    graph.output = vec![float_output(output)];
    prune(graph);
    graph.value_info.clear();
    m
}

/// Drops the nodes no graph output needs, and the initializers and inputs only they read.
pub fn prune(graph: &mut GraphProto) {
    let mut needed: BTreeSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; graph.node.len()];
    for (i, n) in graph.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(n.input.iter().filter(|x| !x.is_empty()).cloned());
        }
    }
    let mut k = keep.into_iter();
    graph.node.retain(|_| k.next().unwrap_or(false));
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph.input.retain(|v| needed.contains(&v.name));
}

/// Makes a float value inside the graph one more output (a no-op if it already is one).
pub fn expose(model: &mut ModelProto, value: &str) {
    let graph = model.graph.get_or_insert_with(GraphProto::default);
    if !graph.output.iter().any(|o| o.name == value) {
        graph.output.push(float_output(value));
    }
}

/// A graph output entry for a float value of unspecified shape.
pub(crate) fn float_output(name: &str) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(proto::TypeProto {
            tensor_type: Some(proto::TypeProtoTensor { elem_type: data_type::FLOAT, shape: None }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A float initializer's shape and values (raw or `float_data` storage).
pub fn initializer_f32(graph: &GraphProto, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
    graph.initializer.iter().find(|t| t.name == name).and_then(tensor_f32)
}

/// A float tensor's shape and values; `None` for other element types.
pub(crate) fn tensor_f32(t: &proto::TensorProto) -> Option<(Vec<usize>, Vec<f32>)> {
    if t.data_type != data_type::FLOAT {
        return None;
    }
    let data = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    Some((t.dims.iter().map(|&d| d as usize).collect(), data))
}

/// Replaces a float initializer's values (same element count), stored raw; false if there is
/// no such float initializer or the count differs.
pub fn set_initializer_f32(graph: &mut GraphProto, name: &str, values: &[f32]) -> bool {
    let Some(t) = graph.initializer.iter_mut().find(|t| t.name == name && t.data_type == data_type::FLOAT) else {
        return false;
    };
    if t.dims.iter().product::<i64>() as usize != values.len() {
        return false;
    }
    t.float_data.clear();
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    true
}

/// Folds each `BatchNormalization` that follows a `Conv` (its only reader) into that
/// convolution's weights and bias, as the graph would be built with BatchNorm folded: what a
/// fine-tune trained with batch statistics exports. Returns how many were folded; a
/// BatchNorm it cannot fold (not after a Conv, or the Conv's output read elsewhere) stays.
pub fn fold_batchnorm(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else { return 0 };
    let mut folded = 0;
    let mut i = 0;
    while i < graph.node.len() {
        if let Some((conv, bn)) = foldable(graph, i) {
            if fold_one(graph, conv, bn) {
                folded += 1;
                continue;
            }
        }
        i += 1;
    }
    folded
}

/// (Conv node, BatchNorm node) indices when node `i` is a BatchNorm fed only by a Conv.
fn foldable(graph: &GraphProto, i: usize) -> Option<(usize, usize)> {
    let bn = &graph.node[i];
    if bn.op_type != "BatchNormalization" || bn.input.len() != 5 || bn.output.len() != 1 {
        return None;
    }
    let x = &bn.input[0];
    let conv = graph.node.iter().position(|n| n.op_type == "Conv" && n.output.first() == Some(x))?;
    let readers = graph.node.iter().filter(|n| n.input.contains(x)).count();
    let is_output = graph.output.iter().any(|o| &o.name == x);
    (readers == 1 && !is_output).then_some((conv, i))
}

fn fold_one(graph: &mut GraphProto, conv: usize, bn: usize) -> bool {
    let b = graph.node[bn].clone();
    let eps = b.attribute.iter().find(|a| a.name == "epsilon").map(|a| a.f).unwrap_or(1e-5);
    let get = |k: usize| initializer_f32(graph, &b.input[k]).map(|(_, v)| v);
    let (Some(gamma), Some(beta), Some(mean), Some(var)) = (get(1), get(2), get(3), get(4)) else {
        return false;
    };
    let c = &graph.node[conv];
    let Some((wshape, mut w)) = c.input.get(1).and_then(|n| initializer_f32(graph, n)) else { return false };
    let cout = wshape.first().copied().unwrap_or(0);
    if [gamma.len(), beta.len(), mean.len(), var.len()].iter().any(|&l| l != cout) || cout == 0 {
        return false;
    }
    // Another reader of the weights would see them change.
    let wname = c.input[1].clone();
    if graph.node.iter().filter(|n| n.input.contains(&wname)).count() != 1 {
        return false;
    }
    let bias_name = c.input.get(2).filter(|n| !n.is_empty()).cloned();
    let mut bias = match &bias_name {
        Some(n) if graph.node.iter().filter(|m| m.input.contains(n)).count() == 1 => match initializer_f32(graph, n) {
            Some((_, v)) if v.len() == cout => v,
            _ => return false,
        },
        Some(_) => return false,
        None => vec![0.0; cout],
    };
    let per_out = w.len() / cout;
    for o in 0..cout {
        let scale = gamma[o] / (var[o] + eps).sqrt();
        w[o * per_out..(o + 1) * per_out].iter_mut().for_each(|v| *v *= scale);
        bias[o] = (bias[o] - mean[o]) * scale + beta[o];
    }
    set_initializer_f32(graph, &wname, &w);
    match bias_name {
        Some(n) => {
            set_initializer_f32(graph, &n, &bias);
        }
        None => {
            let n = format!("{}_folded_bias", b.output[0]);
            graph.initializer.push(proto::TensorProto {
                name: n.clone(),
                dims: vec![cout as i64],
                data_type: data_type::FLOAT,
                raw_data: bias.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            });
            graph.node[conv].input.resize(2, String::new());
            graph.node[conv].input.push(n);
        }
    }
    graph.node[conv].output[0] = b.output[0].clone();
    graph.node.remove(bn);
    let used: BTreeSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    graph.initializer.retain(|t| !b.input[1..].contains(&t.name) || used.contains(&t.name));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attr, Dim, GraphBuilder};

    fn two_branch() -> (ModelProto, String) {
        let mut g = GraphBuilder::new("t");
        let x = g.input_f32("x", &[Dim::Fixed(1), Dim::Fixed(2)]);
        let a = g.constant_f32("a", &[2], &[1.0, 2.0]);
        let y = g.node("Mul", &[&x, &a], vec![]);
        let z = g.node("Relu", &[&y], vec![]);
        let b = g.constant_f32("b", &[2], &[3.0, 4.0]);
        let w = g.node("Add", &[&z, &b], vec![]);
        let s = g.node("Softmax", &[&w], vec![Attr::Int("axis", 1)]);
        g.output_f32(&s, "out", &[Dim::Fixed(1), Dim::Fixed(2)]);
        (g.finish(&[]), y)
    }

    #[test]
    fn truncate_keeps_only_what_the_value_needs() {
        let (m, y) = two_branch();
        let t = truncate(&m, &y);
        let g = t.graph.unwrap();
        assert_eq!(g.node.len(), 1);
        assert_eq!(g.node[0].op_type, "Mul");
        assert_eq!(g.initializer.len(), 1);
        assert_eq!(g.output[0].name, y);
        assert_eq!(g.input.len(), 1);
    }

    #[test]
    fn initializers_round_trip() {
        let (mut m, _) = two_branch();
        let g = m.graph.as_mut().unwrap();
        let name = g.initializer[1].name.clone();
        assert_eq!(initializer_f32(g, &name), Some((vec![2], vec![3.0, 4.0])));
        assert!(set_initializer_f32(g, &name, &[5.0, -6.0]));
        assert!(!set_initializer_f32(g, &name, &[5.0]));
        assert!(!set_initializer_f32(g, "nope", &[5.0, 6.0]));
        assert_eq!(initializer_f32(g, &name), Some((vec![2], vec![5.0, -6.0])));
    }

    #[test]
    fn batchnorm_folds_into_the_convolution_before_it_unless_another_node_reads_it() {
        let mut g = GraphBuilder::new("t");
        let x = g.input_f32("x", &[Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(2)]);
        let w = g.constant_f32("w", &[2, 1, 1, 1], &[2.0, -1.0]);
        let y = g.node("Conv", &[&x, &w], vec![Attr::Ints("kernel_shape", vec![1, 1])]);
        let p: Vec<String> = [("s", [3.0, 0.5]), ("b", [1.0, 0.0]), ("m", [0.5, -2.0]), ("v", [3.0, 0.0])]
            .iter()
            .map(|(n, v)| g.constant_f32(n, &[2], v))
            .collect();
        let z = g.node("BatchNormalization", &[&y, &p[0], &p[1], &p[2], &p[3]], vec![Attr::Float("epsilon", 1.0)]);
        let r = g.node("Relu", &[&z], vec![]);
        g.output_f32(&r, "out", &[Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(2), Dim::Fixed(2)]);
        let model = g.finish(&[]);

        let mut folded = model.clone();
        assert_eq!(fold_batchnorm(&mut folded), 1);
        let graph = folded.graph.as_ref().unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "Relu", "Identity"]);
        assert_eq!(graph.node[0].output[0], graph.node[1].input[0]);
        // scale = s / sqrt(v + eps) = [1.5, 0.5]; w' = w·scale; b' = (0 - m)·scale + b.
        assert_eq!(initializer_f32(graph, &graph.node[0].input[1]).unwrap().1, vec![3.0, -0.5]);
        assert_eq!(initializer_f32(graph, &graph.node[0].input[2]).unwrap().1, vec![0.25, 1.0]);
        assert_eq!(graph.initializer.len(), 2, "the BatchNorm's tensors are gone");

        // A second reader of the convolution's output needs it unnormalised: nothing folds.
        let mut shared = model;
        let g = shared.graph.as_mut().unwrap();
        let conv_out = g.node[0].output[0].clone();
        g.node.push(crate::proto::NodeProto {
            op_type: "Relu".into(),
            input: vec![conv_out],
            output: vec!["other".into()],
            ..Default::default()
        });
        assert_eq!(fold_batchnorm(&mut shared), 0);
    }
}
