//! The trainable tail: the part of a built ONNX graph between a cut value and the logits,
//! run in burn with its convolution and linear weights as parameters.
//!
//! The tail is read from the very graph the model file holds, so the tuned weights go back into
//! that graph by initializer name and the exported model computes what training evaluated.
//! BatchNorm either arrives folded into the convolutions (running statistics: the tail trains
//! the folded weights and biases) or as `BatchNormalization` nodes, which train as PyTorch's
//! `model.train()` does: each batch is normalised by its own statistics, the running ones
//! follow them (momentum 0.1) and answer in evaluation.

use crate::kernels::{clip, depthwise_conv2d, pointwise_conv2d, Geometry};
use crate::TuneError;
use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{hard_sigmoid, relu, sigmoid};
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use retrain_onnx::proto::{AttributeProto, GraphProto, NodeProto};
use retrain_onnx::ModelProto;
use std::collections::{BTreeMap, BTreeSet};

/// The tail's parameters, flattened: `head` (the new classifier) and `body` (the unfrozen
/// blocks) are separate so that each gets its own learning rate.
#[derive(Module, Debug)]
pub struct TailParams {
    pub head: Vec<Param<Tensor<1>>>,
    pub body: Vec<Param<Tensor<1>>>,
    /// BatchNorm running means and variances: state, not trained by the optimisers.
    pub stats: Vec<Param<Tensor<1>>>,
}

/// One trainable initializer of the graph.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub head: bool,
    /// A BatchNorm running statistic (updated from batches, not by gradients).
    pub stat: bool,
}

/// The momentum of BatchNorm's running statistics, PyTorch's default.
pub const BN_MOMENTUM: f32 = 0.1;

/// One BatchNorm's statistics over a training batch: (mean slot, variance slot) in
/// [`TailParams::stats`], the batch mean and the unbiased batch variance.
pub struct BatchStat {
    slots: (usize, usize),
    mean: Vec<f32>,
    var: Vec<f32>,
}

#[derive(Clone, Copy, Debug)]
enum Src {
    Head(usize),
    Body(usize),
    Const(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Conv { w: Src, b: Option<Src>, opts: ConvOptions<2> },
    Gemm { b: Src, c: Option<Src>, trans_b: bool },
    BatchNorm { scale: Src, bias: Src, mean: usize, var: usize, eps: f32 },
    Clip(f32, f32),
    Relu,
    Sigmoid,
    HardSigmoid(f32, f32),
    HardSwish,
    Add,
    Mul,
    GlobalAveragePool,
    MaxPool(MaxPoolOptions<2>),
    AvgPool(AvgPoolOptions<2>),
    Flatten,
    Concat(usize),
    Identity,
}

#[derive(Clone, Debug)]
struct Step {
    op: Op,
    /// Runtime (non-initializer) inputs, in the node's order.
    inputs: Vec<String>,
    /// Which of the node's inputs are constants, by position, for Add/Mul with an initializer.
    const_input: Option<(usize, Src)>,
    output: String,
}

/// A compiled tail: the steps from `input` to `output` and its parameters' specs.
#[derive(Clone, Debug)]
pub struct Tail {
    input: String,
    output: String,
    steps: Vec<Step>,
    pub params: Vec<ParamSpec>,
    head_index: Vec<usize>,
    body_index: Vec<usize>,
    stat_index: Vec<usize>,
    consts: Vec<(Vec<usize>, Vec<f32>)>,
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn ints(n: &NodeProto, name: &str, default: &[i64]) -> Vec<usize> {
    attr(n, name).map(|a| a.ints.clone()).unwrap_or_else(|| default.to_vec()).into_iter().map(|v| v as usize).collect()
}

fn int(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map(|a| a.i).unwrap_or(default)
}

fn float(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).map(|a| a.f).unwrap_or(default)
}

fn pairs(pads: &[usize]) -> [(usize, usize); 2] {
    match pads {
        [t, l, b, r] => [(*t, *b), (*l, *r)],
        _ => [(0, 0); 2],
    }
}

impl Tail {
    /// The nodes of `model` that lie between `input` and `output`. Convolution and Gemm weights
    /// and biases there become parameters; those of the node producing `output` (the new
    /// classifier) form the head group.
    pub fn from_model(model: &ModelProto, input: &str, output: &str) -> Result<Self, TuneError> {
        let graph = model.graph.as_ref().ok_or_else(|| TuneError::Graph("the model holds no graph".into()))?;
        let inits: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        // Nodes downstream of the cut …
        let mut reach: BTreeSet<&str> = BTreeSet::from([input]);
        let mut downstream = vec![false; graph.node.len()];
        for (i, n) in graph.node.iter().enumerate() {
            if n.input.iter().any(|x| reach.contains(x.as_str())) {
                downstream[i] = true;
                reach.extend(n.output.iter().map(String::as_str));
            }
        }
        // … that the output needs.
        let mut needed: BTreeSet<&str> = BTreeSet::from([output]);
        let mut keep = vec![false; graph.node.len()];
        for (i, n) in graph.node.iter().enumerate().rev() {
            if n.output.iter().any(|o| needed.contains(o.as_str())) {
                keep[i] = true;
                // The cut value comes from the trunk: what computes it is not the tail's.
                needed.extend(n.input.iter().map(String::as_str).filter(|x| *x != input));
            }
        }
        if !reach.contains(output) {
            return Err(TuneError::Graph(format!("`{output}` does not depend on `{input}`")));
        }
        // The classifier: the last Gemm (or Conv) before the output.
        let head_node =
            (0..graph.node.len()).rev().find(|&i| keep[i] && matches!(graph.node[i].op_type.as_str(), "Gemm" | "Conv"));
        let mut tail = Tail {
            input: input.into(),
            output: output.into(),
            steps: Vec::new(),
            params: Vec::new(),
            head_index: Vec::new(),
            body_index: Vec::new(),
            stat_index: Vec::new(),
            consts: Vec::new(),
        };
        for (i, n) in graph.node.iter().enumerate() {
            if !keep[i] {
                continue;
            }
            if !downstream[i] {
                return Err(TuneError::Graph(format!(
                    "node {} ({}) is needed by the tail but does not follow the cut",
                    n.name, n.op_type
                )));
            }
            let head = head_node == Some(i);
            let step = tail.compile(graph, n, &inits, head)?;
            tail.steps.push(step);
        }
        Ok(tail)
    }

    fn float_shape(graph: &GraphProto, name: &str) -> Result<Vec<usize>, TuneError> {
        retrain_onnx::initializer_f32(graph, name)
            .map(|(shape, _)| shape)
            .ok_or_else(|| TuneError::Graph(format!("initializer `{name}` is not float")))
    }

    fn param(&mut self, graph: &GraphProto, name: &str, head: bool) -> Result<Src, TuneError> {
        let shape = Self::float_shape(graph, name)?;
        let idx = self.params.len();
        self.params.push(ParamSpec { name: name.into(), shape, head, stat: false });
        Ok(if head {
            self.head_index.push(idx);
            Src::Head(self.head_index.len() - 1)
        } else {
            self.body_index.push(idx);
            Src::Body(self.body_index.len() - 1)
        })
    }

    fn stat(&mut self, graph: &GraphProto, name: &str) -> Result<usize, TuneError> {
        let shape = Self::float_shape(graph, name)?;
        self.stat_index.push(self.params.len());
        self.params.push(ParamSpec { name: name.into(), shape, head: false, stat: true });
        Ok(self.stat_index.len() - 1)
    }

    fn constant(&mut self, graph: &GraphProto, name: &str) -> Result<Src, TuneError> {
        let c = retrain_onnx::initializer_f32(graph, name)
            .ok_or_else(|| TuneError::Graph(format!("initializer `{name}` is not float")))?;
        self.consts.push(c);
        Ok(Src::Const(self.consts.len() - 1))
    }

    fn scalar(graph: &GraphProto, name: Option<&String>, default: f32) -> f32 {
        name.filter(|n| !n.is_empty())
            .and_then(|n| retrain_onnx::initializer_f32(graph, n))
            .and_then(|(_, v)| v.first().copied())
            .unwrap_or(default)
    }

    fn compile(
        &mut self,
        graph: &GraphProto,
        n: &NodeProto,
        inits: &BTreeSet<&str>,
        head: bool,
    ) -> Result<Step, TuneError> {
        let runtime: Vec<String> =
            n.input.iter().filter(|x| !x.is_empty() && !inits.contains(x.as_str())).cloned().collect();
        let output = n.output.first().cloned().unwrap_or_default();
        let mut const_input = None;
        let op = match n.op_type.as_str() {
            "Conv" => {
                let w = self.param(graph, &n.input[1], head)?;
                let b = match n.input.get(2).filter(|b| !b.is_empty()) {
                    Some(b) => Some(self.param(graph, b, head)?),
                    None => None,
                };
                let s = ints(n, "strides", &[1, 1]);
                let d = ints(n, "dilations", &[1, 1]);
                let p = pairs(&ints(n, "pads", &[0, 0, 0, 0]));
                let opts = ConvOptions::new_with_padding([s[0], s[1]], p, [d[0], d[1]], int(n, "group", 1) as usize);
                Op::Conv { w, b, opts }
            }
            "Gemm" => {
                if int(n, "transA", 0) != 0 || float(n, "alpha", 1.0) != 1.0 || float(n, "beta", 1.0) != 1.0 {
                    return Err(TuneError::Unsupported(format!("{} (Gemm with transA/alpha/beta)", n.name)));
                }
                let b = self.param(graph, &n.input[1], head)?;
                let c = match n.input.get(2).filter(|c| !c.is_empty()) {
                    Some(c) => Some(self.param(graph, c, head)?),
                    None => None,
                };
                Op::Gemm { b, c, trans_b: int(n, "transB", 0) != 0 }
            }
            "BatchNormalization" => {
                if n.input.len() != 5 || n.output.len() != 1 || int(n, "training_mode", 0) != 0 {
                    return Err(TuneError::Unsupported(format!("{} (BatchNormalization form)", n.name)));
                }
                Op::BatchNorm {
                    scale: self.param(graph, &n.input[1], head)?,
                    bias: self.param(graph, &n.input[2], head)?,
                    mean: self.stat(graph, &n.input[3])?,
                    var: self.stat(graph, &n.input[4])?,
                    eps: float(n, "epsilon", 1e-5),
                }
            }
            "Clip" => Op::Clip(
                Self::scalar(graph, n.input.get(1), f32::NEG_INFINITY),
                Self::scalar(graph, n.input.get(2), f32::INFINITY),
            ),
            "Relu" => Op::Relu,
            "Sigmoid" => Op::Sigmoid,
            "HardSigmoid" => Op::HardSigmoid(float(n, "alpha", 0.2), float(n, "beta", 0.5)),
            "HardSwish" => Op::HardSwish,
            "Add" | "Mul" => {
                if let Some(pos) = n.input.iter().position(|x| inits.contains(x.as_str())) {
                    const_input = Some((pos, self.constant(graph, &n.input[pos])?));
                }
                if n.op_type == "Add" {
                    Op::Add
                } else {
                    Op::Mul
                }
            }
            "GlobalAveragePool" => Op::GlobalAveragePool,
            "MaxPool" | "AveragePool" => {
                let k = ints(n, "kernel_shape", &[]);
                let s = ints(n, "strides", &[1, 1]);
                let p = pairs(&ints(n, "pads", &[0, 0, 0, 0]));
                if k.len() != 2 || int(n, "ceil_mode", 0) != 0 {
                    return Err(TuneError::Unsupported(format!("{} ({} options)", n.name, n.op_type)));
                }
                if n.op_type == "MaxPool" {
                    Op::MaxPool(MaxPoolOptions::new([k[0], k[1]]).with_stride([s[0], s[1]]).with_padding_pairs(p))
                } else {
                    Op::AvgPool(
                        AvgPoolOptions::new([k[0], k[1]])
                            .with_stride([s[0], s[1]])
                            .with_padding_pairs(p)
                            .with_count_include_pad(int(n, "count_include_pad", 0) != 0),
                    )
                }
            }
            "Flatten" if int(n, "axis", 1) == 1 => Op::Flatten,
            "Concat" if int(n, "axis", 0) == 1 => Op::Concat(1),
            "Identity" => Op::Identity,
            other => return Err(TuneError::Unsupported(format!("{} ({other})", n.name))),
        };
        Ok(Step { op, inputs: runtime, const_input, output })
    }

    pub fn input_name(&self) -> &str {
        &self.input
    }

    /// The graph's current values of the parameters, as burn parameters with stable ids
    /// (their order in the tail), so optimiser state saved by id loads back onto them.
    pub fn init_params(&self, graph: &GraphProto, device: &Device) -> Result<TailParams, TuneError> {
        let values = self
            .params
            .iter()
            .map(|p| {
                retrain_onnx::initializer_f32(graph, &p.name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| TuneError::Graph(format!("initializer `{}` is missing", p.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.params_from_values(&values, device))
    }

    /// Parameters from flat values, one per [`Tail::params`] entry.
    pub fn params_from_values(&self, values: &[Vec<f32>], device: &Device) -> TailParams {
        let make = |idx: &[usize]| {
            idx.iter()
                .map(|&i| {
                    let t = Tensor::<1>::from_data(TensorData::new(values[i].clone(), [values[i].len()]), device);
                    Param::initialized(ParamId::from(i as u64), t).set_require_grad(!self.params[i].stat)
                })
                .collect()
        };
        TailParams { head: make(&self.head_index), body: make(&self.body_index), stats: make(&self.stat_index) }
    }

    /// Flat values of the parameters, in [`Tail::params`] order.
    pub fn values(&self, params: &TailParams) -> Vec<Vec<f32>> {
        let mut out = vec![Vec::new(); self.params.len()];
        let groups =
            [(&params.head, &self.head_index), (&params.body, &self.body_index), (&params.stats, &self.stat_index)];
        for (p, &i) in groups.into_iter().flat_map(|(p, idx)| p.iter().zip(idx)) {
            out[i] = p.val().into_data().try_to_vec::<f32>().unwrap_or_default();
        }
        out
    }

    /// Moves the running statistics towards a training batch's by `momentum`, as BatchNorm does
    /// after each training forward pass.
    pub fn update_stats(&self, params: &mut TailParams, batch: Vec<BatchStat>, momentum: f32) {
        for b in batch {
            for (slot, new) in [(b.slots.0, b.mean), (b.slots.1, b.var)] {
                let p = &mut params.stats[slot];
                let device = p.val().device();
                let mut v = p.val().into_data().try_to_vec::<f32>().unwrap_or_default();
                v.iter_mut().zip(&new).for_each(|(r, x)| *r = (1.0 - momentum) * *r + momentum * x);
                let t = Tensor::<1>::from_data(TensorData::new(v, [new.len()]), &device);
                *p = Param::initialized(p.id, t).set_require_grad(false);
            }
        }
    }

    /// Writes the parameters into the graph's initializers of the same names.
    pub fn write_into(&self, params: &TailParams, graph: &mut GraphProto) -> Result<(), TuneError> {
        self.write_values(&self.values(params), graph)
    }

    /// Writes flat values (in [`Tail::params`] order) into the graph's initializers.
    pub fn write_values(&self, values: &[Vec<f32>], graph: &mut GraphProto) -> Result<(), TuneError> {
        for (spec, v) in self.params.iter().zip(values) {
            if !retrain_onnx::set_initializer_f32(graph, &spec.name, v) {
                return Err(TuneError::Graph(format!("cannot write initializer `{}`", spec.name)));
            }
        }
        Ok(())
    }

    /// Logits `[N, classes]` for the cut activations `x` of `shape` (`[N, C, H, W]`, or `[N, D]`
    /// when the cut is between fully connected layers).
    /// `dropout` = (probability, key): in training, the new head's input is dropped at that
    /// rate with a mask drawn from the key. With `batch_stats` (training), BatchNorm uses the
    /// batch's own statistics and records them there for [`Tail::update_stats`].
    pub fn forward(
        &self,
        params: &TailParams,
        x: Vec<f32>,
        shape: &[usize],
        device: &Device,
        dropout: Option<(f32, u64)>,
        mut batch_stats: Option<&mut Vec<BatchStat>>,
    ) -> Result<Tensor<2>, TuneError> {
        let x = match *shape {
            [n, c, h, w] => V::R4(Tensor::from_data(TensorData::new(x, [n, c, h, w]), device)),
            [n, d] => V::R2(Tensor::from_data(TensorData::new(x, [n, d]), device)),
            _ => return Err(TuneError::Graph(format!("cut activations of shape {shape:?}"))),
        };
        let device = device.clone();
        let mut vals: BTreeMap<&str, V> = BTreeMap::new();
        vals.insert(&self.input, x);
        let get_param = |s: Src, shape: &[usize]| -> V {
            let t = match s {
                Src::Head(i) => params.head[i].val(),
                Src::Body(i) => params.body[i].val(),
                Src::Const(i) => {
                    let (_, v) = &self.consts[i];
                    Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &device)
                }
            };
            V::from_flat(t, shape)
        };
        let shape_of = |s: Src| -> Vec<usize> {
            match s {
                Src::Head(i) => self.params[self.head_index[i]].shape.clone(),
                Src::Body(i) => self.params[self.body_index[i]].shape.clone(),
                Src::Const(i) => self.consts[i].0.clone(),
            }
        };
        for step in &self.steps {
            let arg = |k: usize| -> Result<V, TuneError> {
                let name =
                    step.inputs.get(k).ok_or_else(|| TuneError::Graph(format!("{} lacks an input", step.output)))?;
                vals.get(name.as_str()).cloned().ok_or_else(|| TuneError::Graph(format!("value `{name}` not computed")))
            };
            let y = match &step.op {
                Op::Conv { w, b, opts } => {
                    let w = get_param(*w, &shape_of(*w)).r4()?;
                    let b = match b {
                        Some(b) => Some(get_param(*b, &shape_of(*b)).r1()?),
                        None => None,
                    };
                    let x = arg(0)?.r4()?;
                    let [o, per_group, kh, kw] = w.dims();
                    let channels = x.dims()[1];
                    let bias = |b: Option<Tensor<1>>| b.unwrap_or_else(|| Tensor::zeros([o], &device));
                    if opts.groups == channels && o == channels && per_group == 1 && opts.dilation == [1, 1] {
                        // burn's grouped-convolution backward runs group by group: see depthwise.rs.
                        let [(pt, pb), (pl, pr)] = opts.padding;
                        let geometry = Geometry { stride: opts.stride, pad: [pt, pl, pb, pr] };
                        V::R4(depthwise_conv2d(x, w, bias(b), geometry))
                    } else if [kh, kw] == [1, 1]
                        && opts.groups == 1
                        && opts.stride == [1, 1]
                        && opts.padding == [(0, 0), (0, 0)]
                    {
                        // burn's 1×1 backward goes through im2col and a transposed convolution.
                        V::R4(pointwise_conv2d(x, w, bias(b)))
                    } else {
                        V::R4(conv2d(x, w, b, opts.clone()))
                    }
                }
                Op::Gemm { b, c, trans_b } => {
                    let w = get_param(*b, &shape_of(*b)).r2()?;
                    let w = if *trans_b { w.transpose() } else { w };
                    let mut x = arg(0)?.r2()?;
                    if let (Some((p, key)), Src::Head(_)) = (dropout, b) {
                        let [n, d] = x.dims();
                        x = x * Tensor::<2>::from_data(TensorData::new(dropout_mask(p, key, n * d), [n, d]), &device);
                    }
                    let mut y = x.matmul(w);
                    if let Some(c) = c {
                        y = y + get_param(*c, &shape_of(*c)).r1()?.unsqueeze::<2>();
                    }
                    V::R2(y)
                }
                Op::BatchNorm { scale, bias, mean, var, eps } => {
                    let x = arg(0)?.r4()?;
                    let [n, c, h, w] = x.dims();
                    let per_channel = |t: Tensor<1>| t.reshape([1, c, 1, 1]);
                    let scale = per_channel(get_param(*scale, &[c]).r1()?);
                    let bias = per_channel(get_param(*bias, &[c]).r1()?);
                    let (centred, var_t) = match batch_stats.as_deref_mut() {
                        Some(record) => {
                            let mu = x.clone().mean_dim(0).mean_dim(2).mean_dim(3);
                            let centred = x - mu.clone();
                            let var_t = centred.clone().powi_scalar(2).mean_dim(0).mean_dim(2).mean_dim(3);
                            let count = (n * h * w) as f32;
                            let flat = |t: Tensor<4>| t.detach().into_data().try_to_vec::<f32>().unwrap_or_default();
                            let unbiased = count / (count - 1.0).max(1.0);
                            let batch_var = flat(var_t.clone()).into_iter().map(|v| v * unbiased).collect();
                            record.push(BatchStat { slots: (*mean, *var), mean: flat(mu), var: batch_var });
                            (centred, var_t)
                        }
                        None => (x - per_channel(params.stats[*mean].val()), per_channel(params.stats[*var].val())),
                    };
                    V::R4(centred / (var_t + *eps).sqrt() * scale + bias)
                }
                Op::Clip(lo, hi) => arg(0)?.map(|t| clip(t, *lo, *hi), |t| clip(t, *lo, *hi)),
                Op::Relu => arg(0)?.map(relu, relu),
                Op::Sigmoid => arg(0)?.map(sigmoid, sigmoid),
                Op::HardSigmoid(a, b) => {
                    let (a, b) = (*a as f64, *b as f64);
                    arg(0)?.map(|t| hard_sigmoid(t, a, b), |t| hard_sigmoid(t, a, b))
                }
                Op::HardSwish => arg(0)?.map(
                    |t| t.clone() * hard_sigmoid(t, 1.0 / 6.0, 0.5),
                    |t| t.clone() * hard_sigmoid(t, 1.0 / 6.0, 0.5),
                ),
                Op::Add | Op::Mul => {
                    let (a, b) = match step.const_input {
                        Some((pos, c)) => {
                            let c = get_param(c, &shape_of(c));
                            if pos == 0 {
                                (c, arg(0)?)
                            } else {
                                (arg(0)?, c)
                            }
                        }
                        None => (arg(0)?, arg(1)?),
                    };
                    V::binary(a, b, matches!(step.op, Op::Add))?
                }
                Op::GlobalAveragePool => {
                    let x = arg(0)?.r4()?;
                    V::R4(x.mean_dim(3).mean_dim(2))
                }
                Op::MaxPool(o) => V::R4(max_pool2d(arg(0)?.r4()?, o.clone())),
                Op::AvgPool(o) => V::R4(avg_pool2d(arg(0)?.r4()?, o.clone())),
                Op::Flatten => match arg(0)? {
                    V::R4(t) => {
                        let [n, c, h, w] = t.dims();
                        V::R2(t.reshape([n, c * h * w]))
                    }
                    other => other,
                },
                Op::Concat(axis) => {
                    let xs = (0..step.inputs.len()).map(|k| arg(k)?.r4()).collect::<Result<Vec<_>, _>>()?;
                    V::R4(Tensor::cat(xs, *axis))
                }
                Op::Identity => arg(0)?,
            };
            vals.insert(&step.output, y);
        }
        vals.remove(self.output.as_str())
            .ok_or_else(|| TuneError::Graph(format!("`{}` not computed", self.output)))?
            .r2()
    }
}

/// A value flowing through the tail: burn tensors carry their rank in the type.
#[derive(Clone, Debug)]
enum V {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R4(Tensor<4>),
}

impl V {
    fn from_flat(t: Tensor<1>, shape: &[usize]) -> V {
        match shape.len() {
            0 | 1 => V::R1(t),
            2 => V::R2(t.reshape([shape[0], shape[1]])),
            _ => {
                let mut s = [1usize; 4];
                let off = 4usize.saturating_sub(shape.len());
                for (i, &d) in shape.iter().enumerate().take(4) {
                    s[off + i] = d;
                }
                V::R4(t.reshape(s))
            }
        }
    }
    fn r1(self) -> Result<Tensor<1>, TuneError> {
        match self {
            V::R1(t) => Ok(t),
            _ => Err(TuneError::Graph("expected a vector".into())),
        }
    }
    fn r2(self) -> Result<Tensor<2>, TuneError> {
        match self {
            V::R2(t) => Ok(t),
            V::R4(t) if t.dims()[2] == 1 && t.dims()[3] == 1 => {
                let [n, c, _, _] = t.dims();
                Ok(t.reshape([n, c]))
            }
            _ => Err(TuneError::Graph("expected a matrix".into())),
        }
    }
    fn r4(self) -> Result<Tensor<4>, TuneError> {
        match self {
            V::R4(t) => Ok(t),
            _ => Err(TuneError::Graph("expected an NCHW tensor".into())),
        }
    }
    fn map(self, f4: impl FnOnce(Tensor<4>) -> Tensor<4>, f2: impl FnOnce(Tensor<2>) -> Tensor<2>) -> V {
        match self {
            V::R4(t) => V::R4(f4(t)),
            V::R2(t) => V::R2(f2(t)),
            V::R1(t) => V::R1(f2(t.unsqueeze::<2>()).flatten(0, 1)),
        }
    }
    fn binary(a: V, b: V, add: bool) -> Result<V, TuneError> {
        let op4 = |x: Tensor<4>, y: Tensor<4>| if add { x + y } else { x * y };
        let op2 = |x: Tensor<2>, y: Tensor<2>| if add { x + y } else { x * y };
        Ok(match (a, b) {
            (V::R4(x), V::R4(y)) => V::R4(op4(x, y)),
            (V::R2(x), V::R2(y)) => V::R2(op2(x, y)),
            (V::R2(x), V::R1(y)) => V::R2(op2(x, y.unsqueeze::<2>())),
            (V::R1(x), V::R2(y)) => V::R2(op2(x.unsqueeze::<2>(), y)),
            (V::R4(x), V::R1(y)) => {
                let c = y.dims()[0];
                V::R4(op4(x, y.reshape([1, 1, 1, c])))
            }
            (V::R1(x), V::R4(y)) => {
                let c = x.dims()[0];
                V::R4(op4(x.reshape([1, 1, 1, c]), y))
            }
            _ => return Err(TuneError::Graph("unsupported operand ranks".into())),
        })
    }
}

/// Inverted dropout: each value kept with probability 1 - `p` and scaled by 1 / (1 - `p`);
/// the draws come from the generator keyed by `key`, so a resumed run draws the same masks.
pub(crate) fn dropout_mask(p: f32, key: u64, len: usize) -> Vec<f32> {
    let keep = 1.0 / (1.0 - p);
    let mut rng = retrain_pixels::Rng::from_state(key);
    (0..len).map(|_| if ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) < p { 0.0 } else { keep }).collect()
}
