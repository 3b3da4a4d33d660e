//! A long run: 10,000 steps of a small network with an evaluation every 500 steps and an
//! epoch whose last batch is short. After warm-up, the pool's bytes, its staging (readback)
//! bytes and the process's resident memory stay flat.
//!
//! Tolerance: the pool's buffers other than staging must not grow at all after warm-up
//! (every buffer a step needs comes back from the free lists); staging buffers stay within
//! one per readback that can be out at once: three bursts of ten steps (80 bytes each) and
//! an evaluation (8 bytes); resident memory may grow by 5% or 8 MiB, whichever is
//! larger (allocator noise, driver caches).

use gpu_nn::init::SeedRng;
use gpu_nn::nn::{Activation, BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Sequential};
use gpu_nn::{Conv2dOpts, Gpu, MaxPool2dOpts};
use nnlab::core::eval::evaluate;
use nnlab::core::inflight::{GPU_IN_FLIGHT, InFlight};
use nnlab::core::{Classifier, ModelSpec, OptSettings, TrainConfig};
use nnlab::data::Bundled;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// conv 3x3 (4 channels) -> batch norm -> relu -> max pool -> dropout -> linear: every kind
/// of state a step touches (parameters, running statistics, dropout masks), cheaply.
fn small_net(gpu: &Gpu) -> Sequential {
    let mut rng = SeedRng::new(1);
    Sequential::new()
        .push(Conv2d::new(gpu, &mut rng, 1, 4, (3, 3), Conv2dOpts::default(), true).expect("conv"))
        .push(BatchNorm::new(gpu, 4).expect("bn"))
        .push(Activation::Relu)
        .push(MaxPool2d(MaxPool2dOpts::new(2)))
        .push(Dropout {
            p: 0.2,
            channels: false,
        })
        .push(Flatten)
        .push(Linear::new(gpu, &mut rng, 4 * 13 * 13, 10, true).expect("linear"))
}

#[test]
fn ten_thousand_steps_keep_memory_flat() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe on CI)");
    let mut train = Bundled::Mnist.load().expect("bundled");
    let val = train.split_off(20);
    // 50 images at batch 4: 12 full batches and a short one of 2 per epoch.
    train.truncate(50);
    let (m, s) = Bundled::Mnist.normalisation();
    let spec = ModelSpec {
        name: "mnist-cnn".into(),
        input: [1, 28, 28],
        class_names: (0..10).map(|c| c.to_string()).collect(),
        mean: vec![m],
        std: vec![s],
        finetune: false,
        variant: Default::default(),
    };
    let config = TrainConfig {
        batch: 4,
        seed: 1,
        opt: OptSettings {
            kind: "sgd".into(),
            lr: 0.01,
            momentum: 0.5,
            weight_decay: 0.0,
            cosine_epochs: None,
        },
        augment: None,
    };
    let mut c =
        Classifier::with_net(&gpu, Box::new(small_net(&gpu)), spec, config).expect("classifier");
    let mut q = InFlight::new(GPU_IN_FLIGHT, "loss");
    let t0 = std::time::Instant::now();
    let mut rows = Vec::new();
    // Bursts of 10 steps per readback, as the app submits them on a CPU adapter.
    for step in (10..=10_000u64).step_by(10) {
        q.make_room().expect("results");
        c.submit(&train, &mut q, 10).expect("steps");
        if step % 500 == 0 {
            let r = evaluate(&gpu, c.net.as_ref(), &val, 250).expect("evaluation");
            assert!(r.loss.is_finite());
        }
        if step % 1000 == 0 {
            q.drain_blocking().expect("results");
            let p = gpu.pool_stats();
            rows.push((step, p.allocated_bytes, p.staging_bytes, resident_bytes()));
        }
    }
    println!(
        "soak: 10000 steps in {:.1} s ({} epochs)",
        t0.elapsed().as_secs_f64(),
        c.progress.epoch
    );
    println!(
        "{:>6} {:>12} {:>10} {:>12}",
        "step", "pool", "staging", "resident"
    );
    for (step, pool, staging, rss) in &rows {
        println!("{step:>6} {pool:>12} {staging:>10} {rss:>12}");
    }
    // Warm-up: the first thousand steps (every shape seen, every pipeline made).
    let (_, pool0, staging0, rss0) = rows[0];
    let bound = GPU_IN_FLIGHT as u64 * 80 + 8;
    for &(step, pool, staging, rss) in &rows[1..] {
        assert_eq!(
            pool - staging,
            pool0 - staging0,
            "pool bytes at step {step}"
        );
        assert!(
            staging <= bound,
            "staging bytes at step {step}: {staging} > {bound}"
        );
        let slack = (rss0 / 20).max(8 << 20);
        assert!(
            rss <= rss0 + slack,
            "resident memory grew from {rss0} to {rss} bytes by step {step}"
        );
    }
}
