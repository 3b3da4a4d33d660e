//! The 28x28 DCGAN in training (BCE with logits, Adam 2e-4, betas 0.5/0.999), stepping
//! through epochs of real images in [-1, 1]. `nnlab gan` and the app's GAN runs both use it.
//!
//! As for classifiers, everything random derives from (seed, step), so a resumed run
//! continues exactly: noise from `seed ^ step`, the shuffle of epoch `e` from `seed + e`.

use anyhow::{Context, Result, ensure};
use gpu_nn::init::SeedRng;
use gpu_nn::models::{Discriminator, Generator, LATENT};
use gpu_nn::nn::{self, Ctx, Module};
use gpu_nn::{Adam, AdamConfig, Gpu, Tensor, cat_channels};
use serde_json::json;

use super::inflight::InFlight;
use super::snapshot::PendingCheckpoint;
use super::spec::{DataSource, Progress, load_optimizer, read_optimizer};
use super::step::{GanNets, gan_iteration};
use crate::checkpoint::{self, Checkpoint};
use crate::data::Dataset;
use crate::registry;

/// DCGAN's Adam settings.
pub fn adam_config() -> AdamConfig {
    AdamConfig {
        lr: 2e-4,
        betas: (0.5, 0.999),
        ..AdamConfig::default()
    }
}

/// Makes a dataset's batches come in [-1, 1] (the generator's tanh range): normalised
/// with mean 0.5 and standard deviation 0.5 per channel.
pub fn to_tanh_range(d: &mut Dataset) {
    d.mean = vec![0.5; d.shape[0]];
    d.std = vec![0.5; d.shape[0]];
}

/// `n` latent vectors [n, LATENT] of standard normal noise from `seed`.
pub fn noise(gpu: &Gpu, n: usize, seed: u64) -> Result<Tensor> {
    let mut rng = SeedRng::new(seed);
    let v: Vec<f32> = (0..n * LATENT).map(|_| rng.normal()).collect();
    Ok(Tensor::from_slice(gpu, &v, &[n, LATENT])?)
}

/// Generator, discriminator, their optimizers and where training stands.
pub struct Gan {
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
    /// The data it trains on, as the CLI names it (stored in checkpoints).
    pub data: Option<DataSource>,
    opt_g: Adam,
    opt_d: Adam,
    gpu: Gpu,
    /// Targets of a full batch (ones for real, zeros for fake), made once.
    targets: Option<(usize, Tensor, Tensor)>,
    order: Option<(usize, usize, Vec<Vec<usize>>)>,
}

impl Gan {
    /// Fresh networks (seeds `seed` and `seed + 1`) and optimizers.
    pub fn new(gpu: &Gpu, width: f32, batch: usize, seed: u64) -> Result<Gan> {
        ensure!(batch > 0, "the batch size must be positive");
        let (g, d) = registry::find("dcgan")?.build_gan(gpu, width, seed)?;
        let opt_g = Adam::new(nn::parameters(&g), adam_config())?;
        let opt_d = Adam::new(nn::parameters(&d), adam_config())?;
        Ok(Gan {
            g,
            d,
            width,
            batch,
            seed,
            progress: Progress::default(),
            data: None,
            opt_g,
            opt_d,
            gpu: gpu.clone(),
            targets: None,
            order: None,
        })
    }

    /// Everything needed to continue, or to sample; never blocks.
    pub fn start_checkpoint(&self) -> Result<PendingCheckpoint> {
        let meta = json!({
            "format": checkpoint::FORMAT,
            "version": checkpoint::VERSION,
            "kind": "gan",
            "gan": {"width": self.width, "latent": LATENT, "batch_size": self.batch,
                    "seed": self.seed, "data": self.data.as_ref().map(|d| &d.name),
                    "limit": self.data.as_ref().and_then(|d| d.limit)},
            "progress": self.progress.to_json(),
        });
        Ok(PendingCheckpoint::new(
            meta,
            vec![
                ("generator", nn::read_state(&self.g)?),
                ("discriminator", nn::read_state(&self.d)?),
                ("optim_g", read_optimizer(&self.opt_g)?),
                ("optim_d", read_optimizer(&self.opt_d)?),
            ],
        ))
    }

    /// [`Gan::start_checkpoint`], waiting for it. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        self.start_checkpoint()?.wait_blocking()
    }

    /// Restores a run from a checkpoint; everything is checked before use.
    pub fn from_checkpoint(gpu: &Gpu, c: &Checkpoint) -> Result<Gan> {
        let kind = c.meta_str(&["kind"])?;
        ensure!(kind == "gan", "this checkpoint holds a {kind}, not a GAN");
        let mut t = Gan::new(
            gpu,
            c.meta_f64(&["gan", "width"])? as f32,
            c.meta_u64(&["gan", "batch_size"])? as usize,
            c.meta_u64(&["gan", "seed"])?,
        )?;
        nn::load_state(&t.g, &c.section("generator"), true).context("checkpoint's generator")?;
        nn::load_state(&t.d, &c.section("discriminator"), true)
            .context("checkpoint's discriminator")?;
        load_optimizer(&mut t.opt_g, &c.section("optim_g"))
            .context("checkpoint's generator optimizer")?;
        load_optimizer(&mut t.opt_d, &c.section("optim_d"))
            .context("checkpoint's discriminator optimizer")?;
        t.progress = Progress::from_checkpoint(c)?;
        t.data = c.meta.get("gan").and_then(|g| {
            Some(DataSource {
                name: g.get("data")?.as_str()?.to_string(),
                limit: g.get("limit").and_then(|l| l.as_u64()).map(|l| l as usize),
            })
        });
        Ok(t)
    }

    /// Batches per epoch of `data`.
    pub fn epoch_len(&self, data: &Dataset) -> usize {
        data.len().div_ceil(self.batch)
    }

    fn next_batch(&mut self, data: &Dataset) -> Result<Vec<usize>> {
        let epoch = self.progress.epoch;
        let fresh = matches!(&self.order, Some((e, n, _)) if *e == epoch && *n == data.len());
        if !fresh {
            let b = data.batches(self.batch, Some(self.seed.wrapping_add(epoch as u64)));
            self.order = Some((epoch, data.len(), b));
        }
        let batches = self
            .order
            .as_ref()
            .map(|(_, _, b)| b.as_slice())
            .unwrap_or(&[]);
        batches.get(self.progress.batch).cloned().with_context(|| {
            format!(
                "the checkpoint is at batch {} of an epoch that has {} batches here",
                self.progress.batch,
                batches.len()
            )
        })
    }

    fn targets(&mut self, n: usize) -> Result<(Tensor, Tensor)> {
        if let Some((m, ones, zeros)) = &self.targets
            && *m == n
        {
            return Ok((ones.clone(), zeros.clone()));
        }
        let ones = Tensor::full(&self.gpu, &[n, 1], 1.0)?;
        let zeros = Tensor::zeros(&self.gpu, &[n, 1])?;
        if n == self.batch {
            self.targets = Some((n, ones.clone(), zeros.clone()));
        }
        Ok((ones, zeros))
    }

    /// Records one iteration on the next batch of `data` (1x28x28 in [-1, 1]) without
    /// submitting it; returns its (D loss, G loss) pair and (step number, images).
    pub fn record_step(&mut self, data: &Dataset) -> Result<(Tensor, (u64, usize))> {
        ensure!(
            data.shape == [1, 28, 28],
            "the DCGAN trains on 1x28x28 images, the data has {:?}",
            data.shape
        );
        ensure!(!data.is_empty(), "no training images");
        let idx = self.next_batch(data)?;
        let step = self.progress.step;
        let n = idx.len();
        let (real, _) = data.batch(&self.gpu, &idx)?;
        let z = noise(
            &self.gpu,
            n,
            self.seed ^ step.wrapping_mul(0x9E37_79B9) ^ 0x5EED,
        )?;
        let (ones, zeros) = self.targets(n)?;
        let nets = GanNets {
            g: &self.g,
            d: &self.d,
            opt_g: &mut self.opt_g,
            opt_d: &mut self.opt_d,
        };
        let pair = gan_iteration(nets, &real, &z, (&ones, &zeros), self.seed ^ step)?;
        self.progress.step += 1;
        self.progress.batch += 1;
        if self.progress.batch >= self.epoch_len(data) {
            self.progress.epoch += 1;
            self.progress.batch = 0;
        }
        Ok((pair, (self.progress.step, n)))
    }

    /// Records and submits `k` iterations whose losses come back in one readback.
    pub fn submit(&mut self, data: &Dataset, inflight: &mut InFlight, k: usize) -> Result<()> {
        let mut pairs = Vec::with_capacity(k);
        let mut steps = Vec::with_capacity(k);
        for i in 0..k {
            let (pair, s) = self.record_step(data)?;
            pairs.push(pair);
            steps.push(s);
            if i + 1 < k {
                self.gpu.flush()?;
            }
        }
        if pairs.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Tensor> = pairs.iter().collect();
        inflight.push(cat_channels(&refs)?.read()?, steps);
        Ok(())
    }

    /// Samples [n, 1, 28, 28] in [-1, 1] from `z` in eval mode, recorded, not submitted.
    pub fn sample(&self, z: &Tensor) -> Result<Tensor> {
        let _g = gpu_nn::no_grad();
        Ok(self.g.forward(z, &mut Ctx::eval())?)
    }

    /// Trains on the rest of the current epoch (at most `max_steps` steps), calling
    /// `on_step(done, total, d_loss, g_loss)` as losses come back. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_epoch(
        &mut self,
        data: &Dataset,
        max_steps: Option<usize>,
        mut on_step: impl FnMut(usize, usize, f32, f32),
    ) -> Result<GanRun> {
        let total = self.epoch_len(data);
        let epoch = self.progress.epoch;
        let t0 = web_time::Instant::now();
        let mut run = GanRun::default();
        let mut inflight = InFlight::new(super::inflight::GPU_IN_FLIGHT, "GAN losses");
        let mut taken = 0;
        let mut images = 0;
        let mut add = |run: &mut GanRun, back: Vec<super::inflight::StepResult>| {
            for r in back {
                run.d_losses.push(r.values[0]);
                run.g_losses.push(r.values[1]);
                images += r.images;
            }
        };
        while self.progress.epoch == epoch && max_steps.is_none_or(|m| taken < m) {
            add(&mut run, inflight.make_room()?);
            self.submit(data, &mut inflight, 1)?;
            taken += 1;
            if let (Some(d), Some(g)) = (run.d_losses.last(), run.g_losses.last()) {
                let done = if self.progress.epoch == epoch {
                    self.progress.batch
                } else {
                    total
                };
                on_step(done, total, *d, *g);
            }
        }
        add(&mut run, inflight.drain_blocking()?);
        run.finished = self.progress.epoch != epoch;
        run.img_s = images as f64 / t0.elapsed().as_secs_f64();
        Ok(run)
    }
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

/// Loads a checkpoint's generator (for sampling).
pub fn load_generator(gpu: &Gpu, c: &Checkpoint) -> Result<Generator> {
    let kind = c.meta_str(&["kind"])?;
    ensure!(kind == "gan", "this checkpoint holds a {kind}, not a GAN");
    let g = Generator::new(gpu, c.meta_f64(&["gan", "width"])? as f32, 0)?;
    nn::load_state(&g, &c.section("generator"), true).context("checkpoint's generator")?;
    Ok(g)
}

/// `n` samples [n, 1, 28, 28] in [-1, 1] from the generator in eval mode. Blocks; native.
#[cfg(not(target_arch = "wasm32"))]
pub fn sample(gpu: &Gpu, g: &Generator, n: usize, seed: u64) -> Result<Vec<f32>> {
    let _ng = gpu_nn::no_grad();
    let z = noise(gpu, n, seed)?;
    Ok(g.forward(&z, &mut Ctx::eval())?.to_vec_blocking()?)
}
