//! Static int8 quantisation in ONNX's QDQ form: QuantizeLinear/DequantizeLinear pairs around
//! the float graph, which ONNX Runtime fuses into int8 kernels (QLinearConv, QLinearAdd, ...)
//! and any other ONNX runtime can still read as plain float arithmetic.
//!
//! The rules follow ONNX Runtime's own static quantiser: activations uint8 asymmetric (one
//! scale per tensor, from calibrated ranges), Conv weights int8 symmetric per output channel,
//! biases int32 at the input scale × the weight scale. A Relu/Clip between a Conv and the next
//! quantised tensor is left in the graph; ONNX Runtime folds it into the QuantizeLinear whose
//! range (from 0) already clips.

use crate::proto::{attribute_type, data_type, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::surgery::tensor_f32;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Observed range of a tensor over the calibration images: (min, max).
pub type Ranges = BTreeMap<String, (f32, f32)>;

/// Ops whose float activation inputs get quantised: the compute-heavy ones and the
/// tensors that join or pool them, so each Conv sits between a DequantizeLinear and a
/// QuantizeLinear and runs in int8.
const QUANTISED_INPUTS: &[&str] = &["Conv", "Gemm", "Add", "GlobalAveragePool", "MaxPool", "AveragePool"];

/// The activation tensors [`quantize_qdq`] needs ranges for, in graph order: inputs of the ops
/// above that no initializer holds, except the first Conv's (the normalised image: that layer
/// is the most sensitive and among the cheapest; keeping it float measured better, see
/// docs/benchmarks.md). Values named in `exclude` (e.g. a head's input, left
/// in float) are not listed either.
pub fn calibration_points(model: &ModelProto, exclude: &[&str]) -> Vec<String> {
    let Some(g) = model.graph.as_ref() else { return Vec::new() };
    let consts: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut seen: BTreeSet<String> =
        g.node.iter().find(|n| n.op_type == "Conv").map(|n| n.input[0].clone()).into_iter().collect();
    let mut out = Vec::new();
    for n in &g.node {
        if !QUANTISED_INPUTS.contains(&n.op_type.as_str()) {
            continue;
        }
        let inputs: &[String] = if matches!(n.op_type.as_str(), "Conv" | "Gemm") { &n.input[..1] } else { &n.input };
        for x in inputs {
            if !x.is_empty() && !consts.contains(x.as_str()) && !exclude.contains(&x.as_str()) && seen.insert(x.clone())
            {
                out.push(x.clone());
            }
        }
    }
    out
}

/// The same model with two scalar outputs per value in `names`, its minimum and maximum over
/// the batch ([`min_output`], [`max_output`]): ONNX Runtime reduces each tensor where it lives,
/// instead of copying every activation out (10× faster calibration here).
pub fn with_range_outputs(model: &ModelProto, names: &[String]) -> ModelProto {
    let mut m = model.clone();
    let g = m.graph.get_or_insert_with(GraphProto::default);
    for n in names {
        for (op, out) in [("ReduceMin", min_output(n)), ("ReduceMax", max_output(n))] {
            g.node.push(node(op, &[n], &out, vec![int_attr("keepdims", 0)]));
            g.output.push(crate::surgery::float_output(&out));
        }
    }
    m
}

/// The output of [`with_range_outputs`] holding `name`'s minimum.
pub fn min_output(name: &str) -> String {
    format!("{name}__min")
}

/// The output of [`with_range_outputs`] holding `name`'s maximum.
pub fn max_output(name: &str) -> String {
    format!("{name}__max")
}

/// uint8 asymmetric parameters covering `range` and 0 (so zero padding stays exact).
pub fn activation_params((lo, hi): (f32, f32)) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = (hi - lo) / 255.0;
    if !(scale > 0.0 && scale.is_finite()) {
        return (1.0, 0);
    }
    (scale, (-lo / scale).round().clamp(0.0, 255.0) as u8)
}

/// The model with every tensor in `ranges` quantised (a QuantizeLinear → DequantizeLinear pair
/// that all its readers then read) and the weights and biases of each Conv/Gemm whose input is
/// quantised stored as int8/int32 behind a DequantizeLinear. Graph outputs keep their float
/// values. Tensors without a range, and the ops reading only them, stay float.
pub fn quantize_qdq(model: &ModelProto, ranges: &Ranges) -> ModelProto {
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let init: HashMap<String, TensorProto> = g.initializer.drain(..).map(|t| (t.name.clone(), t)).collect();
    let mut nodes: Vec<NodeProto> = Vec::with_capacity(g.node.len() * 2);
    let mut new_init: Vec<TensorProto> = Vec::new();
    let mut renamed: HashMap<String, String> = HashMap::new();
    // How many nodes read each value. A weight read by several stays float: its int8 copy
    // would need one bias scale each.
    let mut readers: HashMap<String, usize> = HashMap::new();
    for x in g.node.iter().flat_map(|n| n.input.iter()) {
        *readers.entry(x.clone()).or_default() += 1;
    }
    let shared: BTreeSet<String> = readers.iter().filter(|&(_, &c)| c > 1).map(|(k, _)| k.clone()).collect();
    let produced: BTreeSet<String> = g.node.iter().flat_map(|n| n.output.iter().cloned()).collect();
    let qdq = |x: &str, nodes: &mut Vec<NodeProto>, new_init: &mut Vec<TensorProto>| -> Option<String> {
        let &(lo, hi) = ranges.get(x)?;
        if !readers.contains_key(x) {
            return None;
        }
        let (scale, zp) = activation_params((lo, hi));
        let s = scalar_f32(&format!("{x}_qscale"), scale);
        let z = TensorProto {
            name: format!("{x}_qzero"),
            data_type: data_type::UINT8,
            raw_data: vec![zp],
            ..Default::default()
        };
        let (q, dq) = (format!("{x}_q"), format!("{x}_dq"));
        nodes.push(node("QuantizeLinear", &[x, &s.name, &z.name], &q, vec![]));
        nodes.push(node("DequantizeLinear", &[&q, &s.name, &z.name], &dq, vec![]));
        new_init.push(s);
        new_init.push(z);
        Some(dq)
    };
    // Graph inputs are quantised before the first node.
    for x in ranges.keys().filter(|k| !produced.contains(k.as_str())) {
        if let Some(dq) = qdq(x, &mut nodes, &mut new_init) {
            renamed.insert(x.clone(), dq);
        }
    }
    let old_nodes = std::mem::take(&mut g.node);
    for mut n in old_nodes {
        let act_scale = n.input.first().and_then(|x| ranges.get(x)).map(|&r| activation_params(r).0);
        for x in n.input.iter_mut() {
            if let Some(r) = renamed.get(x.as_str()) {
                *x = r.clone();
            }
        }
        if let (Some(sx), true) = (act_scale, matches!(n.op_type.as_str(), "Conv" | "Gemm")) {
            quantize_weights(&mut n, sx, &shared, &init, &mut nodes, &mut new_init);
        }
        let outputs = n.output.clone();
        nodes.push(n);
        for y in &outputs {
            if let Some(dq) = qdq(y, &mut nodes, &mut new_init) {
                renamed.insert(y.clone(), dq);
            }
        }
    }
    g.node = nodes;
    let used: BTreeSet<&str> = g.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let mut kept: Vec<TensorProto> = init.into_values().filter(|t| used.contains(t.name.as_str())).collect();
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    g.initializer = kept;
    g.initializer.extend(new_init);
    g.value_info.clear();
    m
}

/// Replaces a Conv's (per output channel) or Gemm's (per tensor) float weight and bias
/// initializers by int8/int32 ones and DequantizeLinear nodes; `sx` is the input's scale.
fn quantize_weights(
    n: &mut NodeProto,
    sx: f32,
    shared: &BTreeSet<String>,
    init: &HashMap<String, TensorProto>,
    nodes: &mut Vec<NodeProto>,
    new_init: &mut Vec<TensorProto>,
) {
    let Some(wname) = n.input.get(1).cloned().filter(|w| !shared.contains(w)) else { return };
    let Some((dims, w)) = init.get(&wname).and_then(tensor_f32) else { return };
    let gemm = n.op_type == "Gemm";
    if gemm && (attr_i(n, "transB") != 1 || dims.len() != 2) {
        return; // only the [out, in] layout retrain writes; anything else stays float
    }
    let channels = if gemm { 1 } else { dims[0] };
    let per = w.len() / channels.max(1);
    let scales: Vec<f32> = w
        .chunks(per.max(1))
        .map(|c| {
            let m = c.iter().fold(0f32, |a, v| a.max(v.abs()));
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    let q: Vec<u8> =
        w.iter().enumerate().map(|(i, v)| ((v / scales[i / per]).round().clamp(-127.0, 127.0) as i8) as u8).collect();
    let per_channel = !gemm;
    n.input[1] = push_dequantized(&wname, "int8", &dims, (data_type::INT8, q), &scales, per_channel, nodes, new_init);

    let Some(bname) = n.input.get(2).cloned().filter(|b| !b.is_empty() && !shared.contains(b)) else { return };
    let Some((bdims, b)) = init.get(&bname).and_then(tensor_f32) else { return };
    let bscales: Vec<f32> = scales.iter().map(|s| sx * s).collect();
    let bq: Vec<u8> = b
        .iter()
        .enumerate()
        .flat_map(|(c, v)| {
            let s = bscales[if gemm { 0 } else { c }];
            ((v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32).to_le_bytes()
        })
        .collect();
    n.input[2] =
        push_dequantized(&bname, "int32", &bdims, (data_type::INT32, bq), &bscales, per_channel, nodes, new_init);
}

/// Stores `name`'s quantised values (`q`: element type and little-endian bytes) with their
/// scales (per channel along axis 0, or one for the tensor) and zero zero-points, and adds the
/// DequantizeLinear that gives the float value back; returns that value's name.
#[allow(clippy::too_many_arguments)]
fn push_dequantized(
    name: &str,
    suffix: &str,
    dims: &[usize],
    (elem_type, q): (i32, Vec<u8>),
    scales: &[f32],
    per_channel: bool,
    nodes: &mut Vec<NodeProto>,
    new_init: &mut Vec<TensorProto>,
) -> String {
    let (qn, sn, zn, dq) = (
        format!("{name}_{suffix}"),
        format!("{name}_{suffix}_scale"),
        format!("{name}_{suffix}_zero"),
        format!("{name}_dq"),
    );
    let scale_dims = if per_channel { vec![scales.len() as i64] } else { vec![] };
    let elem_bytes = if elem_type == data_type::INT32 { 4 } else { 1 };
    let tensor = |name: &str, dims: Vec<i64>, data_type: i32, raw_data: Vec<u8>| TensorProto {
        name: name.into(),
        dims,
        data_type,
        raw_data,
        ..Default::default()
    };
    new_init.push(tensor(&qn, dims.iter().map(|&d| d as i64).collect(), elem_type, q));
    new_init.push(tensor(
        &sn,
        scale_dims.clone(),
        data_type::FLOAT,
        scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
    ));
    new_init.push(tensor(&zn, scale_dims, elem_type, vec![0; scales.len() * elem_bytes]));
    let axis = if per_channel { vec![int_attr("axis", 0)] } else { vec![] };
    nodes.push(node("DequantizeLinear", &[&qn, &sn, &zn], &dq, axis));
    dq
}

fn scalar_f32(name: &str, v: f32) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: data_type::FLOAT,
        raw_data: v.to_le_bytes().to_vec(),
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i, r#type: attribute_type::INT, ..Default::default() }
}

fn attr_i(n: &NodeProto, name: &str) -> i64 {
    n.attribute.iter().find(|a| a.name == name).map_or(0, |a| a.i)
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: format!("{output}_node"),
        attribute,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attr, Dim, GraphBuilder};

    fn conv_relu_add() -> ModelProto {
        let mut g = GraphBuilder::new("t");
        let x = g.input_f32("x", &[Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(3)]);
        let w = g.constant_f32("w", &[3, 2, 1, 1], &[1.0, -2.0, 0.5, 0.25, 0.0, 0.0]);
        let b = g.constant_f32("b", &[3], &[0.1, -0.2, 0.0]);
        let c = g.node("Conv", &[&x, &w, &b], vec![Attr::Ints("kernel_shape", vec![1, 1])]);
        let r = g.node("Relu", &[&c], vec![]);
        let w2 = g.constant_f32("w2", &[3, 3, 1, 1], &[1.0; 9]);
        let c2 = g.node("Conv", &[&r, &w2], vec![Attr::Ints("kernel_shape", vec![1, 1])]);
        let s = g.node("Add", &[&c2, &r], vec![]);
        let p = g.node("GlobalAveragePool", &[&s], vec![]);
        g.output_f32(&p, "out", &[Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(1), Dim::Fixed(1)]);
        g.finish(&[])
    }

    #[test]
    fn points_are_activation_inputs_once_each() {
        let m = conv_relu_add();
        let pts = calibration_points(&m, &[]);
        let g = m.graph.as_ref().unwrap();
        let relu = g.node.iter().find(|n| n.op_type == "Relu").unwrap().output[0].clone();
        let conv2 = g.node.iter().filter(|n| n.op_type == "Conv").nth(1).unwrap().output[0].clone();
        let add = g.node.iter().find(|n| n.op_type == "Add").unwrap().output[0].clone();
        // the first Conv's input (`x`) stays float
        assert_eq!(pts, vec![relu.clone(), conv2.clone(), add.clone()]);
        assert_eq!(calibration_points(&m, &[&conv2]), vec![relu, add]);
    }

    #[test]
    fn a_weight_two_convs_read_stays_float() {
        let mut g = GraphBuilder::new("t");
        let x = g.input_f32("x", &[Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(3)]);
        let w = g.constant_f32("w", &[2, 2, 1, 1], &[1.0, 0.5, -0.5, 1.0]);
        let a = g.node("Conv", &[&x, &w], vec![]);
        let b = g.node("Conv", &[&a, &w], vec![]);
        let c = g.node("Conv", &[&b, &w], vec![]);
        g.output_f32(&c, "out", &[Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(3)]);
        let m = g.finish(&[]);
        let ranges: Ranges = calibration_points(&m, &[]).into_iter().map(|p| (p, (0.0, 1.0))).collect();
        let q = quantize_qdq(&m, &ranges);
        let g = q.graph.unwrap();
        assert_eq!(g.node.iter().filter(|n| n.op_type == "QuantizeLinear").count(), 2);
        assert!(g.initializer.iter().all(|t| t.data_type != data_type::INT8), "shared weight must stay float");
        assert!(g.node.iter().filter(|n| n.op_type == "Conv").all(|n| n.input[1] == w));
    }

    #[test]
    fn activation_params_cover_zero_and_the_range() {
        assert_eq!(activation_params((0.0, 6.0)), (6.0 / 255.0, 0));
        let (s, z) = activation_params((-1.0, 3.0));
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64); // -(-1)/s = 63.75
        assert_eq!(activation_params((2.0, 2.0 - 0.0)).1, 0); // lower end clamped to 0
        assert_eq!(activation_params((0.0, 0.0)), (1.0, 0));
    }

    #[test]
    fn qdq_wraps_every_point_and_stores_int8_weights() {
        let m = conv_relu_add();
        let pts = calibration_points(&m, &[]);
        let mut ranges: Ranges = pts.iter().map(|p| (p.clone(), (-1.0, 4.0))).collect();
        ranges.insert("x".into(), (-1.0, 1.0)); // a graph input is quantised too when asked
        let pts: Vec<&String> = ranges.keys().collect();
        let q = quantize_qdq(&m, &ranges);
        let g = q.graph.as_ref().unwrap();
        let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
        assert_eq!(count("QuantizeLinear"), pts.len());
        // activations + 2 weights + 1 bias
        assert_eq!(count("DequantizeLinear"), pts.len() + 3);
        // every Conv reads only dequantised values
        for n in g.node.iter().filter(|n| n.op_type == "Conv") {
            assert!(n.input.iter().all(|x| x.ends_with("_dq")), "{:?}", n.input);
        }
        // the topological order holds: each input is produced earlier or is an initializer/input
        let mut known: BTreeSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
        known.insert("x".into());
        for n in &g.node {
            for i in &n.input {
                assert!(known.contains(i), "{i} used before it exists");
            }
            known.extend(n.output.iter().cloned());
        }
        let w = g.initializer.iter().find(|t| t.data_type == data_type::INT8 && t.dims == vec![3, 2, 1, 1]).unwrap();
        // channel 0: [1, -2] → scale 2/127 → [64, -127]; channel 2 all zero → scale 1 → 0
        assert_eq!(w.raw_data.iter().map(|&b| b as i8).collect::<Vec<_>>(), vec![64, -127, 127, 64, 0, 0]);
        // the graph output is still the float pool
        assert_eq!(g.output[0].name, m.graph.as_ref().unwrap().output[0].name);
        // no float weight is left behind
        assert!(g.initializer.iter().all(|t| t.data_type != data_type::FLOAT || t.dims.len() <= 1));
    }
}
