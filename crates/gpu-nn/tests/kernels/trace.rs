//! Op tracing (what exporters read): each op of a forward pass once, in order, with its
//! attributes, inputs, output and layer path; nothing recorded outside a trace.

use gpu_nn::init::SeedRng;
use gpu_nn::nn::{Activation, BatchNorm, Conv2d, Ctx, Flatten, Linear, Module, Sequential};
use gpu_nn::trace::{Op, is_tracing, trace};
use gpu_nn::{Conv2dOpts, Tensor};

use crate::common::gpu;

fn small_net() -> Sequential {
    let gpu = gpu();
    let mut rng = SeedRng::new(3);
    let opts = Conv2dOpts {
        padding: (1, 1),
        ..Default::default()
    };
    Sequential::new()
        .push_named(
            "conv",
            Conv2d::new(&gpu, &mut rng, 2, 3, (3, 3), opts, false).expect("conv"),
        )
        .push_named("bn", BatchNorm::new(&gpu, 3).expect("bn"))
        .push_named("act", Activation::Relu)
        .push_named("flat", Flatten)
        .push_named(
            "fc",
            Linear::new(&gpu, &mut rng, 3 * 5 * 5, 4, true).expect("fc"),
        )
}

fn kind(op: &Op) -> &'static str {
    match op {
        Op::Conv2d(_) => "conv",
        Op::BatchNorm { .. } => "batch norm",
        Op::Unary(_) => "unary",
        Op::Reshape => "reshape",
        Op::Linear => "linear",
        _ => "other",
    }
}

#[test]
fn a_trace_lists_each_op_once_with_its_inputs_output_and_layer() {
    let net = small_net();
    let x = Tensor::zeros(&gpu(), &[2, 2, 5, 5]).expect("x");
    assert!(!is_tracing());
    let (y, nodes) = trace(|| net.forward(&x, &mut Ctx::eval()));
    assert!(!is_tracing(), "the trace ends with its closure");
    let y = y.expect("forward");
    let kinds: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| (n.scope.as_str(), kind(&n.op)))
        .collect();
    assert_eq!(
        kinds,
        [
            ("conv", "conv"),
            ("bn", "batch norm"),
            ("act", "unary"),
            ("flat", "reshape"),
            ("fc", "linear")
        ]
    );
    assert!(matches!(nodes[0].op, Op::Conv2d(o) if o.padding == (1, 1)));
    assert!(matches!(
        nodes[1].op,
        Op::BatchNorm {
            training: false,
            weight: true,
            bias: true,
            ..
        }
    ));
    // Each node reads the previous node's output; the first reads the input.
    assert_eq!(nodes[0].inputs[0].id(), x.id());
    assert_eq!(nodes[0].inputs.len(), 2, "x and weight, no bias");
    assert_eq!(
        nodes[1].inputs.len(),
        5,
        "x, running mean and var, weight, bias"
    );
    for w in nodes.windows(2) {
        assert_eq!(w[1].inputs[0].id(), w[0].output.id());
    }
    assert_eq!(nodes[4].output.id(), y.id());
    // Outside a trace nothing is kept.
    let (_, again) = trace(|| ());
    assert!(again.is_empty());
}

#[test]
fn traces_nest_and_the_outer_one_resumes() {
    let g = gpu();
    let x = Tensor::zeros(&g, &[2, 4]).expect("x");
    let ((_, inner), outer) = trace(|| {
        let a = x.relu().expect("relu");
        let inner = trace(|| a.tanh().expect("tanh"));
        let _ = a.sigmoid().expect("sigmoid");
        inner
    });
    assert_eq!(inner.len(), 1);
    assert!(matches!(inner[0].op, Op::Unary(gpu_nn::Unary::Tanh)));
    let ops: Vec<Op> = outer.iter().map(|n| n.op).collect();
    assert_eq!(
        ops,
        [
            Op::Unary(gpu_nn::Unary::Relu),
            Op::Unary(gpu_nn::Unary::Sigmoid)
        ]
    );
}
