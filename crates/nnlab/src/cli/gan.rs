//! `nnlab gan`: trains the 28x28 DCGAN with checkpoints, and renders grids of samples.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use clap::Args;
use gpu_nn::Gpu;
use gpu_nn::nn::{self, Ctx};

use super::{LAST, bar, ensure_writable_dir, ensure_writable_file, gpu, load_classifier};
use crate::checkpoint::{Checkpoint, write_atomic};
use crate::core::gan as core_gan;
use crate::core::{DataSource, Gan};
use crate::data;
use crate::images;

/// `nnlab gan`.
#[derive(Args, Debug)]
pub struct GanArgs {
    /// Sample from this GAN checkpoint instead of training (with --out).
    #[arg(long, conflicts_with_all = ["checkpoint_dir", "resume"])]
    pub checkpoint: Option<PathBuf>,
    /// PNG grid of samples to write (after training, or from --checkpoint).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Number of samples in the grid.
    #[arg(long, default_value_t = 64)]
    pub samples: usize,
    /// Data to train on: mnist, fashion-mnist (bundled 9000-image demo split) or an IDX dir.
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// Epochs in total.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Images per step [default: 64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Width multiplier (1 = the full DCGAN, 0.25 = a light one for slow devices) [default: 1].
    #[arg(long)]
    pub width: Option<f32>,
    /// Seed of initialisation, shuffling and noise [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train on the first N images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Save `last.safetensors` here after every epoch.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from `last.safetensors` in --checkpoint-dir.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
    /// A classifier checkpoint for 1x28x28 images (e.g. a trained mnist-cnn): report how
    /// many of the grid's samples it classifies with at least 0.9 confidence.
    #[arg(long, requires = "out")]
    pub judge: Option<PathBuf>,
}

fn write_grid(
    gpu: &Gpu,
    g: &gpu_nn::models::Generator,
    n: usize,
    out: &Path,
    judge: Option<&Path>,
) -> Result<()> {
    ensure!(n > 0, "--samples must be at least 1");
    let s = core_gan::sample(gpu, g, n, 12345)?;
    let cols = (n as f64).sqrt().ceil() as usize;
    write_atomic(out, &images::grid_png(&s, n, 28, 28, cols)?)?;
    println!("wrote {} ({n} samples)", out.display());
    if let Some(j) = judge {
        let (net, spec) = load_classifier(gpu, j)?;
        ensure!(
            spec.input == [1, 28, 28],
            "{}: the judge must take 1x28x28 images, it takes {:?}",
            j.display(),
            spec.input
        );
        // Samples are in [-1, 1]; the classifier expects its own normalisation.
        let x: Vec<f32> = s
            .iter()
            .map(|v| ((v + 1.0) / 2.0 - spec.mean[0]) / spec.std[0])
            .collect();
        let probs = {
            let _g = gpu_nn::no_grad();
            let xt = gpu_nn::Tensor::from_slice(gpu, &x, &[n, 1, 28, 28])?;
            net.forward(&xt, &mut Ctx::eval())?.to_vec_blocking()?
        };
        let k = spec.classes();
        let mut confident = 0;
        let mut counts = vec![0usize; k];
        for l in probs.chunks(k) {
            let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = l.iter().map(|v| (v - max).exp()).sum();
            let (best, _) =
                l.iter().enumerate().fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            // The top class's probability is exp(0) / sum.
            if 1.0 / sum >= 0.9 {
                confident += 1;
                counts[best] += 1;
            }
        }
        let per_class: Vec<String> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| format!("{}: {c}", spec.class_names[i]))
            .collect();
        let detail = if per_class.is_empty() {
            String::new()
        } else {
            format!(" ({})", per_class.join(", "))
        };
        println!(
            "judge {}: {confident}/{n} samples ({:.0}%) classified with >= 0.9 confidence{detail}",
            spec.name,
            100.0 * confident as f64 / n as f64,
        );
    }
    Ok(())
}

/// Runs `nnlab gan`.
pub fn gan(a: GanArgs) -> Result<()> {
    // Output paths are checked before any work that would be lost.
    if let Some(out) = &a.out {
        ensure_writable_file(out, "--out")?;
    }
    if let Some(d) = &a.checkpoint_dir {
        ensure_writable_dir(d, "--checkpoint-dir")?;
    }
    let gpu = gpu()?;
    if let Some(ck) = &a.checkpoint {
        let out = a
            .out
            .as_ref()
            .context("--checkpoint samples from a GAN: give --out grid.png")?;
        let c = Checkpoint::load(ck)?;
        let g = core_gan::load_generator(&gpu, &c).with_context(|| format!("{}", ck.display()))?;
        return write_grid(&gpu, &g, a.samples, out, a.judge.as_deref());
    }
    ensure!(
        a.batch_size != Some(0) && a.epochs > 0,
        "--batch-size and --epochs must be positive"
    );
    let last = a.checkpoint_dir.as_ref().map(|d| d.join(LAST));
    let resume_from = last.as_ref().filter(|p| a.resume && p.is_file());
    if resume_from.is_some() {
        super::refuse_with_resume(&[
            ("--batch-size", a.batch_size.is_some()),
            ("--width", a.width.is_some()),
            ("--seed", a.seed.is_some()),
        ])?;
    }
    let mut t = match resume_from {
        Some(p) => {
            let t = Gan::from_checkpoint(&gpu, &Checkpoint::load(p)?)
                .with_context(|| format!("cannot resume from {}", p.display()))?;
            println!(
                "resuming from {}: epoch {}, step {}",
                p.display(),
                t.progress.epoch + 1,
                t.progress.step
            );
            t
        }
        None => Gan::new(
            &gpu,
            a.width.unwrap_or(1.0),
            a.batch_size.unwrap_or(64),
            a.seed.unwrap_or(1),
        )?,
    };
    t.data = Some(DataSource {
        name: a.data.clone(),
        limit: a.limit,
    });
    let mut d = data::load_data(&a.data, None)?;
    if let Some(n) = a.limit {
        ensure!(n > 0, "--limit must be positive");
        d.train.truncate(n);
    }
    ensure!(
        d.mean.len() == 1,
        "the DCGAN trains on grey 28x28 images; {} is not",
        a.data
    );
    let mut train_set = d.train;
    core_gan::to_tanh_range(&mut train_set);
    println!(
        "data: {}\nDCGAN (width {}): generator {} / discriminator {} parameters, {} images",
        d.description,
        t.width,
        nn::param_count(&t.g),
        nn::param_count(&t.d),
        train_set.len()
    );
    while t.progress.epoch < a.epochs {
        let e = t.progress.epoch;
        let pb = bar(0, format!("{}/{}", e + 1, a.epochs));
        let run = t.run_epoch(&train_set, None, |done, total, dl, gl| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
            pb.set_message(format!("D {dl:.3} G {gl:.3}"));
        })?;
        pb.finish_and_clear();
        let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
        println!(
            "epoch {}: D loss {:.4}  G loss {:.4}  {:.0} img/s",
            e + 1,
            mean(&run.d_losses),
            mean(&run.g_losses),
            run.img_s
        );
        if let Some(p) = &last {
            t.checkpoint()?.save(p)?;
            println!("saved {}", p.display());
        }
    }
    if let Some(out) = &a.out {
        write_grid(&gpu, &t.g, a.samples, out, a.judge.as_deref())?;
    }
    Ok(())
}
