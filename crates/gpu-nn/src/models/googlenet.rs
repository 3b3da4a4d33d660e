//! GoogLeNet in torchvision's layout (no auxiliary heads, no input transform) and a small
//! GoogLeNet-style net for 28x28/32x32 inputs.

use super::{BasicConv2d, Inception, InceptionSpec};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::init::SeedRng;
use crate::nn::{Ctx, Dropout, Entry, Linear, Module, join};
use crate::ops::pool::{MaxPool2dOpts, global_avg_pool2d, max_pool2d};
use crate::tensor::Tensor;

fn spec(inp: usize, c: [usize; 6]) -> InceptionSpec {
    spec_k(inp, c, 3)
}

fn spec_k(inp: usize, c: [usize; 6], k5x5: usize) -> InceptionSpec {
    InceptionSpec {
        k5x5,
        inp,
        ch1x1: c[0],
        ch3x3red: c[1],
        ch3x3: c[2],
        ch5x5red: c[3],
        ch5x5: c[4],
        pool_proj: c[5],
    }
}

/// One stage of a GoogLeNet: a named layer or a max pool.
enum Stage {
    Conv(&'static str, BasicConv2d),
    Inception(&'static str, Inception),
    /// kernel, stride (ceil mode, as torchvision)
    Pool(usize, usize),
}

/// GoogLeNet (torchvision names: `conv1.conv.weight`, `inception3a.branch2.1.bn.weight`,
/// `fc.weight`) or its small variant.
pub struct GoogLeNet {
    stages: Vec<Stage>,
    dropout: Dropout,
    fc: Linear,
}

impl GoogLeNet {
    /// torchvision's GoogLeNet for 224x224 colour input.
    pub fn new(gpu: &Gpu, num_classes: usize, seed: u64) -> Result<Self> {
        let r = &mut SeedRng::new(seed);
        let stages = vec![
            Stage::Conv("conv1", BasicConv2d::new(gpu, r, 3, 64, 7, 2, 3)?),
            Stage::Pool(3, 2),
            Stage::Conv("conv2", BasicConv2d::new(gpu, r, 64, 64, 1, 1, 0)?),
            Stage::Conv("conv3", BasicConv2d::new(gpu, r, 64, 192, 3, 1, 1)?),
            Stage::Pool(3, 2),
            Stage::Inception(
                "inception3a",
                Inception::new(gpu, r, spec(192, [64, 96, 128, 16, 32, 32]))?,
            ),
            Stage::Inception(
                "inception3b",
                Inception::new(gpu, r, spec(256, [128, 128, 192, 32, 96, 64]))?,
            ),
            Stage::Pool(3, 2),
            Stage::Inception(
                "inception4a",
                Inception::new(gpu, r, spec(480, [192, 96, 208, 16, 48, 64]))?,
            ),
            Stage::Inception(
                "inception4b",
                Inception::new(gpu, r, spec(512, [160, 112, 224, 24, 64, 64]))?,
            ),
            Stage::Inception(
                "inception4c",
                Inception::new(gpu, r, spec(512, [128, 128, 256, 24, 64, 64]))?,
            ),
            Stage::Inception(
                "inception4d",
                Inception::new(gpu, r, spec(512, [112, 144, 288, 32, 64, 64]))?,
            ),
            Stage::Inception(
                "inception4e",
                Inception::new(gpu, r, spec(528, [256, 160, 320, 32, 128, 128]))?,
            ),
            Stage::Pool(2, 2),
            Stage::Inception(
                "inception5a",
                Inception::new(gpu, r, spec(832, [256, 160, 320, 32, 128, 128]))?,
            ),
            Stage::Inception(
                "inception5b",
                Inception::new(gpu, r, spec(832, [384, 192, 384, 48, 128, 128]))?,
            ),
        ];
        Ok(Self {
            stages,
            dropout: Dropout {
                p: 0.2,
                channels: false,
            },
            fc: Linear::new(gpu, r, 1024, num_classes, true)?,
        })
    }

    /// A small GoogLeNet-style net for 28x28 or 32x32 input: a 3x3 stem, two inception
    /// modules, a pool, two more, global pooling and a classifier (about 0.2M parameters).
    pub fn small(gpu: &Gpu, in_channels: usize, num_classes: usize, seed: u64) -> Result<Self> {
        Self::small_with(gpu, in_channels, num_classes, seed, 3)
    }

    /// [`GoogLeNet::small`] whose third branches have `k5x5` x `k5x5` kernels: 5 gives the
    /// true 5x5 branch of the paper, so the four branches see 1, 3, 5 and 3 (pooled)
    /// pixels wide within a module.
    pub fn small_with(
        gpu: &Gpu,
        in_channels: usize,
        num_classes: usize,
        seed: u64,
        k5x5: usize,
    ) -> Result<Self> {
        let r = &mut SeedRng::new(seed);
        let spec = |inp, c| spec_k(inp, c, k5x5);
        let stages = vec![
            Stage::Conv("conv1", BasicConv2d::new(gpu, r, in_channels, 32, 3, 1, 1)?),
            Stage::Inception(
                "inception3a",
                Inception::new(gpu, r, spec(32, [16, 16, 24, 4, 8, 8]))?,
            ),
            Stage::Inception(
                "inception3b",
                Inception::new(gpu, r, spec(56, [24, 24, 32, 8, 16, 16]))?,
            ),
            Stage::Pool(3, 2),
            Stage::Inception(
                "inception4a",
                Inception::new(gpu, r, spec(88, [32, 32, 48, 8, 16, 16]))?,
            ),
            Stage::Inception(
                "inception4b",
                Inception::new(gpu, r, spec(112, [48, 32, 64, 8, 24, 24]))?,
            ),
        ];
        Ok(Self {
            stages,
            dropout: Dropout {
                p: 0.2,
                channels: false,
            },
            fc: Linear::new(gpu, r, 160, num_classes, true)?,
        })
    }
}

impl Module for GoogLeNet {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut h = x.clone();
        for s in &self.stages {
            h = match s {
                Stage::Conv(n, m) => ctx.scope(n, |c| m.forward(&h, c))?,
                Stage::Inception(n, m) => ctx.scope(n, |c| m.forward(&h, c))?,
                Stage::Pool(k, st) => {
                    let opts = MaxPool2dOpts {
                        stride: (*st, *st),
                        ceil_mode: true,
                        ..MaxPool2dOpts::new(*k)
                    };
                    max_pool2d(&h, opts)?
                }
            };
        }
        let h = global_avg_pool2d(&h)?.flatten()?;
        let h = self.dropout.forward(&h, ctx)?;
        ctx.scope("fc", |c| self.fc.forward(&h, c))
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        for s in &self.stages {
            match s {
                Stage::Conv(n, m) => m.visit(&join(prefix, n), f),
                Stage::Inception(n, m) => m.visit(&join(prefix, n), f),
                Stage::Pool(..) => {}
            }
        }
        self.fc.visit(&join(prefix, "fc"), f);
    }
}
