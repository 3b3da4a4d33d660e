//! Every model of the registry builds, runs a forward pass of its input, and has the
//! parameter count the registry states; the torchvision layouts have torchvision's names,
//! shapes and counts exactly (`tests/parity/fixtures/torchvision_layouts.json`, written by
//! `tests/parity/gen_layouts.py`), so torchvision weights load into each of them.

use std::collections::BTreeMap;

use gpu_nn::nn::{self, Ctx, Entry, Module};
use gpu_nn::{Gpu, Tensor};
use nnlab::registry::{Arch, MODELS};

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe on CI)")
}

/// torchvision's (name -> shape) of every state-dict entry, and its parameter count.
fn torchvision_layouts() -> BTreeMap<String, (usize, BTreeMap<String, Vec<usize>>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/parity/fixtures/torchvision_layouts.json"
    );
    let text = std::fs::read_to_string(path).expect("layouts fixture");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut out = BTreeMap::new();
    for (name, m) in v.as_object().expect("object") {
        let params = m["parameters"].as_u64().expect("count") as usize;
        let state = m["state"]
            .as_array()
            .expect("state")
            .iter()
            .map(|e| {
                let shape = e[1]
                    .as_array()
                    .expect("shape")
                    .iter()
                    .map(|d| d.as_u64().expect("dim") as usize)
                    .collect();
                (e[0].as_str().expect("name").to_string(), shape)
            })
            .collect();
        out.insert(name.clone(), (params, state));
    }
    out
}

fn layout(m: &dyn Module) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    m.visit("", &mut |name, e| {
        let shape = match e {
            Entry::Param(p) => p.tensor().shape().to_vec(),
            Entry::Buffer(t) => t.shape().to_vec(),
            Entry::Counter(_) => vec![],
        };
        out.insert(name, shape);
    });
    out
}

/// Checks every registry model that fits `gpu`'s largest storage binding; returns the
/// names of those that do not (their error must say so).
fn check_models(gpu: &Gpu) -> Vec<&'static str> {
    let tv = torchvision_layouts();
    let mut wrong = Vec::new();
    let mut skipped = Vec::new();
    for m in MODELS {
        if m.arch == Arch::Dcgan {
            let (g, d) = m.build_gan(gpu, 1.0, 1).expect("dcgan");
            let n = nn::param_count(&g) + nn::param_count(&d);
            if n != m.params {
                wrong.push(format!(
                    "{}: {n} parameters, the registry says {}",
                    m.name, m.params
                ));
            }
            let _ng = gpu_nn::no_grad();
            let z = Tensor::zeros(gpu, &[1, gpu_nn::models::LATENT]).expect("z");
            let img = g.forward(&z, &mut Ctx::eval()).expect("sample");
            assert_eq!(img.shape(), [1, 1, 28, 28]);
            let p = d.forward(&img, &mut Ctx::eval()).expect("judge");
            assert_eq!(p.shape(), [1, 1]);
            continue;
        }
        let shape = m.input.default_shape();
        let classes = m.default_classes();
        let net = match m.build(gpu, shape, classes, 1) {
            Ok(n) => n,
            Err(e) => {
                let too_large = matches!(
                    e.downcast_ref::<gpu_nn::Error>(),
                    Some(gpu_nn::Error::TooLarge { .. })
                );
                assert!(too_large, "{}: {e:#}", m.name);
                assert!(
                    format!("{e:#}").contains("maximum storage binding"),
                    "{e:#}"
                );
                skipped.push(m.name);
                continue;
            }
        };
        let n = nn::param_count(net.as_ref());
        if n != m.params {
            wrong.push(format!(
                "{}: {n} parameters, the registry says {}",
                m.name, m.params
            ));
        }
        if let Some((count, state)) = tv.get(m.name) {
            assert!(m.torchvision(), "{} has a torchvision layout", m.name);
            assert_eq!(n, *count, "{}: torchvision's parameter count", m.name);
            assert_eq!(
                &layout(net.as_ref()),
                state,
                "{}: torchvision's names and shapes",
                m.name
            );
        } else {
            assert!(!m.torchvision(), "{}: no torchvision fixture", m.name);
        }
        let _ng = gpu_nn::no_grad();
        let [c, h, w] = shape;
        let x = Tensor::zeros(gpu, &[1, c, h, w]).expect("x");
        let y = net.forward(&x, &mut Ctx::eval()).expect(m.name);
        assert_eq!(y.shape(), [1, classes], "{}", m.name);
        let v = y.to_vec_blocking().expect("logits");
        assert!(v.iter().all(|x| x.is_finite()), "{}: {v:?}", m.name);
        drop((net, x, y));
        gpu.trim_pool();
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    skipped
}

/// VGG's and AlexNet's first fully connected layers hold 411 and 151 MB of weights: more
/// than the 128 MiB storage binding of lavapipe (and of WebGPU's default limits). There the
/// build fails with a message naming the limit; everything else is checked in full.
#[test]
fn every_model_builds_runs_its_input_and_has_its_parameter_count() {
    let gpu = gpu();
    let skipped = check_models(&gpu);
    let big = ["vgg11", "vgg16", "alexnet"];
    assert!(
        skipped.iter().all(|s| big.contains(s)),
        "{skipped:?} did not fit"
    );
    if gpu.max_binding_bytes() >= 512 << 20 {
        assert!(skipped.is_empty(), "{skipped:?}");
    }
}

/// The same on a GPU whose bindings hold VGG's and AlexNet's weights (run with --ignored).
#[test]
#[ignore = "needs a GPU with storage bindings of 512 MiB or more"]
fn every_model_builds_on_a_gpu_with_large_bindings() {
    let gpu = gpu();
    assert!(
        gpu.max_binding_bytes() >= 512 << 20,
        "this device's bindings are too small"
    );
    assert!(check_models(&gpu).is_empty());
}

#[test]
fn a_state_dicts_keys_name_its_torchvision_layout() {
    for (name, (_, state)) in torchvision_layouts() {
        assert_eq!(
            nnlab::registry::model_for_weights(&state),
            Some(name.as_str()),
            "{name}"
        );
    }
    // A CIFAR-style ResNet's keys are none of them.
    let cifar: BTreeMap<String, Vec<usize>> =
        [("layer3.2.conv2.weight".to_string(), vec![64, 64, 3, 3])]
            .into_iter()
            .collect();
    assert_eq!(nnlab::registry::model_for_weights(&cifar), None);
}
