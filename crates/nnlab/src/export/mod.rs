//! ONNX export, for Netron, onnxruntime and onnxruntime-web: a model's eval-mode forward pass
//! traced op by op ([`gpu_nn::trace`]) and written as an ONNX model (IR version 8, opset 17)
//! with its weights as initializers under their torchvision names, a symbolic batch
//! dimension, every edge's shape, and what a user of the file needs to know (class names,
//! input normalisation, model name) in `metadata_props`.
//!
//! The bytes are built in memory, so the browser can offer them as a download; native
//! callers write them atomically ([`write`]), as checkpoints are.

mod graph;
pub mod proto;

use anyhow::{Context, Result};
use gpu_nn::models::{Generator, LATENT};
use gpu_nn::nn::{Ctx, HostState, Module, named_tensors};
use gpu_nn::{Gpu, Tensor};
use prost::Message;

use crate::core::ModelSpec;
use graph::{GraphBuilder, TRACE_BATCH};
use proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};

/// ONNX IR version written (onnxruntime reads it from 1.12 on).
pub const IR_VERSION: i64 = 8;
/// Opset of the default domain the graph uses.
pub const OPSET: i64 = 17;

/// A model to export.
pub struct Exportable<'a> {
    /// The network, run in eval mode.
    pub net: &'a dyn Module,
    /// Its parameters and buffers on the host, by the names `net` gives them.
    pub weights: &'a HostState,
    /// One sample's shape (the batch dimension is added, symbolic).
    pub input: Vec<usize>,
    /// Name of the graph's input.
    pub input_name: &'a str,
    /// Name of the graph's output.
    pub output_name: &'a str,
    /// The model's name (the graph's name, and `metadata_props["model"]`).
    pub model: &'a str,
    /// Further `metadata_props`.
    pub metadata: Vec<(String, String)>,
}

/// Serialises `e` as an ONNX model. Errors name the layer and the op the exporter does not
/// cover.
pub fn onnx_bytes(gpu: &Gpu, e: &Exportable<'_>) -> Result<Vec<u8>> {
    let mut shape = vec![TRACE_BATCH];
    shape.extend(&e.input);
    let x = Tensor::zeros(gpu, &shape)?;
    let (y, nodes) = gpu_nn::trace::trace(|| e.net.forward(&x, &mut Ctx::eval()));
    let y = y.with_context(|| format!("{}: the forward pass failed", e.model))?;
    let graph = GraphBuilder::new(
        named_tensors(e.net),
        e.weights,
        (x.clone(), e.input_name.to_string()),
    )
    .build(&nodes, &y, e.output_name, e.model)
    .with_context(|| format!("cannot export {} as ONNX", e.model))?;
    let mut metadata = vec![("model".to_string(), e.model.to_string())];
    metadata.extend(e.metadata.iter().cloned());
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("nnlab".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        doc_string: Some(format!("{} exported by nnlab (eval mode)", e.model)),
        graph: Some(graph),
        metadata_props: metadata
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k),
                value: Some(v),
            })
            .collect(),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// A classifier as ONNX: input `input` [N, C, H, W] normalised with the spec's mean and
/// std, output `output` [N, classes] (logits; log-probabilities for mnist-cnn, whose
/// forward pass ends in log_softmax).
pub fn classifier_onnx(
    gpu: &Gpu,
    net: &dyn Module,
    weights: &HostState,
    spec: &ModelSpec,
) -> Result<Vec<u8>> {
    let json = |v: serde_json::Value| v.to_string();
    let output = if spec.name == "mnist-cnn" {
        "log-probabilities"
    } else {
        "logits"
    };
    onnx_bytes(
        gpu,
        &Exportable {
            net,
            weights,
            input: spec.input.to_vec(),
            input_name: "input",
            output_name: "output",
            model: &spec.name,
            metadata: vec![
                (
                    "class_names".into(),
                    json(serde_json::json!(spec.class_names)),
                ),
                ("input_mean".into(), f32_list(&spec.mean)),
                ("input_std".into(), f32_list(&spec.std)),
                (
                    "input_note".into(),
                    "pixels in [0, 1], then (x - mean) / std per channel".into(),
                ),
                ("output".into(), output.into()),
            ],
        },
    )
}

/// The DCGAN's generator as ONNX: input `z` [N, 100] standard normal noise, output
/// `images` [N, 1, 28, 28] in [-1, 1].
pub fn generator_onnx(
    gpu: &Gpu,
    g: &Generator,
    weights: &HostState,
    width: f32,
) -> Result<Vec<u8>> {
    onnx_bytes(
        gpu,
        &Exportable {
            net: g,
            weights,
            input: vec![LATENT],
            input_name: "z",
            output_name: "images",
            model: "dcgan-generator",
            metadata: vec![
                ("width".into(), width.to_string()),
                ("input_note".into(), "standard normal noise".into()),
                ("output".into(), "images in [-1, 1] (tanh)".into()),
            ],
        },
    )
}

/// A JSON list of f32s in their shortest form (`[0.1307]`, not the f64 widening's digits).
fn f32_list(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// Writes an exported model atomically (a temporary file, then a rename).
#[cfg(not(target_arch = "wasm32"))]
pub fn write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    crate::checkpoint::write_atomic(path, bytes)
}
