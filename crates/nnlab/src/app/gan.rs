//! The GAN tab's driver: DCGAN on the bundled images, Adam(2e-4, 0.5, 0.999), BCE with
//! logits; losses come back asynchronously, samples from fixed noise are drawn on the GPU
//! into a texture the UI shows.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::Result;
use gpu_nn::init::SeedRng;
use gpu_nn::models::{Discriminator, Generator, LATENT};
use gpu_nn::nn::{self, Ctx, Module};
use gpu_nn::{
    Adam, AdamConfig, Gpu, Optimizer, Readback, Tensor, TileImage, TileLayout, bce_with_logits,
    cat_channels,
};

use super::session::{Data, max_in_flight};

/// Samples shown from fixed noise.
pub const SAMPLES: usize = 16;

/// One DCGAN being trained.
pub struct GanSession {
    gpu: Gpu,
    g: Generator,
    d: Discriminator,
    opt_g: Adam,
    opt_d: Adam,
    data: Arc<Data>,
    /// Real images rescaled to [-1, 1] (the generator ends in tanh).
    real: Vec<f32>,
    batch: usize,
    rng: SeedRng,
    fixed_noise: Tensor,
    ones: Tensor,
    zeros: Tensor,
    steps: u64,
    pending: VecDeque<(u64, Readback)>,
    /// Samples from the fixed noise, 4 per row, and the iteration they show.
    picture: TileImage,
    samples_step: Option<u64>,
    /// (step, D loss) points.
    pub d_loss: Vec<[f64; 2]>,
    /// (step, G loss) points.
    pub g_loss: Vec<[f64; 2]>,
}

impl GanSession {
    /// A generator and a discriminator of width `width` (1.0 = DCGAN's; smaller is faster).
    pub fn new(gpu: &Gpu, data: Arc<Data>, batch: usize, width: f32, seed: u64) -> Result<Self> {
        anyhow::ensure!(batch > 0, "the batch size must be at least 1");
        anyhow::ensure!(
            data.train.shape == [1, 28, 28],
            "the DCGAN makes 1x28x28 images"
        );
        let g = Generator::new(gpu, width, seed)?;
        let d = Discriminator::new(gpu, width, seed.wrapping_add(1))?;
        let cfg = AdamConfig {
            lr: 2e-4,
            betas: (0.5, 0.999),
            ..AdamConfig::default()
        };
        let opt_g = Adam::new(nn::parameters(&g), cfg)?;
        let opt_d = Adam::new(nn::parameters(&d), cfg)?;
        let (m, s) = data.norm;
        let real = data
            .train
            .images
            .iter()
            .map(|&v| (v * s + m) * 2.0 - 1.0)
            .collect();
        let mut rng = SeedRng::new(seed.wrapping_add(2));
        let noise: Vec<f32> = (0..SAMPLES * LATENT).map(|_| rng.normal()).collect();
        let layout = TileLayout::batch(&[SAMPLES, 1, 28, 28], 4)
            .ok_or_else(|| anyhow::anyhow!("no picture layout for the samples"))?;
        Ok(Self {
            picture: TileImage::new(gpu, layout)?,
            samples_step: None,
            fixed_noise: Tensor::from_slice(gpu, &noise, &[SAMPLES, LATENT])?,
            ones: Tensor::full(gpu, &[batch, 1], 1.0)?,
            zeros: Tensor::zeros(gpu, &[batch, 1])?,
            gpu: gpu.clone(),
            g,
            d,
            opt_g,
            opt_d,
            data,
            real,
            batch,
            rng,
            steps: 0,
            pending: VecDeque::new(),
            d_loss: Vec::new(),
            g_loss: Vec::new(),
        })
    }

    /// Iterations submitted.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Whether another iteration may be submitted now.
    pub fn can_step(&self) -> bool {
        self.pending.len() < max_in_flight(&self.gpu)
    }

    /// One iteration: a discriminator step on real + fake, then a generator step; one
    /// submission ending in the readback of both losses.
    pub fn step(&mut self) -> Result<()> {
        let n = self.batch;
        let per = 28 * 28;
        let mut x = Vec::with_capacity(n * per);
        for _ in 0..n {
            let i = self.rng.below(self.data.train.len());
            x.extend_from_slice(&self.real[i * per..(i + 1) * per]);
        }
        let real = Tensor::from_slice(&self.gpu, &x, &[n, 1, 28, 28])?;
        let z: Vec<f32> = (0..n * LATENT).map(|_| self.rng.normal()).collect();
        let z = Tensor::from_slice(&self.gpu, &z, &[n, LATENT])?;
        let seed = self.steps;
        let fake = self.g.forward(&z, &mut Ctx::train(seed))?;
        let d_real = self.d.forward(&real, &mut Ctx::train(seed))?;
        let d_fake = self.d.forward(&fake.detach(), &mut Ctx::train(seed))?;
        let loss_d =
            bce_with_logits(&d_real, &self.ones)?.add(&bce_with_logits(&d_fake, &self.zeros)?)?;
        self.opt_d.step(&loss_d.backward()?)?;
        let loss_g = bce_with_logits(&self.d.forward(&fake, &mut Ctx::train(seed))?, &self.ones)?;
        self.opt_g.step(&loss_g.backward()?)?;
        let both = cat_channels(&[
            &loss_d.detach().reshape(&[1, 1])?,
            &loss_g.detach().reshape(&[1, 1])?,
        ])?;
        self.steps += 1;
        self.pending.push_back((self.steps, both.read()?));
        Ok(())
    }

    /// Draws samples from the fixed noise (eval mode) into [`GanSession::samples`] and
    /// submits: frames drawn after this call show them.
    pub fn request_samples(&mut self) -> Result<()> {
        let _g = gpu_nn::no_grad();
        let img = self.g.forward(&self.fixed_noise, &mut Ctx::eval())?;
        self.picture.draw(&img)?;
        self.gpu.flush()?;
        self.samples_step = Some(self.steps);
        Ok(())
    }

    /// The samples picture and the iteration it shows, once drawn.
    pub fn samples(&self) -> Option<(u64, &TileImage)> {
        self.samples_step.map(|s| (s, &self.picture))
    }

    /// Collects the losses that came back (never waits).
    pub fn poll(&mut self) -> Result<()> {
        self.gpu.poll();
        while let Some((step, r)) = self.pending.front_mut() {
            let Some(v) = r.try_take()? else { break };
            let s = *step as f64;
            self.d_loss.push([s, f64::from(v[0])]);
            self.g_loss.push([s, f64::from(v[1])]);
            self.pending.pop_front();
        }
        Ok(())
    }
}
