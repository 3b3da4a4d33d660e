//! The classic MNIST CNN of PyTorch's examples.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::init::SeedRng;
use crate::nn::{Conv2d, Ctx, Dropout, Entry, Linear, Module, join};
use crate::ops::conv::Conv2dOpts;
use crate::ops::pool::{MaxPool2dOpts, max_pool2d};
use crate::tensor::Tensor;

/// conv(1->10,k5) -> maxpool2 -> relu -> conv(10->20,k5) -> dropout2d -> maxpool2 -> relu ->
/// fc(320->50) -> relu -> dropout -> fc(50->classes) -> log_softmax. Input [N, 1, 28, 28];
/// output log-probabilities [N, classes] (10 for MNIST).
pub struct MnistCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    conv2_drop: Dropout,
    fc1: Linear,
    fc2: Linear,
    drop: Dropout,
}

impl MnistCnn {
    /// The MNIST network (10 classes), PyTorch's default initialisation from `seed`.
    pub fn new(gpu: &Gpu, seed: u64) -> Result<Self> {
        Self::with_classes(gpu, 10, seed)
    }

    /// The same network with `classes` outputs (an image folder of grey 28x28 pictures).
    pub fn with_classes(gpu: &Gpu, classes: usize, seed: u64) -> Result<Self> {
        let mut rng = SeedRng::new(seed);
        let o = Conv2dOpts::default();
        Ok(Self {
            conv1: Conv2d::new(gpu, &mut rng, 1, 10, (5, 5), o, true)?,
            conv2: Conv2d::new(gpu, &mut rng, 10, 20, (5, 5), o, true)?,
            conv2_drop: Dropout {
                p: 0.5,
                channels: true,
            },
            fc1: Linear::new(gpu, &mut rng, 320, 50, true)?,
            fc2: Linear::new(gpu, &mut rng, 50, classes, true)?,
            drop: Dropout {
                p: 0.5,
                channels: false,
            },
        })
    }
}

impl Module for MnistCnn {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let pool = MaxPool2dOpts::new(2);
        let h = ctx.scope("conv1", |c| self.conv1.forward(x, c))?;
        let h = max_pool2d(&h, pool)?.relu()?;
        let h = ctx.scope("conv2", |c| self.conv2.forward(&h, c))?;
        let h = self.conv2_drop.forward(&h, ctx)?;
        let h = max_pool2d(&h, pool)?.relu()?.flatten()?;
        let h = ctx.scope("fc1", |c| self.fc1.forward(&h, c))?.relu()?;
        let h = self.drop.forward(&h, ctx)?;
        let h = ctx.scope("fc2", |c| self.fc2.forward(&h, c))?;
        h.log_softmax()
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        self.conv2.visit(&join(prefix, "conv2"), f);
        self.fc1.visit(&join(prefix, "fc1"), f);
        self.fc2.visit(&join(prefix, "fc2"), f);
    }
}
