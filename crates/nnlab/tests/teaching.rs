//! The computations behind the teaching views, on small deterministic cases: gradient flow
//! at initialisation, lesions of residual blocks, Inception branches.

use gpu_nn::Gpu;
use nnlab::core::inflight::{GPU_IN_FLIGHT, InFlight};
use nnlab::core::{Classifier, ModelSpec, OptSettings, TrainConfig};
use nnlab::data::{Bundled, Dataset};
use nnlab::registry::Variant;

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe on CI)")
}

fn mnist(n: usize) -> Dataset {
    let mut d = Bundled::Mnist.load().expect("bundled");
    d.truncate(n);
    d
}

fn classifier(gpu: &Gpu, model: &str, variant: Variant, seed: u64) -> Classifier {
    let (m, s) = Bundled::Mnist.normalisation();
    let spec = ModelSpec {
        name: model.into(),
        input: [1, 28, 28],
        class_names: (0..10).map(|c| c.to_string()).collect(),
        mean: vec![m],
        std: vec![s],
        finetune: false,
        variant,
    };
    let config = TrainConfig {
        batch: 32,
        seed,
        opt: OptSettings {
            kind: "sgd".into(),
            lr: 0.0,
            momentum: 0.0,
            weight_decay: 0.0,
            cosine_epochs: None,
        },
        augment: None,
    };
    Classifier::new(gpu, spec, config).expect("classifier")
}

/// Per-layer gradient norms of `model` at initialisation, on one batch.
fn init_norms(gpu: &Gpu, model: &str, variant: Variant, seed: u64) -> nnlab::core::GradNorms {
    let data = mnist(8);
    let mut c = classifier(gpu, model, variant, seed);
    c.config.batch = 8;
    c.probe_every = 1;
    let mut q = InFlight::new(GPU_IN_FLIGHT, "loss");
    c.submit(&data, &mut q, 1).expect("step");
    q.drain_blocking().expect("step");
    let mut probes = c.take_probes();
    assert_eq!(probes.len(), 1);
    let n = probes.pop().expect("probe").wait_blocking().expect("norms");
    assert_eq!(n.step, 1);
    assert!(n.layers[0].starts_with("conv1"), "{:?}", n.layers);
    assert!(
        n.layers.last().is_some_and(|l| l.starts_with("fc")),
        "{:?}",
        n.layers
    );
    n
}

/// Without batch norm and with PyTorch's default initialisation (variance 1/(3 fan_in),
/// a sixth of what ReLU layers need), the plain 56-layer net's signal shrinks by about
/// sqrt(6) per layer: its gradients vanish, at every layer alike (about 1e-23 measured),
/// while the residual twin's identity paths keep them near 1e-2. With He initialisation
/// the plain net's gradients are in scale (about 1e-2) at initialisation.
///
/// The ratio of first- to last-layer gradient does not tell them apart (0.2-0.5 for the
/// plain net, 0.08-0.13 for the residual one, measured): in a bias-free ReLU net each
/// layer's gradient carries the product of all the other layers' gains, so vanishing shows
/// in the whole net's gradient scale. The test asserts on that scale.
#[test]
fn without_batch_norm_gradients_vanish_in_the_plain_net_not_in_its_residual_twin() {
    let gpu = gpu();
    let no_bn = |he| Variant {
        batch_norm: false,
        he_init: he,
        width: 1.0,
    };
    for seed in [1, 2] {
        let plain = init_norms(&gpu, "resnet56-plain", no_bn(false), seed);
        let res = init_norms(&gpu, "resnet56", no_bn(false), seed);
        let plain_he = init_norms(&gpu, "resnet56-plain", no_bn(true), seed);
        let max = |n: &nnlab::core::GradNorms| n.grad.iter().copied().fold(0.0f32, f32::max);
        let min = |n: &nnlab::core::GradNorms| n.grad.iter().copied().fold(f32::MAX, f32::min);
        println!(
            "seed {seed}: gradient norms at init, PyTorch default init: plain {:e}..{:e}, \
             residual {:e}..{:e}; He init: plain {:e}..{:e}",
            min(&plain),
            max(&plain),
            min(&res),
            max(&res),
            min(&plain_he),
            max(&plain_he)
        );
        // Vanished: ten orders of magnitude below the residual twin's, at every layer.
        assert!(
            max(&plain) < 1e-10 * min(&res),
            "plain {plain:?} vs residual {res:?}"
        );
        // He initialisation: in scale.
        assert!((1e-4..1.0).contains(&min(&plain_he)), "{plain_he:?}");
        assert!(max(&plain_he) < 1.0, "{plain_he:?}");
    }
}

fn trained(gpu: &Gpu, model: &str, steps: usize, data: &Dataset) -> Classifier {
    let mut c = classifier(gpu, model, Variant::default(), 1);
    c.config.opt.kind = "sgd".into();
    c.set_lr(0.05).expect("lr");
    let mut q = InFlight::new(GPU_IN_FLIGHT, "loss");
    for _ in 0..steps {
        q.make_room().expect("results");
        c.submit(data, &mut q, 1).expect("step");
    }
    q.drain_blocking().expect("results");
    c
}

fn logits(gpu: &Gpu, net: &dyn gpu_nn::nn::Module, x: &[f32], lesions: &[String]) -> Vec<f32> {
    let _g = gpu_nn::no_grad();
    let n = x.len() / 784;
    let t = gpu_nn::Tensor::from_slice(gpu, x, &[n, 1, 28, 28]).expect("x");
    let mut ctx = gpu_nn::nn::Ctx::eval().lesioning(lesions.iter().cloned());
    net.forward(&t, &mut ctx)
        .expect("forward")
        .to_vec_blocking()
        .expect("logits")
}

#[test]
fn lesions_change_nothing_where_nothing_is_lesioned_or_the_branches_are_zero() {
    let gpu = gpu();
    let data = mnist(64);
    let c = trained(&gpu, "resnet8", 4, &data);
    let x = &data.inputs(0..4);
    let blocks = nnlab::core::study::blocks(c.net.as_ref());
    assert_eq!(
        blocks
            .iter()
            .map(|b| (b.path.as_str(), b.downsamples))
            .collect::<Vec<_>>(),
        vec![("layer1.0", false), ("layer2.0", true), ("layer3.0", true)]
    );
    // No lesion: exactly the model's own output.
    let base = logits(&gpu, c.net.as_ref(), x, &[]);
    assert_eq!(logits(&gpu, c.net.as_ref(), x, &["layer9.9".into()]), base);
    // A trained net's branches respond.
    let xt = gpu_nn::Tensor::from_slice(&gpu, x, &[4, 1, 28, 28]).expect("x");
    let r = nnlab::core::study::residual_response(c.net.as_ref(), &xt)
        .expect("response")
        .wait_blocking()
        .expect("response");
    assert!(
        r.iter().all(|b| b.branch_std > 0.0 && b.ratio > 0.0),
        "{r:?}"
    );
    // A lesion changes a trained block's output.
    assert_ne!(logits(&gpu, c.net.as_ref(), x, &["layer1.0".into()]), base);
    // Zero every residual branch (its last batch norm's scale and shift): then deleting a
    // block changes nothing, since relu(0 + shortcut) is what a lesion outputs.
    let mut zero = Vec::new();
    c.net.visit("", &mut |name, e| {
        if let gpu_nn::nn::Entry::Param(p) = e
            && name.contains(".bn2.")
        {
            zero.push(p.tensor().clone());
        }
    });
    for t in zero {
        t.write(&vec![0.0; t.numel()]).expect("zero");
    }
    let zeroed = logits(&gpu, c.net.as_ref(), x, &[]);
    // And every residual response is zero: the branches output nothing.
    let xt = gpu_nn::Tensor::from_slice(&gpu, x, &[4, 1, 28, 28]).expect("x");
    let r = nnlab::core::study::residual_response(c.net.as_ref(), &xt)
        .expect("response")
        .wait_blocking()
        .expect("response");
    assert_eq!(r.len(), 3);
    assert!(
        r.iter().all(|b| b.branch_std == 0.0 && b.ratio == 0.0),
        "{r:?}"
    );
    for b in &blocks {
        assert_eq!(
            logits(&gpu, c.net.as_ref(), x, std::slice::from_ref(&b.path)),
            zeroed,
            "{}",
            b.path
        );
    }
}

#[test]
fn inception_branches_make_up_their_module_and_without_them_the_net_guesses() {
    let gpu = gpu();
    let data = mnist(64);
    let c = trained(&gpu, "googlenet-small", 4, &data);
    let net = c.net.as_ref();
    let modules = nnlab::core::study::inception_modules(net);
    assert!(!modules.is_empty());
    assert!(modules.iter().all(|(_, b)| b.len() == 4), "{modules:?}");
    // The captured branch maps, concatenated, are the module's output.
    let _g = gpu_nn::no_grad();
    let x = gpu_nn::Tensor::from_slice(&gpu, &data.inputs(0..2), &[2, 1, 28, 28]).expect("x");
    let mut ctx = gpu_nn::nn::Ctx::eval().capturing();
    net.forward(&x, &mut ctx).expect("forward");
    let caps = ctx.take_captures();
    let get = |name: &str| {
        caps.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{name} not captured"))
    };
    let (module, branches) = &modules[0];
    let parts: Vec<gpu_nn::Tensor> = branches.iter().map(|b| get(b)).collect();
    let refs: Vec<&gpu_nn::Tensor> = parts.iter().collect();
    let cat = gpu_nn::cat_channels(&refs)
        .expect("cat")
        .to_vec_blocking()
        .expect("cat");
    assert_eq!(cat, get(module).to_vec_blocking().expect("module"));
    // Energy shares sum to one per module.
    let shares = nnlab::core::study::branch_shares(net, &x)
        .expect("shares")
        .wait_blocking()
        .expect("shares");
    for (m, s) in &shares {
        let total: f32 = s.iter().map(|(_, v)| v).sum();
        assert!((total - 1.0).abs() < 1e-4, "{m}: {s:?}");
    }
    // Every branch of every module ablated: the prediction no longer depends on the image,
    // so accuracy is that of always guessing one class.
    let all: Vec<String> = modules.iter().flat_map(|(_, b)| b.clone()).collect();
    let l = logits(&gpu, net, &data.inputs(0..8), &all);
    let first = &l[..10];
    assert!(
        l.chunks(10).all(|row| row == first),
        "predictions still vary"
    );
}

#[test]
fn the_landscape_is_centred_on_the_trained_weights_with_filter_normalised_directions() {
    use nnlab::core::landscape::{Landscape, is_filtered};
    let gpu = gpu();
    let data = mnist(64);
    let c = trained(&gpu, "resnet8", 4, &data);
    let theta = gpu_nn::nn::read_state_blocking(c.net.as_ref()).expect("theta");
    let fresh = c.spec.build(&gpu, c.config.seed).expect("fresh");
    let theta0 = gpu_nn::nn::read_state_blocking(fresh.as_ref()).expect("theta0");
    let idx: Vec<usize> = (0..16).collect();
    let (x, y) = data.batch(&gpu, &idx).expect("batch");
    let loss_of = |net: &dyn gpu_nn::nn::Module| {
        let _g = gpu_nn::no_grad();
        let l = net
            .forward(&x, &mut gpu_nn::nn::Ctx::train(0))
            .expect("forward");
        gpu_nn::cross_entropy(&l, &y)
            .expect("loss")
            .item_blocking()
            .expect("loss")
    };
    let (trained_loss, initial_loss) = (loss_of(c.net.as_ref()), loss_of(fresh.as_ref()));
    let scratch = c.spec.build(&gpu, 9).expect("scratch");
    let mut l = Landscape::new(
        scratch,
        (x.clone(), y.clone()),
        theta.clone(),
        theta0,
        (7, 3, 5),
    )
    .expect("landscape");
    l.run_blocking().expect("computed");
    assert_eq!(l.progress(), (16, 16));
    // The centre of the plane, and the end of the line, are the trained weights.
    assert_eq!(l.alphas[1], 0.0);
    assert!(
        (l.grid[4] - trained_loss).abs() < 1e-5,
        "{} vs {trained_loss}",
        l.grid[4]
    );
    let at = |t: f32| l.line.iter().find(|p| p.0 == t).expect("point").1;
    assert!((at(1.0) - trained_loss).abs() < 1e-5);
    assert!((at(0.0) - initial_loss).abs() < 1e-5);
    assert!(l.grid.iter().all(|v| v.is_finite()));
    // Each direction's filters have the weights' filter norms; biases and batch-norm
    // entries are zero.
    let (d1, d2) = l.directions();
    for d in [d1, d2] {
        for (name, t) in &theta {
            let dt = &d[name];
            if is_filtered(name, &t.shape) {
                let per = t.data.len() / t.shape[0];
                for (a, b) in dt.data.chunks(per).zip(t.data.chunks(per)) {
                    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    assert!((n(a) - n(b)).abs() <= 1e-4 * n(b).max(1e-6), "{name}");
                }
            } else {
                assert!(dt.data.iter().all(|v| *v == 0.0), "{name} is perturbed");
            }
        }
    }
}
