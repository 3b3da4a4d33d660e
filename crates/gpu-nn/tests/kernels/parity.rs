//! PyTorch parity: fixtures written by `tests/parity/gen_fixtures.py` (torch 2.15, CPU, f32)
//! are replayed here. Tolerance: max |ours - torch| <= 1e-4 * max(1, max |torch|) per tensor.
//! Both sides compute in f32 and differ only in summation order; the largest reductions here
//! (a few hundred terms) give errors near 1e-6 relative, so 1e-4 leaves a wide margin while
//! still catching any wrong index, padding or scaling rule.

use std::collections::HashMap;

use gpu_nn::init::SeedRng;
use gpu_nn::models::{BasicBlock, Inception, InceptionSpec};
use gpu_nn::nn::{self, Activation, Ctx, HostState, HostTensor, Linear, Module, Sequential};
use gpu_nn::ops::batchnorm::batch_norm;
use gpu_nn::ops::concat::cat_channels;
use gpu_nn::ops::conv::{Conv2dOpts, ConvTranspose2dOpts, conv_transpose2d, conv2d};
use gpu_nn::ops::loss::{bce_with_logits, cross_entropy};
use gpu_nn::ops::matmul::linear;
use gpu_nn::ops::pool::{
    AvgPool2dOpts, MaxPool2dOpts, adaptive_avg_pool2d, avg_pool2d, max_pool2d,
};
use gpu_nn::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use gpu_nn::{Grads, Tensor};

use crate::common::*;

struct Fixture {
    name: &'static str,
    tensors: HashMap<String, HostTensor>,
    opts: String,
}

impl Fixture {
    fn load(name: &'static str) -> Self {
        let path = format!(
            "{}/../../tests/parity/fixtures/{name}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
        let opts = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("opts").cloned())
            .unwrap_or_default();
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}/{k}");
                let data = v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                (
                    k,
                    HostTensor {
                        shape: v.shape().to_vec(),
                        data,
                    },
                )
            })
            .collect();
        Self {
            name,
            tensors,
            opts,
        }
    }

    fn host(&self, k: &str) -> &HostTensor {
        self.tensors
            .get(k)
            .unwrap_or_else(|| panic!("{}: no tensor {k}", self.name))
    }

    /// Uploads `k` as a plain tensor.
    fn t(&self, k: &str) -> Tensor {
        let h = self.host(k);
        upload(&h.data, &h.shape)
    }

    /// Uploads `k` as a parameter (gradients wanted).
    fn p(&self, k: &str) -> Tensor {
        let h = self.host(k);
        param(&h.data, &h.shape)
    }

    /// The fixture's options must be the ones this test uses.
    #[track_caller]
    fn expect_opts(&self, json: &str) {
        assert_eq!(self.opts, json, "{}: fixture options changed", self.name);
    }

    /// Tensors whose names start with `prefix`, prefix stripped.
    fn state(&self, prefix: &str) -> HostState {
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
            .collect()
    }

    #[track_caller]
    fn check(&self, got: &Tensor, k: &str) {
        let want = self.host(k);
        assert_eq!(
            got.shape(),
            want.shape.as_slice(),
            "{}: shape of {k}",
            self.name
        );
        check_parity(&read(got), &want.data, &format!("{}/{k}", self.name));
    }
}

#[track_caller]
fn check_parity(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0f32), |(bi, be), (i, e)| {
            if e > be || e.is_nan() {
                (i, e)
            } else {
                (bi, be)
            }
        });
    // Visible with --nocapture: the margin each case actually has.
    eprintln!("parity {what}: max abs error {err:.2e}, scale {scale:.2}");
    assert!(
        err <= 1e-4 * scale,
        "{what}: max error {err} at {i} (ours {}, torch {}), allowed {}",
        got[i],
        want[i],
        1e-4 * scale
    );
}

fn grad<'a>(g: &'a Grads, t: &Tensor) -> &'a Tensor {
    g.get(t).expect("gradient present")
}

#[test]
fn conv2d_matches_torch() {
    let f = Fixture::load("conv2d");
    f.expect_opts(r#"{"stride": [2, 1], "padding": [1, 1], "dilation": [2, 1], "groups": 2}"#);
    let (x, w, b) = (f.p("x"), f.p("w"), f.p("b"));
    let opts = Conv2dOpts {
        stride: (2, 1),
        padding: (1, 1),
        dilation: (2, 1),
        groups: 2,
    };
    let y = conv2d(&x, &w, Some(&b), opts).expect("conv2d");
    f.check(&y, "y");
    let g = y.backward_with(&f.t("gy")).expect("backward");
    f.check(grad(&g, &x), "gx");
    f.check(grad(&g, &w), "gw");
    f.check(grad(&g, &b), "gb");
}

#[test]
fn conv_transpose2d_matches_torch() {
    let f = Fixture::load("conv_transpose2d");
    f.expect_opts(
        r#"{"stride": [2, 2], "padding": [1, 0], "output_padding": [1, 1], "dilation": [1, 1], "groups": 2}"#,
    );
    let (x, w, b) = (f.p("x"), f.p("w"), f.p("b"));
    let opts = ConvTranspose2dOpts {
        stride: (2, 2),
        padding: (1, 0),
        output_padding: (1, 1),
        dilation: (1, 1),
        groups: 2,
    };
    let y = conv_transpose2d(&x, &w, Some(&b), opts).expect("conv_transpose2d");
    f.check(&y, "y");
    let g = y.backward_with(&f.t("gy")).expect("backward");
    f.check(grad(&g, &x), "gx");
    f.check(grad(&g, &w), "gw");
    f.check(grad(&g, &b), "gb");
}

#[test]
fn pooling_matches_torch() {
    let f = Fixture::load("max_pool2d");
    f.expect_opts(
        r#"{"kernel": [3, 2], "stride": [2, 2], "padding": [1, 1], "dilation": [1, 1], "ceil_mode": true}"#,
    );
    let x = f.p("x");
    let opts = MaxPool2dOpts {
        kernel: (3, 2),
        stride: (2, 2),
        padding: (1, 1),
        dilation: (1, 1),
        ceil_mode: true,
    };
    let y = max_pool2d(&x, opts).expect("max_pool2d");
    f.check(&y, "y");
    f.check(grad(&y.backward_with(&f.t("gy")).expect("bw"), &x), "gx");

    let f = Fixture::load("avg_pool2d");
    f.expect_opts(
        r#"{"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": true, "count_include_pad": false}"#,
    );
    let x = f.p("x");
    let opts = AvgPool2dOpts {
        kernel: (3, 3),
        stride: (2, 2),
        padding: (1, 1),
        ceil_mode: true,
        count_include_pad: false,
    };
    let y = avg_pool2d(&x, opts).expect("avg_pool2d");
    f.check(&y, "y");
    f.check(grad(&y.backward_with(&f.t("gy")).expect("bw"), &x), "gx");

    let f = Fixture::load("adaptive_avg_pool2d");
    f.expect_opts(r#"{"out": [5, 4]}"#);
    let x = f.p("x");
    let y = adaptive_avg_pool2d(&x, (5, 4)).expect("adaptive");
    f.check(&y, "y");
    f.check(grad(&y.backward_with(&f.t("gy")).expect("bw"), &x), "gx");
}

#[test]
fn batch_norm_matches_torch_in_both_modes() {
    let f = Fixture::load("batch_norm_train");
    f.expect_opts(r#"{"momentum": 0.1, "eps": 1e-05}"#);
    let (x, w, b) = (f.p("x"), f.p("w"), f.p("b"));
    let (rm, rv) = (f.t("rm0"), f.t("rv0"));
    let y = batch_norm(&x, &rm, &rv, Some(&w), Some(&b), true, 0.1, 1e-5).expect("bn");
    f.check(&y, "y");
    let g = y.backward_with(&f.t("gy")).expect("backward");
    f.check(grad(&g, &x), "gx");
    f.check(grad(&g, &w), "gw");
    f.check(grad(&g, &b), "gb");
    f.check(&rm, "rm");
    f.check(&rv, "rv");

    let f = Fixture::load("batch_norm_eval");
    let (x, w, b) = (f.p("x"), f.p("w"), f.p("b"));
    let y = batch_norm(
        &x,
        &f.t("rm"),
        &f.t("rv"),
        Some(&w),
        Some(&b),
        false,
        0.1,
        1e-5,
    )
    .expect("bn eval");
    f.check(&y, "y");
    let g = y.backward_with(&f.t("gy")).expect("backward");
    f.check(grad(&g, &x), "gx");
    f.check(grad(&g, &w), "gw");
    f.check(grad(&g, &b), "gb");
}

#[test]
fn linear_and_activations_match_torch() {
    let f = Fixture::load("linear");
    let (x, w, b) = (f.p("x"), f.p("w"), f.p("b"));
    let y = linear(&x, &w, Some(&b)).expect("linear");
    f.check(&y, "y");
    let g = y.backward_with(&f.t("gy")).expect("backward");
    f.check(grad(&g, &x), "gx");
    f.check(grad(&g, &w), "gw");
    f.check(grad(&g, &b), "gb");

    for name in ["relu", "leaky_relu", "sigmoid", "tanh"] {
        let f = Fixture::load(name);
        let x = f.p("x");
        let y = match name {
            "relu" => x.relu(),
            "leaky_relu" => x.leaky_relu(0.2),
            "sigmoid" => x.sigmoid(),
            _ => x.tanh(),
        }
        .expect(name);
        f.check(&y, "y");
        f.check(grad(&y.backward_with(&f.t("gy")).expect("bw"), &x), "gx");
    }
}

#[test]
fn losses_match_torch() {
    let f = Fixture::load("log_softmax");
    let x = f.p("x");
    let y = x.log_softmax().expect("log_softmax");
    f.check(&y, "y");
    f.check(grad(&y.backward_with(&f.t("gy")).expect("bw"), &x), "gx");

    let f = Fixture::load("cross_entropy");
    let x = f.p("x");
    let loss = cross_entropy(&x, &f.t("target")).expect("cross_entropy");
    f.check(&loss, "loss");
    f.check(grad(&loss.backward().expect("bw"), &x), "gx");

    let f = Fixture::load("bce_with_logits");
    let x = f.p("x");
    let loss = bce_with_logits(&x, &f.t("target")).expect("bce");
    f.check(&loss, "loss");
    f.check(grad(&loss.backward().expect("bw"), &x), "gx");
}

#[test]
fn channel_concat_matches_torch() {
    let f = Fixture::load("cat");
    let (a, b, c) = (f.p("a"), f.p("b"), f.p("c"));
    let y = cat_channels(&[&a, &b, &c]).expect("cat");
    f.check(&y, "y");
    let g = y.backward_with(&f.t("gy")).expect("backward");
    f.check(grad(&g, &a), "ga");
    f.check(grad(&g, &b), "gb");
    f.check(grad(&g, &c), "gc");
}

#[test]
fn conv_bn_relu_graph_matches_torch() {
    let f = Fixture::load("conv_bn_relu");
    let (x, w) = (f.t("x"), f.p("conv.weight"));
    let (bw, bb) = (f.p("bn.weight"), f.p("bn.bias"));
    let rm = Tensor::zeros(&gpu(), &[8]).expect("rm");
    let rv = Tensor::full(&gpu(), &[8], 1.0).expect("rv");
    let opts = Conv2dOpts {
        padding: (1, 1),
        ..Conv2dOpts::default()
    };
    let h = conv2d(&x, &w, None, opts).expect("conv");
    let h = batch_norm(&h, &rm, &rv, Some(&bw), Some(&bb), true, 0.1, 1e-5).expect("bn");
    let y = h.relu().expect("relu");
    f.check(&y, "y");
    let g = y.backward_with(&f.t("gy")).expect("backward");
    f.check(grad(&g, &w), "grad.conv.weight");
    f.check(grad(&g, &bw), "grad.bn.weight");
    f.check(grad(&g, &bb), "grad.bn.bias");
    f.check(&rm, "bn.running_mean");
    f.check(&rv, "bn.running_var");
}

/// Runs a module built with torchvision names on a fixture made by the same torch module:
/// loads its initial state by name, checks output, every parameter gradient and the running
/// statistics after one training-mode forward.
fn module_parity(m: &dyn Module, fixture: &'static str) {
    let init = Fixture::load(match fixture {
        "basic_block" => "basic_block_init",
        _ => "inception_init",
    });
    let report = nn::load_state(m, &init.state(""), true).expect("torchvision names load");
    assert!(report.is_clean(), "{report}");
    let f = Fixture::load(fixture);
    let y = m.forward(&f.t("x"), &mut Ctx::train(0)).expect("forward");
    f.check(&y, "y");
    let g = y.backward_with(&f.t("gy")).expect("backward");
    let mut checked = std::collections::BTreeSet::new();
    for (name, t) in nn::named_tensors(m) {
        let key = if name.ends_with("running_mean") || name.ends_with("running_var") {
            f.check(&t, &name);
            name
        } else {
            let key = format!("grad.{name}");
            f.check(grad(&g, &t), &key);
            key
        };
        checked.insert(key);
    }
    // Every gradient and running statistic torch recorded was compared.
    let recorded: std::collections::BTreeSet<String> = f
        .tensors
        .keys()
        .filter(|k| k.starts_with("grad.") || k.contains("running_"))
        .cloned()
        .collect();
    assert_eq!(
        checked, recorded,
        "{fixture}: compared set differs from the fixture's"
    );
}

#[test]
fn residual_basic_block_matches_torch() {
    let blk = BasicBlock::new(&gpu(), &mut SeedRng::new(0), 4, 8, 2, true, true).expect("block");
    module_parity(&blk, "basic_block");
}

#[test]
fn inception_module_matches_torch() {
    let spec = InceptionSpec {
        inp: 6,
        ch1x1: 4,
        ch3x3red: 3,
        ch3x3: 5,
        ch5x5red: 2,
        ch5x5: 3,
        k5x5: 3,
        pool_proj: 2,
    };
    let m = Inception::new(&gpu(), &mut SeedRng::new(0), spec).expect("inception");
    module_parity(&m, "inception");
}

fn small_net() -> Sequential {
    let gpu = gpu();
    let mut rng = SeedRng::new(0);
    Sequential::new()
        .push(Linear::new(&gpu, &mut rng, 6, 5, true).expect("fc"))
        .push(Activation::Relu)
        .push(Linear::new(&gpu, &mut rng, 5, 3, true).expect("fc"))
}

/// Three optimizer steps on a two-layer net, compared after every step.
#[test]
fn sgd_momentum_and_adam_steps_match_torch() {
    for name in ["sgd_momentum", "adam"] {
        let f = Fixture::load(name);
        let net = small_net();
        nn::load_state(&net, &f.state("init."), true).expect("init");
        let params = nn::parameters(&net);
        let mut opt: Box<dyn Optimizer> = if name == "adam" {
            Box::new(
                Adam::new(
                    params,
                    AdamConfig {
                        lr: 1e-2,
                        betas: (0.9, 0.999),
                        eps: 1e-8,
                        weight_decay: 1e-4,
                        decoupled_weight_decay: false,
                    },
                )
                .expect("adam"),
            )
        } else {
            Box::new(
                Sgd::new(
                    params,
                    SgdConfig {
                        lr: 0.1,
                        momentum: 0.9,
                        dampening: 0.0,
                        weight_decay: 1e-4,
                        nesterov: false,
                    },
                )
                .expect("sgd"),
            )
        };
        let (x, target) = (f.t("x"), f.t("target"));
        for s in 0..3 {
            let logits = net.forward(&x, &mut Ctx::train(0)).expect("forward");
            let loss = cross_entropy(&logits, &target).expect("loss");
            let g = loss.backward().expect("backward");
            opt.step(&g).expect("step");
            f.check(&loss, &format!("loss.{s}"));
            for (pname, t) in nn::named_tensors(&net) {
                f.check(&t, &format!("step{s}.{pname}"));
            }
        }
    }
}
