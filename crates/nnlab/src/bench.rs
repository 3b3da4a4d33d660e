//! `nnlab bench`: training and inference throughput per model on random data.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use gpu_nn::init::SeedRng;
use gpu_nn::models::{Discriminator, Generator, LATENT, MnistCnn, ResNet, ResNetConfig};
use gpu_nn::nn::{self, Ctx, Module};
use gpu_nn::{
    Adam, AdamConfig, Gpu, KernelTime, Optimizer, Sgd, SgdConfig, Tensor, bce_with_logits,
};

/// One measured model.
#[derive(Debug)]
pub struct BenchResult {
    /// Model name.
    pub model: String,
    /// Training batch size.
    pub train_batch: usize,
    /// Training images per second (forward, backward, optimizer step).
    pub train_img_s: f64,
    /// Inference batch size.
    pub infer_batch: usize,
    /// Inference images per second (eval mode, no graph).
    pub infer_img_s: f64,
    /// Time per kernel over the timed training steps, on a profiling device
    /// ([`Gpu::with_profiling`]); empty otherwise.
    pub train_kernels: Vec<KernelTime>,
}

/// Models `bench` knows. `resnet18` (torchvision's ImageNet layout at 224x224, the
/// transfer-learning backbone) is for GPUs: on a CPU driver one step takes minutes.
pub const MODELS: &[&str] = &["mnist-cnn", "resnet14", "dcgan", "resnet18"];

fn random(gpu: &Gpu, rng: &mut SeedRng, shape: &[usize]) -> Result<Tensor> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    Ok(Tensor::from_slice(gpu, &v, shape)?)
}

fn labels(gpu: &Gpu, rng: &mut SeedRng, n: usize, classes: usize) -> Result<Tensor> {
    let v: Vec<f32> = (0..n).map(|_| rng.below(classes) as f32).collect();
    Ok(Tensor::from_slice(gpu, &v, &[n])?)
}

/// Runs `step` `warmup` times, then `steps` times timed; returns steps per second. A
/// profiling device's kernel times cover the timed steps only.
fn timed(
    gpu: &Gpu,
    warmup: usize,
    steps: usize,
    mut step: impl FnMut(u64) -> Result<()>,
) -> Result<f64> {
    for i in 0..warmup {
        step(i as u64)?;
    }
    gpu.sync()?;
    gpu.reset_kernel_times();
    let t = Instant::now();
    for i in 0..steps {
        step((warmup + i) as u64)?;
    }
    gpu.sync()?;
    Ok(steps as f64 / t.elapsed().as_secs_f64())
}

/// Trains and runs a classifier on random data.
fn classifier(
    gpu: &Gpu,
    name: &str,
    net: &dyn Module,
    input: &[usize],
    classes: usize,
    (tb, ib): (usize, usize),
    (warmup, steps): (usize, usize),
) -> Result<BenchResult> {
    let mut rng = SeedRng::new(1);
    let cfg = SgdConfig {
        lr: 0.01,
        momentum: 0.5,
        ..SgdConfig::default()
    };
    let mut opt = Sgd::new(nn::parameters(net), cfg)?;
    let mut shape = vec![tb];
    shape.extend_from_slice(input);
    let x = random(gpu, &mut rng, &shape)?;
    let y = labels(gpu, &mut rng, tb, classes)?;
    let train = timed(gpu, warmup, steps, |i| {
        let logits = net.forward(&x, &mut Ctx::train(i))?;
        let loss = gpu_nn::cross_entropy(&logits, &y)?;
        let g = loss.backward()?;
        opt.step(&g)?;
        gpu.flush()?;
        Ok(())
    })?;
    let train_kernels = gpu.kernel_times();
    shape[0] = ib;
    let xi = random(gpu, &mut rng, &shape)?;
    let infer = timed(gpu, warmup, steps, |_| {
        let _g = gpu_nn::no_grad();
        net.forward(&xi, &mut Ctx::eval())?;
        gpu.flush()?;
        Ok(())
    })?;
    Ok(BenchResult {
        model: name.to_string(),
        train_batch: tb,
        train_img_s: train * tb as f64,
        infer_batch: ib,
        infer_img_s: infer * ib as f64,
        train_kernels,
    })
}

fn dcgan(gpu: &Gpu, batch: usize, (warmup, steps): (usize, usize)) -> Result<BenchResult> {
    let g = Generator::new(gpu, 1.0, 1)?;
    let d = Discriminator::new(gpu, 1.0, 2)?;
    let cfg = AdamConfig {
        lr: 2e-4,
        betas: (0.5, 0.999),
        ..AdamConfig::default()
    };
    let mut opt_g = Adam::new(nn::parameters(&g), cfg)?;
    let mut opt_d = Adam::new(nn::parameters(&d), cfg)?;
    let mut rng = SeedRng::new(3);
    let real = random(gpu, &mut rng, &[batch, 1, 28, 28])?;
    let z = random(gpu, &mut rng, &[batch, LATENT])?;
    let ones = Tensor::full(gpu, &[batch, 1], 1.0)?;
    let zeros = Tensor::zeros(gpu, &[batch, 1])?;
    // One iteration = a discriminator step on real + fake, then a generator step.
    let iters = timed(gpu, warmup, steps, |i| {
        let fake = g.forward(&z, &mut Ctx::train(i))?;
        let d_real = d.forward(&real, &mut Ctx::train(i))?;
        let d_fake = d.forward(&fake.detach(), &mut Ctx::train(i))?;
        let loss_d = bce_with_logits(&d_real, &ones)?.add(&bce_with_logits(&d_fake, &zeros)?)?;
        opt_d.step(&loss_d.backward()?)?;
        let loss_g = bce_with_logits(&d.forward(&fake, &mut Ctx::train(i))?, &ones)?;
        opt_g.step(&loss_g.backward()?)?;
        gpu.flush()?;
        Ok(())
    })?;
    let train_kernels = gpu.kernel_times();
    let infer = timed(gpu, warmup, steps, |_| {
        let _g = gpu_nn::no_grad();
        g.forward(&z, &mut Ctx::eval())?;
        gpu.flush()?;
        Ok(())
    })?;
    Ok(BenchResult {
        model: "dcgan".into(),
        train_batch: batch,
        train_img_s: iters * batch as f64,
        infer_batch: batch,
        infer_img_s: infer * batch as f64,
        train_kernels,
    })
}

/// Benchmarks one model by name.
pub fn run_one(gpu: &Gpu, name: &str, warmup: usize, steps: usize) -> Result<BenchResult> {
    let ws = (warmup, steps);
    match name {
        "mnist-cnn" => {
            let net = MnistCnn::new(gpu, 1)?;
            classifier(gpu, name, &net, &[1, 28, 28], 10, (64, 256), ws)
        }
        "resnet14" => {
            let cfg = ResNetConfig::cifar(14, 3, 10)?;
            let net = ResNet::new(gpu, cfg, 1)?;
            classifier(gpu, name, &net, &[3, 32, 32], 10, (32, 128), ws)
        }
        "dcgan" => dcgan(gpu, 64, ws),
        "resnet18" => {
            let net = ResNet::new(gpu, ResNetConfig::resnet18(1000), 1)?;
            classifier(gpu, name, &net, &[3, 224, 224], 1000, (32, 64), ws)
        }
        other => bail!("unknown model '{other}' (known: {})", MODELS.join(", ")),
    }
    .with_context(|| format!("benchmarking {name}"))
}
