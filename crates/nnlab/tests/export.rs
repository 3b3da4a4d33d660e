//! ONNX export, checked on the decoded protobuf (onnxruntime's numbers are checked by
//! tests/python/check_onnx.py, which scripts/test runs): the graph of a model op by op, its
//! initializers under the model's names and values, shapes with a symbolic batch, the
//! metadata; and clear errors for what cannot be exported.

use gpu_nn::nn::{Ctx, Entry, Module, read_state_blocking};
use gpu_nn::{Gpu, Tensor};
use nnlab::core::ModelSpec;
use nnlab::export::proto::{ModelProto, tensor_shape_proto::dimension::Value};
use nnlab::export::{Exportable, classifier_onnx, onnx_bytes};
use nnlab::registry;
use prost::Message;

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe on CI)")
}

fn mnist_spec() -> ModelSpec {
    ModelSpec {
        name: "mnist-cnn".into(),
        input: [1, 28, 28],
        class_names: (0..10).map(|i| i.to_string()).collect(),
        mean: vec![0.1307],
        std: vec![0.3081],
        finetune: false,
        variant: Default::default(),
    }
}

fn dims(v: &nnlab::export::proto::ValueInfoProto) -> Vec<String> {
    use nnlab::export::proto::type_proto::Value as T;
    let Some(T::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        panic!("{v:?} is not a tensor");
    };
    let shape = t.shape.as_ref().expect("shape");
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(n)) => n.to_string(),
            Some(Value::DimParam(p)) => p.clone(),
            None => "?".into(),
        })
        .collect()
}

#[test]
fn mnist_cnn_exports_op_by_op_with_its_weights_shapes_and_metadata() {
    let gpu = gpu();
    let spec = mnist_spec();
    let net = registry::find("mnist-cnn")
        .and_then(|i| i.build(&gpu, spec.input, 10, 5))
        .expect("model");
    let weights = read_state_blocking(net.as_ref()).expect("weights");
    let bytes = classifier_onnx(&gpu, net.as_ref(), &weights, &spec).expect("export");
    let m = ModelProto::decode(bytes.as_slice()).expect("valid protobuf");
    assert_eq!(m.ir_version, Some(8));
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].version, Some(17));
    let g = m.graph.expect("graph");
    let ops: Vec<&str> = g.node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    // Eval mode: the dropouts are gone.
    assert_eq!(
        ops,
        [
            "Conv",
            "MaxPool",
            "Relu",
            "Conv",
            "MaxPool",
            "Relu",
            "Flatten",
            "Gemm",
            "Relu",
            "Gemm",
            "LogSoftmax"
        ]
    );
    // Initializers: exactly the parameters, under their names, with their values.
    let mut names: Vec<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    names.sort_unstable();
    let mut want: Vec<&str> = weights.keys().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(names, want);
    let w = &weights["conv2.weight"];
    let t = g
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some("conv2.weight"))
        .expect("conv2.weight");
    assert_eq!(t.dims, [20, 10, 5, 5]);
    let raw = t.raw_data.as_ref().expect("raw data");
    let vals: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(vals, w.data);
    // Input and output with a symbolic batch; every other edge typed for Netron.
    assert_eq!(g.input.len(), 1);
    assert_eq!(dims(&g.input[0]), ["N", "1", "28", "28"]);
    assert_eq!(dims(&g.output[0]), ["N", "10"]);
    assert_eq!(g.value_info.len(), g.node.len() - 1);
    let conv2 = g
        .value_info
        .iter()
        .find(|v| v.name.as_deref() == Some("conv2"))
        .expect("the conv2 edge, named by its layer");
    assert_eq!(dims(conv2), ["N", "20", "8", "8"]);
    let meta: std::collections::HashMap<_, _> = m
        .metadata_props
        .iter()
        .map(|p| {
            (
                p.key.clone().unwrap_or_default(),
                p.value.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(meta["model"], "mnist-cnn");
    assert_eq!(
        meta["class_names"],
        r#"["0","1","2","3","4","5","6","7","8","9"]"#
    );
    assert_eq!(meta["input_mean"], "[0.1307]");
    assert_eq!(meta["output"], "log-probabilities");
}

/// A module whose forward pass uses a reduction, which the exporter does not map.
struct SumsRows;

impl Module for SumsRows {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> gpu_nn::Result<Tensor> {
        ctx.scope("pool", |_| x.relu()?.sum_dim(1))
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(String, Entry<'_>)) {}
}

/// A module that returns its input.
struct Nothing;

impl Module for Nothing {
    fn forward(&self, x: &Tensor, _: &mut Ctx) -> gpu_nn::Result<Tensor> {
        Ok(x.clone())
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(String, Entry<'_>)) {}
}

#[test]
fn an_op_without_an_onnx_mapping_is_an_error_naming_it_and_its_layer() {
    let gpu = gpu();
    let weights = Default::default();
    let e = |net: &dyn Module| {
        let ex = Exportable {
            net,
            weights: &weights,
            input: vec![3, 4],
            input_name: "input",
            output_name: "output",
            model: "test",
            metadata: vec![],
        };
        format!("{:#}", onnx_bytes(&gpu, &ex).expect_err("cannot export"))
    };
    let sums = e(&SumsRows);
    assert!(sums.contains("sum_dim") && sums.contains("pool"), "{sums}");
    let nothing = e(&Nothing);
    assert!(nothing.contains("nothing to export"), "{nothing}");
}
