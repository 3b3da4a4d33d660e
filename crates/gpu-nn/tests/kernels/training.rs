//! Whole training steps: one submission per step, flat memory, a falling loss.

use gpu_nn::init::SeedRng;
use gpu_nn::nn::{self, Activation, Conv2d, Ctx, Flatten, Linear, MaxPool2d, Module, Sequential};
use gpu_nn::ops::conv::Conv2dOpts;
use gpu_nn::ops::loss::cross_entropy;
use gpu_nn::ops::pool::MaxPool2dOpts;
use gpu_nn::optim::{Optimizer, Sgd, SgdConfig};
use gpu_nn::{Gpu, Tensor};

use crate::common::*;

fn small_cnn(gpu: &Gpu) -> Sequential {
    let mut rng = SeedRng::new(7);
    Sequential::new()
        .push(Conv2d::new(gpu, &mut rng, 1, 4, (3, 3), Conv2dOpts::default(), true).expect("conv"))
        .push(Activation::Relu)
        .push(MaxPool2d(MaxPool2dOpts::new(2)))
        .push(Flatten)
        .push(Linear::new(gpu, &mut rng, 4 * 4 * 4, 3, true).expect("fc"))
}

/// A tiny learnable task: the class is which third of the 10x10 image is bright.
fn batch(gpu: &Gpu, rng: &mut Rng, n: usize) -> (Tensor, Tensor) {
    let mut x = vec![0f32; n * 100];
    let mut y = vec![0f32; n];
    for i in 0..n {
        let class = (rng.next_u32() % 3) as usize;
        y[i] = class as f32;
        for r in 0..10 {
            for c in 0..10 {
                let bright = c * 3 / 10 == class;
                x[i * 100 + r * 10 + c] = if bright { 1.0 } else { 0.0 } + 0.3 * rng.uniform();
            }
        }
    }
    (
        Tensor::from_slice(gpu, &x, &[n, 1, 10, 10]).expect("x"),
        Tensor::from_slice(gpu, &y, &[n]).expect("y"),
    )
}

#[test]
fn training_steps_submit_once_keep_memory_flat_and_learn() {
    // Own device: the pool and submission counters must see this test alone.
    let gpu = fresh_gpu();
    let net = small_cnn(&gpu);
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let mut opt = Sgd::new(nn::parameters(&net), cfg).expect("sgd");
    let mut rng = Rng::new(11);
    let mut losses = Vec::new();
    let mut pending = std::collections::VecDeque::new();
    let mut allocated_after_warmup = 0;
    let steps = 300;
    for step in 0..steps {
        let (x, y) = batch(&gpu, &mut rng, 16);
        let before = gpu.submission_count();
        let logits = net.forward(&x, &mut Ctx::train(step)).expect("forward");
        let loss = cross_entropy(&logits, &y).expect("loss");
        let grads = loss.backward().expect("backward");
        opt.step(&grads).expect("step");
        // Starting the readback submits the step: exactly one command buffer.
        pending.push_back(loss.read().expect("readback"));
        assert_eq!(
            gpu.submission_count() - before,
            1,
            "step {step} submitted more than once"
        );
        // The loss arrives a step or two late; poll without blocking.
        while let Some(front) = pending.front_mut() {
            match front.try_take().expect("readback") {
                Some(v) => {
                    losses.push(v[0]);
                    pending.pop_front();
                }
                None if pending.len() > 2 => gpu.sync().expect("sync"),
                None => break,
            }
        }
        if step == 20 {
            let s = gpu.pool_stats();
            allocated_after_warmup = s.allocated_bytes - s.staging_bytes;
        }
    }
    gpu.sync().expect("sync");
    for mut r in pending {
        losses.push(r.try_take().expect("readback").expect("ready after sync")[0]);
    }
    assert_eq!(losses.len(), steps as usize);
    let stats = gpu.pool_stats();
    // Tensor memory is exactly flat; readback buffers are bounded by the pipeline depth
    // (at most three 4-byte losses in flight), however the timing falls.
    let tensor_bytes = stats.allocated_bytes - stats.staging_bytes;
    assert_eq!(
        tensor_bytes, allocated_after_warmup,
        "GPU memory grew after warm-up: {allocated_after_warmup} -> {tensor_bytes} bytes"
    );
    // Operand textures are pooled and counted in the flat total above. Where the device uses
    // them (lavapipe) the conv bias gradient and the conv and matmul kernels read from them;
    // elsewhere those kernels read the buffers and no texture is made.
    assert_eq!(
        stats.texture_bytes > 0,
        cpu_subgroup(&gpu).is_some_and(|(_, textures)| textures),
        "operand textures in the pool: {} bytes",
        stats.texture_bytes
    );
    assert!(
        stats.staging_bytes <= 3 * 4,
        "readback buffers grew past the pipeline depth: {} bytes",
        stats.staging_bytes
    );
    let first: f32 = losses[..20].iter().sum::<f32>() / 20.0;
    let last: f32 = losses[steps as usize - 20..].iter().sum::<f32>() / 20.0;
    assert!(losses.iter().all(|l| l.is_finite()), "non-finite loss");
    assert!(last < 0.5 * first, "loss did not fall: {first} -> {last}");
}
