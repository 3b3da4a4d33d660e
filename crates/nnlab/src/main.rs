//! `nnlab`: train and watch convolutional networks on your own GPU.
//!
//! This binary will host the egui app and hosts the headless subcommands: `info`, `train`,
//! `eval`, `classify`, `gan`, `bench`. Their implementations live in `nnlab::cli`.

use nnlab::cli;

use anyhow::Result;
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
    Bench(cli::BenchArgs),
}

fn main() {
    // `nnlab ... | head` closes stdout early: exit quietly, as a shell tool killed by
    // SIGPIPE would (status 141), instead of panicking in println!.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.to_string().contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    if let Err(e) = run(Cli::parse()) {
        eprintln!("nnlab: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => cli::info(),
        Command::Train(a) => cli::train(a),
        Command::Eval(a) => cli::eval(a),
        Command::Classify(a) => cli::classify(a),
        Command::Gan(a) => cli::gan(a),
        Command::Bench(a) => cli::bench(a),
    }
}
