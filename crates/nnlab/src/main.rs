//! `nnlab`: train and watch convolutional networks on your own GPU.
//!
//! This binary will host the egui app and hosts the headless subcommands: `info`, `train`,
//! `eval`, `classify`, `gan`, `bench`. Their implementations live in `nnlab::cli`.

use nnlab::{bench, cli};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nnlab",
    version,
    about = "Train and watch CNNs on your own GPU (WebGPU)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter nnlab uses and run a small kernel on it.
    Info,
    /// Train a classifier (progress bars, validation every epoch, metrics, checkpoints).
    Train(cli::TrainArgs),
    /// Accuracy and loss of a checkpoint on a dataset's validation/test split.
    Eval(cli::EvalArgs),
    /// Classify image files with a checkpoint (top-k with probabilities, or JSON).
    Classify(cli::ClassifyArgs),
    /// Train the 28x28 DCGAN, or write a PNG grid of samples from a checkpoint.
    Gan(cli::GanArgs),
    /// Measure training and inference images/s per model on random data.
    Bench {
        /// Models to measure (comma-separated): mnist-cnn, resnet14, dcgan.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "mnist-cnn,resnet14,dcgan"
        )]
        models: Vec<String>,
        /// Untimed steps first (pipeline compilation, pool warm-up).
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("nnlab: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => info(),
        Command::Train(a) => cli::train(a),
        Command::Eval(a) => cli::eval(a),
        Command::Classify(a) => cli::classify(a),
        Command::Gan(a) => cli::gan(a),
        Command::Bench {
            models,
            warmup,
            steps,
            json,
        } => bench_cmd(&models, warmup, steps, json),
    }
}

fn bench_cmd(models: &[String], warmup: usize, steps: usize, json: bool) -> Result<()> {
    anyhow::ensure!(steps > 0, "--steps must be at least 1");
    if let Some(m) = models.iter().find(|m| !bench::MODELS.contains(&m.as_str())) {
        anyhow::bail!("unknown model '{m}' (known: {})", bench::MODELS.join(", "));
    }
    let gpu = pollster::block_on(gpu_nn::Gpu::new()).context("no usable GPU")?;
    let a = gpu.adapter_info();
    let adapter = format!("{} ({:?})", a.name, a.backend);
    if !json {
        println!("adapter: {adapter}");
        println!(
            "{:<10} {:>6} {:>12} {:>6} {:>12}",
            "model", "batch", "train img/s", "batch", "infer img/s"
        );
    }
    let mut rows = Vec::new();
    for m in models {
        let r = bench::run_one(&gpu, m, warmup, steps)?;
        if !json {
            println!(
                "{:<10} {:>6} {:>12.1} {:>6} {:>12.1}",
                r.model, r.train_batch, r.train_img_s, r.infer_batch, r.infer_img_s
            );
        }
        rows.push(serde_json::json!({
            "model": r.model,
            "train_batch": r.train_batch,
            "train_img_per_s": r.train_img_s,
            "infer_batch": r.infer_batch,
            "infer_img_per_s": r.infer_img_s,
        }));
    }
    if json {
        let out = serde_json::json!({ "adapter": adapter, "steps": steps, "results": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

fn info() -> Result<()> {
    let gpu = pollster::block_on(gpu_nn::Gpu::new()).context("no usable GPU")?;
    let a = gpu.adapter_info();
    println!("adapter: {} ({:?}, {:?})", a.name, a.backend, a.device_type);
    println!("driver:  {} {}", a.driver, a.driver_info);
    println!(
        "max storage binding: {} MiB",
        gpu.max_binding_bytes() / (1024 * 1024)
    );
    let x = gpu_nn::Tensor::from_slice(&gpu, &[-1.0, 2.0, -3.0, 4.0], &[4])?;
    let y = x.relu()?.sum()?.item_blocking()?;
    anyhow::ensure!(y == 6.0, "self-test: relu-sum gave {y}, expected 6");
    println!("self-test: ok (relu + sum on the GPU)");
    Ok(())
}
