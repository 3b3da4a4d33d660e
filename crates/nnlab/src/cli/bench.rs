//! `nnlab bench`: training and inference images/s per model on random data, through the
//! same training core as `nnlab train` and the app (a step, its readback, the in-flight
//! limit), so it times what users run.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use gpu_nn::init::SeedRng;
use gpu_nn::{Gpu, KernelTime};

use super::gpu;
use crate::core::inflight::{GPU_IN_FLIGHT, InFlight};
use crate::core::{Classifier, Evaluation, Gan, ModelSpec, OptSettings, TrainConfig};
use crate::data::Dataset;
use crate::registry::{self, Input};

/// One measured model.
#[derive(Debug)]
pub struct BenchResult {
    /// Model name.
    pub model: String,
    /// Training batch size.
    pub train_batch: usize,
    /// Training images per second (forward, backward, optimizer step, loss readback).
    pub train_img_s: f64,
    /// Inference batch size.
    pub infer_batch: usize,
    /// Inference images per second (eval mode, no graph; the loss and count read back).
    pub infer_img_s: f64,
    /// Time per kernel over the timed training steps, on a profiling device
    /// ([`Gpu::with_profiling`]); empty otherwise.
    pub train_kernels: Vec<KernelTime>,
}

/// Training and inference batch sizes `bench` uses per model.
fn batches(name: &str, input: Input) -> (usize, usize) {
    match (name, input) {
        ("mnist-cnn", _) => (64, 256),
        ("dcgan", _) => (64, 64),
        (_, Input::ImageNet) => (32, 64),
        _ => (32, 128),
    }
}

/// `n` random images of `shape` in [-1, 1] with random labels.
fn random_set(rng: &mut SeedRng, n: usize, shape: [usize; 3], classes: usize) -> Dataset {
    let per: usize = shape.iter().product();
    let c = shape[0];
    Dataset {
        pixels: (0..n * per).map(|_| rng.below(256) as u8).collect(),
        labels: (0..n).map(|_| rng.below(classes) as u8).collect(),
        ..Dataset::empty(shape, classes, vec![0.5; c], vec![0.5; c])
    }
}

/// Runs `submit` `warmup` times, then `steps` times timed, with at most three readbacks in
/// flight as in training; returns steps per second. A profiling device's kernel times
/// cover the timed steps only.
fn timed(
    gpu: &Gpu,
    warmup: usize,
    steps: usize,
    mut submit: impl FnMut(&mut InFlight) -> Result<()>,
) -> Result<f64> {
    let mut inflight = InFlight::new(GPU_IN_FLIGHT, "loss");
    for _ in 0..warmup {
        inflight.make_room()?;
        submit(&mut inflight)?;
    }
    inflight.drain_blocking()?;
    gpu.sync()?;
    gpu.reset_kernel_times();
    let t = Instant::now();
    for _ in 0..steps {
        inflight.make_room()?;
        submit(&mut inflight)?;
    }
    inflight.drain_blocking()?;
    Ok(steps as f64 / t.elapsed().as_secs_f64())
}

fn classifier(
    gpu: &Gpu,
    info: &registry::ModelInfo,
    (warmup, steps): (usize, usize),
) -> Result<BenchResult> {
    let (tb, ib) = batches(info.name, info.input);
    let shape = info.input.default_shape();
    // 256 classes at most: labels are bytes.
    let classes = info.default_classes().min(256);
    let mut rng = SeedRng::new(1);
    let train = random_set(&mut rng, 2 * tb, shape, classes);
    let spec = ModelSpec {
        name: info.name.to_string(),
        input: shape,
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        mean: vec![0.0; shape[0]],
        std: vec![1.0; shape[0]],
        finetune: false,
        variant: Default::default(),
    };
    let config = TrainConfig {
        batch: tb,
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
    let mut c = Classifier::new(gpu, spec, config)?;
    let train_s = timed(gpu, warmup, steps, |q| c.submit(&train, q, 1))?;
    let train_kernels = gpu.kernel_times();
    let infer = random_set(&mut rng, ib, shape, classes);
    let mut evals = std::collections::VecDeque::new();
    let infer_s = timed(gpu, warmup, steps, |_| {
        if evals.len() >= GPU_IN_FLIGHT
            && let Some(e) = evals.pop_front()
        {
            Evaluation::wait_blocking(e)?;
        }
        evals.push_back(Evaluation::start(gpu, c.net.as_ref(), &infer, ib, 0)?);
        Ok(())
    })?;
    for e in evals {
        e.wait_blocking()?;
    }
    Ok(BenchResult {
        model: info.name.to_string(),
        train_batch: tb,
        train_img_s: train_s * tb as f64,
        infer_batch: ib,
        infer_img_s: infer_s * ib as f64,
        train_kernels,
    })
}

fn dcgan(gpu: &Gpu, (warmup, steps): (usize, usize)) -> Result<BenchResult> {
    let (batch, _) = batches("dcgan", Input::Mnist);
    let mut rng = SeedRng::new(3);
    let real = random_set(&mut rng, 2 * batch, [1, 28, 28], 1);
    let mut g = Gan::new(gpu, 1.0, batch, 1)?;
    let iters = timed(gpu, warmup, steps, |q| g.submit(&real, q, 1))?;
    let train_kernels = gpu.kernel_times();
    let z = crate::core::gan::noise(gpu, batch, 7)?;
    let infer = timed(gpu, warmup, steps, |_| {
        g.sample(&z)?;
        gpu.flush()?;
        Ok(())
    })?;
    gpu.sync()?;
    Ok(BenchResult {
        model: "dcgan".into(),
        train_batch: batch,
        train_img_s: iters * batch as f64,
        infer_batch: batch,
        infer_img_s: infer * batch as f64,
        train_kernels,
    })
}

/// Benchmarks one registry model by name.
pub fn run_one(gpu: &Gpu, name: &str, warmup: usize, steps: usize) -> Result<BenchResult> {
    let info = registry::find(name)?;
    let ws = (warmup, steps);
    if info.is_classifier() {
        classifier(gpu, info, ws)
    } else {
        dcgan(gpu, ws)
    }
    .with_context(|| format!("benchmarking {name}"))
}

/// `nnlab bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Models to measure (comma-separated; `nnlab models` lists them). The torchvision
    /// layouts (224x224, e.g. resnet18) are for GPUs: minutes per step on a CPU driver.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mnist-cnn,resnet14,dcgan"
    )]
    pub models: Vec<String>,
    /// Untimed steps first (pipeline compilation, pool warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also show where a training step's time goes, per kernel (the slowest first). Each
    /// kernel then runs on its own, so the img/s figures of a profiled run are lower.
    #[arg(long)]
    pub profile: bool,
    /// Kernels listed per model with --profile.
    #[arg(long, default_value_t = 12)]
    pub top: usize,
}

/// Per-step milliseconds and share of each of the `top` slowest kernels.
fn kernel_rows(k: &[gpu_nn::KernelTime], steps: usize, top: usize) -> Vec<(String, f64, f64, f64)> {
    let total: f64 = k.iter().map(|t| t.seconds).sum();
    k.iter()
        .take(top)
        .map(|t| {
            (
                t.entry.to_string(),
                t.calls as f64 / steps as f64,
                t.seconds * 1e3 / steps as f64,
                if total > 0.0 { t.seconds / total } else { 0.0 },
            )
        })
        .collect()
}

/// Runs `nnlab bench`.
pub fn bench(a: BenchArgs) -> Result<()> {
    let BenchArgs {
        models,
        warmup,
        steps,
        json,
        profile,
        top,
    } = a;
    anyhow::ensure!(steps > 0, "--steps must be at least 1");
    for m in &models {
        registry::find(m)?;
    }
    let gpu = if profile {
        gpu()?.with_profiling()?
    } else {
        gpu()?
    };
    let a = gpu.adapter_info();
    let adapter = format!("{} ({:?})", a.name, a.backend);
    if !json {
        println!("adapter: {adapter}");
        if profile {
            println!("profiling: every kernel waits for the previous one (lower img/s)");
        }
        println!(
            "{:<10} {:>6} {:>12} {:>6} {:>12}",
            "model", "batch", "train img/s", "batch", "infer img/s"
        );
    }
    let mut rows = Vec::new();
    for m in &models {
        let r = run_one(&gpu, m, warmup, steps)?;
        if !json {
            println!(
                "{:<10} {:>6} {:>12.1} {:>6} {:>12.1}",
                r.model, r.train_batch, r.train_img_s, r.infer_batch, r.infer_img_s
            );
        }
        let kernels = kernel_rows(&r.train_kernels, steps, top);
        if !json && profile {
            println!(
                "  {:<32} {:>9} {:>9} {:>6}",
                "kernel", "calls/step", "ms/step", "share"
            );
            for (entry, calls, ms, share) in &kernels {
                println!(
                    "  {entry:<32} {calls:>9.1} {ms:>9.2} {:>5.1}%",
                    100.0 * share
                );
            }
        }
        let mut row = serde_json::json!({
            "model": r.model,
            "train_batch": r.train_batch,
            "train_img_per_s": r.train_img_s,
            "infer_batch": r.infer_batch,
            "infer_img_per_s": r.infer_img_s,
        });
        if profile {
            row["train_kernels"] = kernels
                .iter()
                .map(|(entry, calls, ms, share)| {
                    serde_json::json!({
                        "entry": entry, "calls_per_step": calls, "ms_per_step": ms, "share": share,
                    })
                })
                .collect();
        }
        rows.push(row);
    }
    if json {
        let out = serde_json::json!({ "adapter": adapter, "steps": steps, "results": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
