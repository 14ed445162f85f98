use crate::proto::{self, attribute_type, data_type};
use crate::{IR_VERSION, OPSET};

/// A graph input/output dimension: fixed, or named (dynamic, e.g. the batch).
#[derive(Clone, Debug)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// A node attribute.
#[derive(Clone, Debug)]
pub enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
    Float(&'static str, f32),
    Floats(&'static str, Vec<f32>),
    Str(&'static str, String),
}

impl Attr {
    fn into_proto(self) -> proto::AttributeProto {
        let mut a = proto::AttributeProto::default();
        match self {
            Attr::Int(n, v) => {
                a.name = n.into();
                a.i = v;
                a.r#type = attribute_type::INT;
            }
            Attr::Ints(n, v) => {
                a.name = n.into();
                a.ints = v;
                a.r#type = attribute_type::INTS;
            }
            Attr::Float(n, v) => {
                a.name = n.into();
                a.f = v;
                a.r#type = attribute_type::FLOAT;
            }
            Attr::Floats(n, v) => {
                a.name = n.into();
                a.floats = v;
                a.r#type = attribute_type::FLOATS;
            }
            Attr::Str(n, v) => {
                a.name = n.into();
                a.s = v.into_bytes();
                a.r#type = attribute_type::STRING;
            }
        }
        a
    }
}

/// Builds an ONNX graph node by node. Values are named by the builder (`prefix/op_N`) so
/// that graphs are reproducible byte for byte.
#[derive(Default)]
pub struct GraphBuilder {
    graph: proto::GraphProto,
    counter: usize,
    /// Prepended to every generated name, so a merged graph's names cannot collide with ours.
    prefix: String,
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> proto::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => proto::Dimension { dim_value: Some(*v), ..Default::default() },
            Dim::Named(p) => proto::Dimension { dim_param: Some((*p).to_string()), ..Default::default() },
        })
        .collect();
    proto::ValueInfoProto {
        name: name.into(),
        r#type: Some(proto::TypeProto {
            tensor_type: Some(proto::TypeProtoTensor { elem_type, shape: Some(proto::TensorShapeProto { dim }) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        let mut b = Self::default();
        b.graph.name = name.into();
        b
    }

    /// A builder whose generated names all start with `prefix`.
    pub fn with_prefix(name: &str, prefix: &str) -> Self {
        let mut b = Self::new(name);
        b.prefix = prefix.into();
        b
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{}{hint}_{}", self.prefix, self.counter)
    }

    /// Adds a single-output node whose output gets the given name.
    pub fn node_to(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, output: &str) {
        self.graph.node.push(proto::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: format!("{output}_node"),
            op_type: op.into(),
            attribute: attrs.into_iter().map(Attr::into_proto).collect(),
            ..Default::default()
        });
    }

    /// Appends another graph's nodes, initializers and value infos (its inputs and outputs
    /// are not carried over: the caller wires them). Values named in `rename` are renamed
    /// wherever the other graph uses or produces them (its input, names retrain reserves).
    pub fn append_graph(&mut self, other: proto::GraphProto, rename: &[(&str, &str)]) {
        let map = |n: &mut String| {
            if let Some((_, to)) = rename.iter().find(|(from, _)| *from == n.as_str()) {
                *n = to.to_string();
            }
        };
        let init: std::collections::HashSet<String> = other.initializer.iter().map(|t| t.name.clone()).collect();
        for mut n in other.node {
            n.input.iter_mut().for_each(map);
            n.output.iter_mut().for_each(map);
            self.graph.node.push(n);
        }
        for mut t in other.initializer {
            map(&mut t.name);
            self.graph.initializer.push(t);
        }
        self.graph.sparse_initializer.extend(other.sparse_initializer);
        for mut v in other.value_info.into_iter().filter(|v| !init.contains(&v.name)) {
            map(&mut v.name);
            self.graph.value_info.push(v);
        }
    }

    /// Finishes as a model with the given IR version and opset imports (those of a merged
    /// model, whose operators must keep their own opset's meaning).
    pub fn finish_with(
        self,
        metadata: &[(String, String)],
        ir_version: i64,
        opsets: Vec<proto::OperatorSetIdProto>,
        functions: Vec<Vec<u8>>,
    ) -> proto::ModelProto {
        let mut m = self.finish(metadata);
        m.ir_version = ir_version;
        m.opset_import = opsets;
        m.functions = functions;
        m
    }

    pub fn input_f32(&mut self, name: &str, dims: &[Dim]) -> String {
        self.input(name, data_type::FLOAT, dims)
    }

    pub fn input_u8(&mut self, name: &str, dims: &[Dim]) -> String {
        self.input(name, data_type::UINT8, dims)
    }

    pub fn input_i64(&mut self, name: &str, dims: &[Dim]) -> String {
        self.input(name, data_type::INT64, dims)
    }

    fn input(&mut self, name: &str, ty: i32, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, ty, dims));
        name.to_string()
    }

    /// Declares `value` as a graph output under `name` (an Identity renames it).
    pub fn output_f32(&mut self, value: &str, name: &str, dims: &[Dim]) {
        if value != name {
            self.graph.node.push(proto::NodeProto {
                input: vec![value.into()],
                output: vec![name.into()],
                name: format!("{}{name}_identity", self.prefix),
                op_type: "Identity".into(),
                ..Default::default()
            });
        }
        self.graph.output.push(value_info(name, data_type::FLOAT, dims));
    }

    /// Declares the uint8 value `name` (already produced under that name) as a graph output.
    pub fn output_u8(&mut self, name: &str, dims: &[Dim]) {
        self.graph.output.push(value_info(name, data_type::UINT8, dims));
    }

    /// Adds a float32 constant tensor, stored as raw little-endian bytes.
    pub fn constant_f32(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant_raw(hint, dims, data_type::FLOAT, raw)
    }

    fn constant_raw(&mut self, hint: &str, dims: &[usize], data_type: i32, raw_data: Vec<u8>) -> String {
        let name = self.fresh(hint);
        self.graph.initializer.push(proto::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.clone(),
            raw_data,
            ..Default::default()
        });
        name
    }

    pub fn constant_i64(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.graph.initializer.push(proto::TensorProto {
            dims: vec![data.len() as i64],
            data_type: data_type::INT64,
            name: name.clone(),
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Adds a single-output node and returns its output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.node_to(op, inputs, attrs, &out);
        out
    }

    /// Adds a half-precision constant (from `data`, rounded), stored as raw little-endian bytes.
    pub fn constant_f16(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let raw = data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        self.constant_raw(hint, dims, data_type::FLOAT16, raw)
    }

    /// Adds this builder's nodes, initializers and outputs to `model`'s graph (whose values
    /// it may read by name): a part added to a finished model.
    pub fn append_to(self, model: &mut proto::ModelProto) {
        let g = model.graph.get_or_insert_with(Default::default);
        g.node.extend(self.graph.node);
        g.initializer.extend(self.graph.initializer);
        g.output.extend(self.graph.output);
    }

    /// Number of nodes so far (for tests and diagnostics).
    pub fn node_count(&self) -> usize {
        self.graph.node.len()
    }

    /// Finishes the graph as a standalone model with the given metadata.
    pub fn finish(self, metadata: &[(String, String)]) -> proto::ModelProto {
        proto::ModelProto {
            ir_version: IR_VERSION,
            producer_name: "retrain".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            opset_import: vec![proto::OperatorSetIdProto { domain: String::new(), version: OPSET }],
            metadata_props: metadata
                .iter()
                .map(|(k, v)| proto::StringStringEntryProto { key: k.clone(), value: v.clone() })
                .collect(),
            ..Default::default()
        }
    }
}
