//! Cutting and editing built graphs: the frozen trunk of a fine-tune is the graph up to a
//! value, and tuned weights go back into the graph's initializers by name.

use crate::proto::{self, data_type, GraphProto, ModelProto};
use std::collections::BTreeSet;

/// The model computing only `output` (a float value of the graph), which becomes its one output:
/// every node and initializer it does not need is dropped.
pub fn truncate(model: &ModelProto, output: &str) -> ModelProto {
    let mut m = model.clone();
    let graph = m.graph.get_or_insert_with(GraphProto::default);
    let mut needed: BTreeSet<String> = BTreeSet::from([output.to_string()]);
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
    graph.value_info.clear();
    graph.output = vec![float_output(output)];
    m
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
}
