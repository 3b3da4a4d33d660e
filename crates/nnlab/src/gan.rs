//! `nnlab gan`: trains the 28x28 DCGAN (BCE with logits, Adam 2e-4, betas 0.5/0.999) with
//! checkpoints, and renders grids of samples.
//!
//! As in `train`, everything random derives from (seed, step), so a resumed run continues
//! exactly: noise from `seed ^ step`, the shuffle of epoch `e` from `seed + e`.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use gpu_nn::init::SeedRng;
use gpu_nn::models::{Discriminator, Generator, LATENT};
use gpu_nn::nn::{self, Ctx, HostState, Module};
use gpu_nn::{Adam, AdamConfig, Gpu, Optimizer, Readback, Tensor, bce_with_logits, cat_channels};
use serde_json::json;

use crate::checkpoint::{self, Checkpoint};
use crate::data::Dataset;
use crate::train::{Progress, load_optimizer_state, read_optimizer_state};

/// DCGAN's Adam settings.
pub fn adam_config() -> AdamConfig {
    AdamConfig {
        lr: 2e-4,
        betas: (0.5, 0.999),
        ..AdamConfig::default()
    }
}

/// Renormalises a dataset normalised with (`mean`, `std`) to [-1, 1] (the generator's
/// tanh range): x' = (x * std + mean - 0.5) / 0.5.
pub fn to_tanh_range(d: &mut Dataset, mean: f32, std: f32) {
    for v in &mut d.images {
        *v = (*v * std + mean - 0.5) / 0.5;
    }
}

/// `n` latent vectors [n, LATENT] of standard normal noise from `seed`.
pub fn noise(gpu: &Gpu, n: usize, seed: u64) -> Result<Tensor> {
    let mut rng = SeedRng::new(seed);
    let v: Vec<f32> = (0..n * LATENT).map(|_| rng.normal()).collect();
    Ok(Tensor::from_slice(gpu, &v, &[n, LATENT])?)
}

/// Losses of one part of a GAN run.
#[derive(Clone, Debug, Default)]
pub struct GanRun {
    /// Discriminator loss of each step, in order.
    pub d_losses: Vec<f32>,
    /// Generator loss of each step.
    pub g_losses: Vec<f32>,
    /// Real images per second.
    pub img_s: f64,
    /// True when the epoch ended.
    pub finished: bool,
}

/// Generator, discriminator, their optimizers and where training stands.
pub struct GanTrainer {
    /// The generator.
    pub g: Generator,
    /// The discriminator.
    pub d: Discriminator,
    /// Width multiplier (1 = the full DCGAN, 0.25 a light one).
    pub width: f32,
    /// Images per step.
    pub batch: usize,
    /// Seed of initialisation, shuffling and noise.
    pub seed: u64,
    /// Where training stands.
    pub progress: Progress,
    opt_g: Adam,
    opt_d: Adam,
    gpu: Gpu,
}

impl GanTrainer {
    /// Fresh networks (seeds `seed` and `seed + 1`) and optimizers.
    pub fn new(gpu: &Gpu, width: f32, batch: usize, seed: u64) -> Result<GanTrainer> {
        ensure!(batch > 0, "the batch size must be positive");
        ensure!(
            width.is_finite() && width > 0.0 && width <= 4.0,
            "--width must be in (0, 4], got {width}"
        );
        let g = Generator::new(gpu, width, seed)?;
        let d = Discriminator::new(gpu, width, seed.wrapping_add(1))?;
        let opt_g = Adam::new(nn::parameters(&g), adam_config())?;
        let opt_d = Adam::new(nn::parameters(&d), adam_config())?;
        Ok(GanTrainer {
            g,
            d,
            width,
            batch,
            seed,
            progress: Progress::default(),
            opt_g,
            opt_d,
            gpu: gpu.clone(),
        })
    }

    /// Everything needed to continue, or to sample. Blocks.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut c = Checkpoint {
            meta: json!({
                "format": checkpoint::FORMAT,
                "version": checkpoint::VERSION,
                "kind": "gan",
                "gan": {"width": self.width, "latent": LATENT, "batch_size": self.batch,
                        "seed": self.seed},
                "progress": {"epoch": self.progress.epoch, "batch": self.progress.batch,
                             "step": self.progress.step},
            }),
            tensors: HostState::new(),
        };
        c.insert_section("generator", nn::read_state_blocking(&self.g)?);
        c.insert_section("discriminator", nn::read_state_blocking(&self.d)?);
        c.insert_section("optim_g", read_optimizer_state(&self.opt_g)?);
        c.insert_section("optim_d", read_optimizer_state(&self.opt_d)?);
        Ok(c)
    }

    /// Restores a run from a checkpoint; everything is checked before use.
    pub fn from_checkpoint(gpu: &Gpu, c: &Checkpoint) -> Result<GanTrainer> {
        let kind = c.meta_str(&["kind"])?;
        ensure!(kind == "gan", "this checkpoint holds a {kind}, not a GAN");
        let mut t = GanTrainer::new(
            gpu,
            c.meta_f64(&["gan", "width"])? as f32,
            c.meta_u64(&["gan", "batch_size"])? as usize,
            c.meta_u64(&["gan", "seed"])?,
        )?;
        nn::load_state(&t.g, &c.section("generator"), true).context("checkpoint's generator")?;
        nn::load_state(&t.d, &c.section("discriminator"), true)
            .context("checkpoint's discriminator")?;
        load_optimizer_state(&mut t.opt_g, &c.section("optim_g"))
            .context("checkpoint's generator optimizer")?;
        load_optimizer_state(&mut t.opt_d, &c.section("optim_d"))
            .context("checkpoint's discriminator optimizer")?;
        t.progress = Progress {
            epoch: c.meta_u64(&["progress", "epoch"])? as usize,
            batch: c.meta_u64(&["progress", "batch"])? as usize,
            step: c.meta_u64(&["progress", "step"])?,
        };
        Ok(t)
    }

    /// Trains on the rest of the current epoch of `data` (images in [-1, 1]), at most
    /// `max_steps` steps; one step = a discriminator step on real + fake images, then a
    /// generator step. `on_step(done, total, d_loss, g_loss)` after each.
    pub fn run_epoch(
        &mut self,
        data: &Dataset,
        max_steps: Option<usize>,
        mut on_step: impl FnMut(usize, usize, f32, f32),
    ) -> Result<GanRun> {
        ensure!(
            data.shape == [1, 28, 28],
            "the DCGAN trains on 1x28x28 images, the data has {:?}",
            data.shape
        );
        ensure!(!data.is_empty(), "no training images");
        let gpu = self.gpu.clone();
        let batches = data.batches(
            self.batch,
            Some(self.seed.wrapping_add(self.progress.epoch as u64)),
        );
        ensure!(
            self.progress.batch <= batches.len(),
            "the checkpoint is at batch {} of an epoch that has {} batches here",
            self.progress.batch,
            batches.len()
        );
        let end = max_steps.map_or(batches.len(), |m| {
            (self.progress.batch + m).min(batches.len())
        });
        let t0 = Instant::now();
        let mut run = GanRun::default();
        let mut seen = 0;
        let mut pending: VecDeque<Readback> = VecDeque::new();
        let take = |pending: &mut VecDeque<Readback>, run: &mut GanRun, all: bool| -> Result<()> {
            loop {
                let must_wait = all || pending.len() > 3;
                let Some(r) = pending.front_mut() else { break };
                if must_wait {
                    gpu.sync()?;
                }
                let Some(v) = r.try_take()? else { break };
                if !(v[0].is_finite() && v[1].is_finite()) {
                    bail!("the GAN losses became {v:?}: training diverged");
                }
                run.d_losses.push(v[0]);
                run.g_losses.push(v[1]);
                pending.pop_front();
            }
            Ok(())
        };
        for idx in &batches[self.progress.batch..end] {
            let step = self.progress.step;
            let n = idx.len();
            let (real, _) = data.batch(&gpu, idx)?;
            let z = noise(&gpu, n, self.seed ^ step.wrapping_mul(0x9E37_79B9) ^ 0x5EED)?;
            let ones = Tensor::full(&gpu, &[n, 1], 1.0)?;
            let zeros = Tensor::zeros(&gpu, &[n, 1])?;
            let s = self.seed ^ step;
            let fake = self.g.forward(&z, &mut Ctx::train(s))?;
            let d_real = self.d.forward(&real, &mut Ctx::train(s))?;
            let d_fake = self.d.forward(&fake.detach(), &mut Ctx::train(s))?;
            let loss_d =
                bce_with_logits(&d_real, &ones)?.add(&bce_with_logits(&d_fake, &zeros)?)?;
            self.opt_d.step(&loss_d.backward()?)?;
            let loss_g = bce_with_logits(&self.d.forward(&fake, &mut Ctx::train(s))?, &ones)?;
            self.opt_g.step(&loss_g.backward()?)?;
            let both = cat_channels(&[
                &loss_d.detach().reshape(&[1, 1])?,
                &loss_g.detach().reshape(&[1, 1])?,
            ])?;
            pending.push_back(both.read()?);
            take(&mut pending, &mut run, false)?;
            self.progress.step += 1;
            self.progress.batch += 1;
            seen += n;
            if let (Some(d), Some(g)) = (run.d_losses.last(), run.g_losses.last()) {
                on_step(self.progress.batch, batches.len(), *d, *g);
            }
        }
        take(&mut pending, &mut run, true)?;
        run.finished = self.progress.batch == batches.len();
        if run.finished {
            self.progress.epoch += 1;
            self.progress.batch = 0;
        }
        run.img_s = seen as f64 / t0.elapsed().as_secs_f64();
        Ok(run)
    }
}

/// Loads a checkpoint's generator (for sampling).
pub fn load_generator(gpu: &Gpu, c: &Checkpoint) -> Result<Generator> {
    let kind = c.meta_str(&["kind"])?;
    ensure!(kind == "gan", "this checkpoint holds a {kind}, not a GAN");
    let g = Generator::new(gpu, c.meta_f64(&["gan", "width"])? as f32, 0)?;
    nn::load_state(&g, &c.section("generator"), true).context("checkpoint's generator")?;
    Ok(g)
}

/// `n` samples [n, 1, 28, 28] in [-1, 1] from the generator in eval mode. Blocks.
pub fn sample(gpu: &Gpu, g: &Generator, n: usize, seed: u64) -> Result<Vec<f32>> {
    let _ng = gpu_nn::no_grad();
    let z = noise(gpu, n, seed)?;
    Ok(g.forward(&z, &mut Ctx::eval())?.to_vec_blocking()?)
}
