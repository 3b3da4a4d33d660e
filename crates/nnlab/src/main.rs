//! `nnlab`: train and watch convolutional networks on your own GPU.
//!
//! This binary will host the egui app and the headless subcommands. For now it offers
//! `nnlab info`, which finds the GPU and proves that kernels run on it.

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
    }
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
