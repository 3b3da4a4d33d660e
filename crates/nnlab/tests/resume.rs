//! Resuming from a checkpoint continues exactly: N steps straight equal N/2 steps, a save
//! to bytes, a load into a fresh model and optimizer, and N/2 more.
//!
//! Tolerance: the losses must agree within 1e-6. Both runs execute the same kernels on the
//! same inputs in the same order, and a checkpoint stores f32 values exactly, so on a
//! deterministic device (lavapipe is) they are identical; the slack only allows a device
//! whose reductions are not bit-reproducible from run to run. Measured on lavapipe: 0.

use gpu_nn::Gpu;
use gpu_nn::nn::{self, HostTensor};
use nnlab::checkpoint::Checkpoint;
use nnlab::core::gan as core_gan;
use nnlab::core::{Classifier, Gan, ModelSpec, OptSettings, TrainConfig};
use nnlab::data::{Augment, Bundled};

const TOL: f32 = 1e-6;

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe on CI)")
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    if what.contains("losses") {
        println!("{what}: max |difference| {worst:e}");
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= TOL,
            "{what} {i}: {x} vs {y} ({a:?} vs {b:?})"
        );
    }
}

fn spec() -> ModelSpec {
    let (m, s) = Bundled::Mnist.normalisation();
    ModelSpec {
        name: "mnist-cnn".into(),
        input: [1, 28, 28],
        class_names: Bundled::Mnist
            .class_names()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        mean: vec![m],
        std: vec![s],
        finetune: false,
        variant: Default::default(),
    }
}

fn config(kind: &str) -> TrainConfig {
    TrainConfig {
        batch: 8,
        seed: 7,
        opt: OptSettings {
            kind: kind.into(),
            lr: if kind == "adam" { 1e-3 } else { 0.01 },
            momentum: 0.5,
            weight_decay: 0.0,
            // A schedule must resume exactly too (the rate changes between epochs).
            cosine_epochs: Some(3),
        },
        // Augmentation and dropout both draw from the step: resuming must reproduce them.
        augment: Some(Augment::crop_flip()),
    }
}

/// 6 batches per epoch; 9 steps cross an epoch boundary (new shuffle) after the resume.
#[test]
fn classifier_resume_matches_an_uninterrupted_run() {
    let gpu = gpu();
    let mut data = Bundled::Mnist.load().expect("bundled");
    data.truncate(48);
    for kind in ["sgd", "adam"] {
        let mut straight = Classifier::new(&gpu, spec(), config(kind)).expect("trainer");
        let mut want = straight.run_epoch(&data, None, |_| {}).expect("e1").losses;
        want.extend(
            straight
                .run_epoch(&data, Some(3), |_| {})
                .expect("e2")
                .losses,
        );
        assert_eq!(want.len(), 9);

        let mut first = Classifier::new(&gpu, spec(), config(kind)).expect("trainer");
        let mut got = first
            .run_epoch(&data, Some(4), |_| {})
            .expect("part")
            .losses;
        let bytes = first.checkpoint().expect("ckpt").to_bytes().expect("ser");
        drop(first);
        let c = Checkpoint::from_bytes(&bytes, "mem").expect("parse");
        // A different seed on the command line must not matter: the checkpoint's counts.
        let mut resumed = Classifier::from_checkpoint(&gpu, &c).expect("resume");
        assert_eq!(resumed.progress.step, 4);
        assert_eq!(resumed.progress.batch, 4);
        let rest = resumed.run_epoch(&data, None, |_| {}).expect("rest");
        assert!(rest.finished);
        got.extend(rest.losses);
        got.extend(
            resumed
                .run_epoch(&data, Some(3), |_| {})
                .expect("e2")
                .losses,
        );
        assert_close(&got, &want, &format!("{kind} losses"));
        // And the final parameters agree.
        let a = nn::read_state_blocking(straight.net.as_ref()).expect("state");
        let b = nn::read_state_blocking(resumed.net.as_ref()).expect("state");
        for (k, v) in &a {
            assert_close(&v.data, &b[k].data, k);
        }
    }
}

#[test]
fn cosine_schedule_reaches_the_optimizer_each_epoch() {
    // T_max = 1 epoch: the first epoch runs at lr, the second at lr * (1 + cos(pi)) / 2 = 0,
    // so the second epoch must leave every weight where the first left it.
    let gpu = gpu();
    let mut data = Bundled::Mnist.load().expect("bundled");
    data.truncate(16);
    for kind in ["sgd", "adam"] {
        let mut c = config(kind);
        c.opt.cosine_epochs = Some(1);
        c.augment = None;
        let mut t = Classifier::new(&gpu, spec(), c).expect("trainer");
        let before = nn::read_state_blocking(t.net.as_ref()).expect("state");
        t.run_epoch(&data, None, |_| {}).expect("e1");
        let after1 = nn::read_state_blocking(t.net.as_ref()).expect("state");
        t.run_epoch(&data, None, |_| {}).expect("e2");
        let after2 = nn::read_state_blocking(t.net.as_ref()).expect("state");
        let w = "conv1.weight";
        assert_ne!(
            before[w].data, after1[w].data,
            "{kind}: epoch 1 did not train"
        );
        assert_eq!(
            after1[w].data, after2[w].data,
            "{kind}: lr 0 still moved the weights"
        );
    }
}

#[test]
fn gan_resume_matches_an_uninterrupted_run() {
    let gpu = gpu();
    let mut data = Bundled::Mnist.load().expect("bundled");
    data.truncate(24);
    core_gan::to_tanh_range(&mut data);
    let mut straight = Gan::new(&gpu, 0.25, 8, 3).expect("gan");
    let want = straight
        .run_epoch(&data, None, |_, _, _, _| {})
        .expect("run");
    let mut first = Gan::new(&gpu, 0.25, 8, 3).expect("gan");
    let part = first
        .run_epoch(&data, Some(1), |_, _, _, _| {})
        .expect("part");
    let c = Checkpoint::from_bytes(&first.checkpoint().expect("c").to_bytes().expect("b"), "m")
        .expect("parse");
    let mut resumed = Gan::from_checkpoint(&gpu, &c).expect("resume");
    let rest = resumed
        .run_epoch(&data, None, |_, _, _, _| {})
        .expect("rest");
    let d: Vec<f32> = part
        .d_losses
        .iter()
        .chain(&rest.d_losses)
        .copied()
        .collect();
    let g: Vec<f32> = part
        .g_losses
        .iter()
        .chain(&rest.g_losses)
        .copied()
        .collect();
    assert_close(&d, &want.d_losses, "D losses");
    assert_close(&g, &want.g_losses, "G losses");
    // Batch-norm running statistics and counters came along too.
    let a = nn::read_state_blocking(&straight.g).expect("state");
    let b = nn::read_state_blocking(&resumed.g).expect("state");
    assert!(a.contains_key("bn1.running_mean") && a.contains_key("bn1.num_batches_tracked"));
    for (k, v) in &a {
        assert_close(&v.data, &b[k].data, k);
    }
}

#[test]
fn a_wrong_or_corrupt_checkpoint_loads_nothing() {
    let gpu = gpu();
    let t = Classifier::new(&gpu, spec(), config("sgd")).expect("trainer");
    let good = t.checkpoint().expect("ckpt");

    // A tensor of the wrong shape: the error names it; the target model is untouched.
    let mut bad = good.clone();
    bad.tensors.insert(
        "model.fc1.weight".into(),
        HostTensor {
            shape: vec![2, 2],
            data: vec![0.0; 4],
        },
    );
    bad.tensors.insert(
        "model.conv1.bias".into(),
        HostTensor {
            shape: vec![10],
            data: vec![9.0; 10],
        },
    );
    let e = format!(
        "{:#}",
        Classifier::from_checkpoint(&gpu, &bad)
            .err()
            .expect("mismatch")
    );
    assert!(e.contains("fc1.weight") && e.contains("[2, 2]"), "{e}");
    let target = Classifier::new(&gpu, spec(), config("sgd")).expect("trainer");
    let before = nn::read_state_blocking(target.net.as_ref()).expect("state");
    assert!(nn::load_state(target.net.as_ref(), &bad.section("model"), true).is_err());
    let after = nn::read_state_blocking(target.net.as_ref()).expect("state");
    assert_eq!(before, after, "a failed load must not write anything");

    // A missing tensor and a broken optimizer entry are errors too.
    let mut missing = good.clone();
    missing.tensors.remove("model.conv2.weight");
    let e = format!(
        "{:#}",
        Classifier::from_checkpoint(&gpu, &missing)
            .err()
            .expect("missing")
    );
    assert!(
        e.contains("missing keys") && e.contains("conv2.weight"),
        "{e}"
    );
    let mut opt = good.clone();
    opt.tensors.insert(
        "optim.99.momentum_buffer".into(),
        HostTensor {
            shape: vec![1],
            data: vec![0.0],
        },
    );
    let e = format!(
        "{:#}",
        Classifier::from_checkpoint(&gpu, &opt)
            .err()
            .expect("optim")
    );
    assert!(e.contains("optimizer") && e.contains("99"), "{e}");

    // Truncated bytes.
    let bytes = good.to_bytes().expect("ser");
    let e = format!(
        "{:#}",
        Checkpoint::from_bytes(&bytes[..bytes.len() / 2], "half.safetensors")
            .expect_err("truncated")
    );
    assert!(e.contains("half.safetensors"), "{e}");
}
