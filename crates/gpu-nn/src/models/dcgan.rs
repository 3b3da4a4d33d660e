//! A DCGAN for 28x28 grey images. The generator goes 7x7 -> 14x14 -> 28x28 with two stride-2
//! transposed convs and ends with a stride-1 3x3 one (three stride-2 layers from 7x7 would
//! give 56x56).

use crate::error::{Result, ensure_shape};
use crate::gpu::Gpu;
use crate::init::SeedRng;
use crate::nn::{BatchNorm, Conv2d, ConvTranspose2d, Ctx, Entry, Linear, Module, join};
use crate::ops::conv::{Conv2dOpts, ConvTranspose2dOpts};
use crate::tensor::Tensor;

/// Latent size of the generator.
pub const LATENT: usize = 100;

fn widths(mult: f32) -> [usize; 3] {
    [256, 128, 64].map(|c| ((c as f32 * mult).round() as usize).max(4))
}

/// Linear(100 -> 256*7*7) + BN + ReLU -> ConvT(256->128, 4, 2, 1) + BN + ReLU ->
/// ConvT(128->64, 4, 2, 1) + BN + ReLU -> ConvT(64->1, 3, 1, 1) + Tanh. Widths scale with a
/// multiplier (0.25 gives a light model for slow devices).
pub struct Generator {
    fc: Linear,
    bn0: BatchNorm,
    deconv1: ConvTranspose2d,
    bn1: BatchNorm,
    deconv2: ConvTranspose2d,
    bn2: BatchNorm,
    deconv3: ConvTranspose2d,
    c0: usize,
}

impl Generator {
    /// Builds the generator with DCGAN's N(0, 0.02) initialisation.
    pub fn new(gpu: &Gpu, width_mult: f32, seed: u64) -> Result<Self> {
        let [c0, c1, c2] = widths(width_mult);
        let r = &mut SeedRng::new(seed);
        let up = ConvTranspose2dOpts {
            stride: (2, 2),
            padding: (1, 1),
            ..ConvTranspose2dOpts::default()
        };
        let same = ConvTranspose2dOpts {
            padding: (1, 1),
            ..ConvTranspose2dOpts::default()
        };
        let g = Self {
            fc: Linear::new(gpu, r, LATENT, c0 * 49, false)?,
            bn0: BatchNorm::new(gpu, c0 * 49)?,
            deconv1: ConvTranspose2d::new(gpu, r, c0, c1, (4, 4), up, false)?,
            bn1: BatchNorm::new(gpu, c1)?,
            deconv2: ConvTranspose2d::new(gpu, r, c1, c2, (4, 4), up, false)?,
            bn2: BatchNorm::new(gpu, c2)?,
            deconv3: ConvTranspose2d::new(gpu, r, c2, 1, (3, 3), same, true)?,
            c0,
        };
        super::dcgan_init(&g, r)?;
        Ok(g)
    }
}

impl Module for Generator {
    /// `z` is [N, 100]; the output [N, 1, 28, 28] in [-1, 1].
    fn forward(&self, z: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        ensure_shape!(
            z.shape().len() == 2 && z.shape()[1] == LATENT,
            "Generator",
            "expects noise [N, {LATENT}], got {:?}",
            z.shape()
        );
        let n = z.shape()[0];
        let h = ctx.scope("fc", |c| self.fc.forward(z, c))?;
        let h = ctx.scope("bn0", |c| self.bn0.forward(&h, c))?.relu()?;
        let h = h.reshape(&[n, self.c0, 7, 7])?;
        let h = ctx.scope("deconv1", |c| self.deconv1.forward(&h, c))?;
        let h = ctx.scope("bn1", |c| self.bn1.forward(&h, c))?.relu()?;
        let h = ctx.scope("deconv2", |c| self.deconv2.forward(&h, c))?;
        let h = ctx.scope("bn2", |c| self.bn2.forward(&h, c))?.relu()?;
        let h = ctx.scope("deconv3", |c| self.deconv3.forward(&h, c))?;
        h.tanh()
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.fc.visit(&join(prefix, "fc"), f);
        self.bn0.visit(&join(prefix, "bn0"), f);
        self.deconv1.visit(&join(prefix, "deconv1"), f);
        self.bn1.visit(&join(prefix, "bn1"), f);
        self.deconv2.visit(&join(prefix, "deconv2"), f);
        self.bn2.visit(&join(prefix, "bn2"), f);
        self.deconv3.visit(&join(prefix, "deconv3"), f);
    }
}

/// Conv(1->64, 4, 2, 1) + LeakyReLU(0.2) -> Conv(64->128, 4, 2, 1) + BN + LeakyReLU ->
/// Linear(128*7*7 -> 1). Outputs logits (use BCE with logits).
pub struct Discriminator {
    conv1: Conv2d,
    conv2: Conv2d,
    bn2: BatchNorm,
    fc: Linear,
}

impl Discriminator {
    /// Builds the discriminator with DCGAN's N(0, 0.02) initialisation.
    pub fn new(gpu: &Gpu, width_mult: f32, seed: u64) -> Result<Self> {
        let [_, c1, c2] = widths(width_mult);
        let r = &mut SeedRng::new(seed);
        let down = Conv2dOpts {
            stride: (2, 2),
            padding: (1, 1),
            ..Conv2dOpts::default()
        };
        let d = Self {
            conv1: Conv2d::new(gpu, r, 1, c2, (4, 4), down, true)?,
            conv2: Conv2d::new(gpu, r, c2, c1, (4, 4), down, false)?,
            bn2: BatchNorm::new(gpu, c1)?,
            fc: Linear::new(gpu, r, c1 * 49, 1, true)?,
        };
        super::dcgan_init(&d, r)?;
        Ok(d)
    }
}

impl Module for Discriminator {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = ctx
            .scope("conv1", |c| self.conv1.forward(x, c))?
            .leaky_relu(0.2)?;
        let h = ctx.scope("conv2", |c| self.conv2.forward(&h, c))?;
        let h = ctx
            .scope("bn2", |c| self.bn2.forward(&h, c))?
            .leaky_relu(0.2)?
            .flatten()?;
        ctx.scope("fc", |c| self.fc.forward(&h, c))
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        self.conv2.visit(&join(prefix, "conv2"), f);
        self.bn2.visit(&join(prefix, "bn2"), f);
        self.fc.visit(&join(prefix, "fc"), f);
    }
}
