//! The traced ops of one eval-mode forward pass as an ONNX graph: each op becomes one node
//! (or a few, for ops ONNX has no single node for), the model's parameters and buffers
//! initializers under their torchvision names, every edge a `value_info` with its shape and
//! a symbolic batch dimension `N`.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail, ensure};
use gpu_nn::nn::HostState;
use gpu_nn::trace::{Node, Op};
use gpu_nn::{Tensor, TensorId, Unary};

use super::proto::{
    AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto, attribute_proto,
    tensor_proto, tensor_value_info,
};

/// Images per traced batch: not 1, so that the batch dimension is told apart from the
/// sizes of 1 a model has elsewhere.
pub(super) const TRACE_BATCH: usize = 2;

/// Name of the symbolic batch dimension.
pub(super) const BATCH_DIM: &str = "N";

/// Builds the graph from the nodes of a trace.
pub(super) struct GraphBuilder<'a> {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    value_info: Vec<ValueInfoProto>,
    /// ONNX value of each traced tensor.
    values: HashMap<TensorId, String>,
    /// The traced outputs, to find detached copies of them by storage.
    produced: Vec<(Tensor, String)>,
    /// The model's parameters and buffers by name.
    params: Vec<(String, Tensor)>,
    used_params: HashSet<String>,
    weights: &'a HostState,
    input: (Tensor, String),
    taken: HashSet<String>,
}

impl<'a> GraphBuilder<'a> {
    /// `params`: the model's named tensors; `weights`: their values on the host;
    /// `input`: the traced input and the name it gets.
    pub(super) fn new(
        params: Vec<(String, Tensor)>,
        weights: &'a HostState,
        input: (Tensor, String),
    ) -> Self {
        let mut taken: HashSet<String> = params.iter().map(|(n, _)| n.clone()).collect();
        taken.insert(input.1.clone());
        Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            value_info: Vec::new(),
            values: HashMap::new(),
            produced: Vec::new(),
            params,
            used_params: HashSet::new(),
            weights,
            input,
            taken,
        }
    }

    /// Converts the traced nodes `output` depends on and names its value `output_name`.
    pub(super) fn build(
        mut self,
        trace: &[Node],
        output: &Tensor,
        output_name: &str,
        graph_name: &str,
    ) -> Result<GraphProto> {
        for n in needed(trace, output) {
            self.node(n)
                .with_context(|| format!("exporting {} ({:?})", scope_or_top(&n.scope), n.op))?;
        }
        let out = self.value(output)?;
        ensure!(
            self.produced.iter().any(|(_, n)| *n == out),
            "the model's output is its input or a parameter: nothing to export"
        );
        self.rename(&out, output_name);
        let out_info = tensor_value_info(output_name, output.shape(), BATCH_DIM);
        self.value_info
            .retain(|v| v.name.as_deref() != Some(output_name));
        let input_info = tensor_value_info(&self.input.1, self.input.0.shape(), BATCH_DIM);
        Ok(GraphProto {
            name: Some(graph_name.to_string()),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![input_info],
            output: vec![out_info],
            value_info: self.value_info,
            ..Default::default()
        })
    }

    /// The ONNX value of a tensor an op reads.
    fn value(&mut self, t: &Tensor) -> Result<String> {
        if let Some(v) = self.values.get(&t.id()) {
            return Ok(v.clone());
        }
        let same = |a: &Tensor| a.same_storage(t) && a.shape() == t.shape();
        if same(&self.input.0) {
            return Ok(self.input.1.clone());
        }
        if let Some((_, v)) = self.produced.iter().find(|(p, _)| same(p)) {
            return Ok(v.clone());
        }
        if let Some((name, _)) = self.params.iter().find(|(_, p)| same(p)) {
            let name = name.clone();
            if self.used_params.insert(name.clone()) {
                let w = self
                    .weights
                    .get(&name)
                    .with_context(|| format!("no value for the model's {name}"))?;
                self.initializers.push(tensor_f32(&name, &w.shape, &w.data));
            }
            return Ok(name);
        }
        match t.op_name() {
            Some(op) => bail!("the ONNX export does not cover `{op}`"),
            None => bail!(
                "a tensor of shape {:?} that is neither the input, a parameter nor the output \
                 of a traced op (a constant made inside the model?)",
                t.shape()
            ),
        }
    }

    /// A fresh value name from a layer path and a hint (`layer1.0.relu`). A layer's own op
    /// (the conv of `conv1`) takes the layer's name.
    fn fresh(&mut self, scope: &str, hint: &str) -> String {
        const LAYER_OPS: [&str; 7] = [
            "conv",
            "convtranspose",
            "gemm",
            "batchnormalization",
            "maxpool",
            "averagepool",
            "globalaveragepool",
        ];
        let base = if scope.is_empty() {
            hint.to_string()
        } else if LAYER_OPS.contains(&hint) && !self.taken.contains(scope) {
            scope.to_string()
        } else {
            format!("{scope}.{hint}")
        };
        let mut name = base.clone();
        let mut k = 1;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    /// An f32 constant as an initializer.
    fn const_f32(&mut self, scope: &str, hint: &str, shape: &[usize], data: &[f32]) -> String {
        let name = self.fresh(scope, hint);
        self.initializers.push(tensor_f32(&name, shape, data));
        name
    }

    /// An i64 vector constant (shapes, slice bounds) as an initializer.
    fn const_i64(&mut self, scope: &str, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(scope, hint);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: vec![data.len() as i64],
            data_type: Some(tensor_proto::DataType::Int64 as i32),
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Appends a node computing `out` (a traced tensor) from `inputs`.
    fn emit(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: Vec<String>,
        out: &Tensor,
        attrs: Vec<AttributeProto>,
    ) -> Result<()> {
        let name = self.fresh(scope, &op_type.to_lowercase());
        self.emit_named(op_type, inputs, &name, attrs);
        ensure!(
            out.shape().first() == Some(&TRACE_BATCH),
            "its output {:?} does not have the batch dimension first",
            out.shape()
        );
        self.value_info
            .push(tensor_value_info(&name, out.shape(), BATCH_DIM));
        self.values.insert(out.id(), name.clone());
        self.produced.push((out.clone(), name));
        Ok(())
    }

    /// Appends a node with an intermediate output `name` (no traced tensor of its own).
    fn emit_named(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        name: &str,
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            name: Some(name.to_string()),
            op_type: Some(op_type.to_string()),
            input: inputs,
            output: vec![name.to_string()],
            attribute: attrs,
            ..Default::default()
        });
    }

    fn node(&mut self, n: &Node) -> Result<()> {
        let s = n.scope.as_str();
        let mut ins = Vec::with_capacity(n.inputs.len());
        for t in &n.inputs {
            ins.push(self.value(t)?);
        }
        let out = &n.output;
        let in_shape = n
            .inputs
            .first()
            .map(|t| t.shape().to_vec())
            .unwrap_or_default();
        match n.op {
            Op::Conv2d(o) => {
                let w = n.inputs[1].shape();
                let mut attrs = window((w[2], w[3]), o.stride, o.padding);
                attrs.extend([
                    ints("dilations", &[o.dilation.0, o.dilation.1]),
                    int("group", o.groups as i64),
                ]);
                self.emit(s, "Conv", ins, out, attrs)
            }
            Op::ConvTranspose2d(o) => {
                let w = n.inputs[1].shape();
                let mut attrs = window((w[2], w[3]), o.stride, o.padding);
                attrs.extend([
                    ints("output_padding", &[o.output_padding.0, o.output_padding.1]),
                    ints("dilations", &[o.dilation.0, o.dilation.1]),
                    int("group", o.groups as i64),
                ]);
                self.emit(s, "ConvTranspose", ins, out, attrs)
            }
            Op::Linear => self.emit(s, "Gemm", ins, out, vec![int("transB", 1)]),
            Op::MatMul {
                trans_a: false,
                trans_b: false,
            } => self.emit(s, "MatMul", ins, out, vec![]),
            Op::MatMul { .. } => bail!("a matmul with transposed operands is not exported"),
            Op::BatchNorm { training: true, .. } => {
                bail!("batch norm in training mode (export runs the model in eval mode)")
            }
            Op::BatchNorm {
                eps,
                momentum,
                weight,
                bias,
                ..
            } => {
                // ONNX's order is x, scale, bias, mean, var; absent affine parts are 1 and 0.
                let c = in_shape
                    .get(1)
                    .copied()
                    .context("batch norm of a 1-D tensor")?;
                let mut rest = ins[3..].iter().cloned();
                let scale = match weight {
                    true => rest.next().context("batch norm weight")?,
                    false => self.const_f32(s, "ones", &[c], &vec![1.0; c]),
                };
                let shift = match bias {
                    true => rest.next().context("batch norm bias")?,
                    false => self.const_f32(s, "zeros", &[c], &vec![0.0; c]),
                };
                let inputs = vec![ins[0].clone(), scale, shift, ins[1].clone(), ins[2].clone()];
                // ONNX's momentum weighs the running value, PyTorch's the batch's.
                let attrs = vec![float("epsilon", eps), float("momentum", 1.0 - momentum)];
                self.emit(s, "BatchNormalization", inputs, out, attrs)
            }
            Op::MaxPool2d(o) => {
                let mut attrs = window(o.kernel, o.stride, o.padding);
                attrs.extend([
                    ints("dilations", &[o.dilation.0, o.dilation.1]),
                    int("ceil_mode", o.ceil_mode as i64),
                ]);
                self.emit(s, "MaxPool", ins, out, attrs)
            }
            Op::AvgPool2d(o) => {
                let mut attrs = window(o.kernel, o.stride, o.padding);
                attrs.extend([
                    int("ceil_mode", o.ceil_mode as i64),
                    int("count_include_pad", o.count_include_pad as i64),
                ]);
                self.emit(s, "AveragePool", ins, out, attrs)
            }
            Op::AdaptiveAvgPool2d((oh, ow)) => {
                let (h, w) = (in_shape[2], in_shape[3]);
                if (oh, ow) == (1, 1) {
                    self.emit(s, "GlobalAveragePool", ins, out, vec![])
                } else if (oh, ow) == (h, w) {
                    self.emit(s, "Identity", ins, out, vec![])
                } else if h % oh == 0 && w % ow == 0 {
                    // Windows that tile the input: a plain average pool.
                    let k = [h / oh, w / ow];
                    let attrs = vec![ints("kernel_shape", &k), ints("strides", &k)];
                    self.emit(s, "AveragePool", ins, out, attrs)
                } else {
                    bail!(
                        "adaptive average pooling from {h}x{w} to {oh}x{ow} (overlapping \
                         windows) has no ONNX op; export at an input size where it divides"
                    )
                }
            }
            Op::Dropout { .. } => bail!("dropout in training mode (export runs in eval mode)"),
            Op::Unary(f) => self.unary(s, f, ins, out),
            Op::Add => self.emit(s, "Add", ins, out, vec![]),
            Op::Sub => self.emit(s, "Sub", ins, out, vec![]),
            Op::Mul => self.emit(s, "Mul", ins, out, vec![]),
            Op::Axpby(alpha, beta) => {
                let a = self.const_f32(s, "alpha", &[], &[alpha]);
                let b = self.const_f32(s, "beta", &[], &[beta]);
                let (l, r) = (self.fresh(s, "axpby_a"), self.fresh(s, "axpby_b"));
                self.emit_named("Mul", vec![ins[0].clone(), a], &l, vec![]);
                self.emit_named("Mul", vec![ins[1].clone(), b], &r, vec![]);
                self.emit(s, "Add", vec![l, r], out, vec![])
            }
            Op::CatChannels => self.emit(s, "Concat", ins, out, vec![int("axis", 1)]),
            Op::NarrowChannels { start, len } => {
                let st = self.const_i64(s, "starts", &[start as i64]);
                let en = self.const_i64(s, "ends", &[(start + len) as i64]);
                let ax = self.const_i64(s, "axes", &[1]);
                self.emit(s, "Slice", vec![ins[0].clone(), st, en, ax], out, vec![])
            }
            Op::Reshape => {
                let o = out.shape();
                ensure!(
                    in_shape.first() == Some(&TRACE_BATCH) && o.first() == Some(&TRACE_BATCH),
                    "a reshape {in_shape:?} -> {o:?} that moves the batch dimension"
                );
                if o.len() == 2 && in_shape.len() > 2 {
                    self.emit(s, "Flatten", ins, out, vec![int("axis", 1)])
                } else {
                    let mut dims: Vec<i64> = o.iter().map(|&d| d as i64).collect();
                    dims[0] = -1;
                    let shape = self.const_i64(s, "shape", &dims);
                    self.emit(s, "Reshape", vec![ins[0].clone(), shape], out, vec![])
                }
            }
            Op::LogSoftmax => self.emit(s, "LogSoftmax", ins, out, vec![int("axis", 1)]),
            Op::Softmax => self.emit(s, "Softmax", ins, out, vec![int("axis", 1)]),
            Op::Other(name) => bail!("the ONNX export does not cover `{name}`"),
            _ => bail!("the ONNX export does not cover {:?}", n.op),
        }
    }

    fn unary(&mut self, s: &str, f: Unary, ins: Vec<String>, out: &Tensor) -> Result<()> {
        match f {
            Unary::Relu => self.emit(s, "Relu", ins, out, vec![]),
            Unary::LeakyRelu(a) => self.emit(s, "LeakyRelu", ins, out, vec![float("alpha", a)]),
            Unary::Sigmoid => self.emit(s, "Sigmoid", ins, out, vec![]),
            Unary::Tanh => self.emit(s, "Tanh", ins, out, vec![]),
            Unary::Exp => self.emit(s, "Exp", ins, out, vec![]),
            Unary::Square => {
                let x = ins[0].clone();
                self.emit(s, "Mul", vec![x.clone(), x], out, vec![])
            }
            Unary::Affine(scale, shift) => {
                let k = self.const_f32(s, "scale", &[], &[scale]);
                if shift == 0.0 {
                    return self.emit(s, "Mul", vec![ins[0].clone(), k], out, vec![]);
                }
                let b = self.const_f32(s, "shift", &[], &[shift]);
                let m = self.fresh(s, "scaled");
                self.emit_named("Mul", vec![ins[0].clone(), k], &m, vec![]);
                self.emit(s, "Add", vec![m, b], out, vec![])
            }
        }
    }

    /// Renames a produced value everywhere it appears.
    fn rename(&mut self, from: &str, to: &str) {
        for n in &mut self.nodes {
            for v in n.output.iter_mut().chain(n.input.iter_mut()) {
                if v == from {
                    *v = to.to_string();
                }
            }
        }
        for v in &mut self.value_info {
            if v.name.as_deref() == Some(from) {
                v.name = Some(to.to_string());
            }
        }
    }
}

/// The nodes `output` depends on, in order. Ops built from other ops (a transposed
/// convolution's internal reshape) trace those too; only the outer op is kept, since nothing
/// the output needs reads the inner ones' results.
fn needed<'n>(trace: &'n [Node], output: &Tensor) -> Vec<&'n Node> {
    let mut wanted: Vec<Tensor> = vec![output.clone()];
    let mut keep = vec![false; trace.len()];
    for (i, n) in trace.iter().enumerate().rev() {
        let o = &n.output;
        let hit = wanted
            .iter()
            .any(|t| t.id() == o.id() || (t.same_storage(o) && t.shape() == o.shape()));
        if hit {
            keep[i] = true;
            wanted.extend(n.inputs.iter().cloned());
        }
    }
    trace
        .iter()
        .zip(keep)
        .filter_map(|(n, k)| k.then_some(n))
        .collect()
}

fn scope_or_top(scope: &str) -> &str {
    if scope.is_empty() { "the model" } else { scope }
}

/// An f32 tensor (little-endian raw data).
fn tensor_f32(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(tensor_proto::DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A sliding window's attributes: kernel_shape, strides and pads (the same on both sides).
fn window(
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Vec<AttributeProto> {
    vec![
        ints("kernel_shape", &[kernel.0, kernel.1]),
        ints("strides", &[stride.0, stride.1]),
        ints("pads", &[padding.0, padding.1, padding.0, padding.1]),
    ]
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}
