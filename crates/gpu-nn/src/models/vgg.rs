//! VGG in torchvision's layout (`features.{i}`, `classifier.{0,3,6}`) and a small-input
//! variant.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::init::SeedRng;
use crate::nn::{
    Activation, AdaptiveAvgPool2d, Conv2d, Ctx, Dropout, Entry, Flatten, Linear, MaxPool2d, Module,
    Sequential, join,
};
use crate::ops::conv::Conv2dOpts;
use crate::ops::pool::MaxPool2dOpts;
use crate::tensor::Tensor;

/// Layer plan: channel counts, 0 = 2x2 max pool.
const VGG11: &[usize] = &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
const VGG16: &[usize] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];

/// VGG-11 or VGG-16.
pub struct Vgg {
    features: Sequential,
    avgpool: AdaptiveAvgPool2d,
    classifier: Sequential,
}

impl Vgg {
    /// torchvision's vgg11 (224x224 colour input).
    pub fn vgg11(gpu: &Gpu, num_classes: usize, seed: u64) -> Result<Self> {
        Self::build(gpu, VGG11, 1, 3, (7, 7), 4096, num_classes, seed)
    }

    /// torchvision's vgg16.
    pub fn vgg16(gpu: &Gpu, num_classes: usize, seed: u64) -> Result<Self> {
        Self::build(gpu, VGG16, 1, 3, (7, 7), 4096, num_classes, seed)
    }

    /// VGG-11 at 1/8 width for 28x28/32x32 input, pooled to 1x1, 256-wide classifier.
    pub fn vgg11_small(
        gpu: &Gpu,
        in_channels: usize,
        num_classes: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::build(gpu, VGG11, 8, in_channels, (1, 1), 256, num_classes, seed)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        gpu: &Gpu,
        plan: &[usize],
        shrink: usize,
        in_channels: usize,
        pool: (usize, usize),
        hidden: usize,
        num_classes: usize,
        seed: u64,
    ) -> Result<Self> {
        let r = &mut SeedRng::new(seed);
        let mut features = Sequential::new();
        let mut c = in_channels;
        let conv = Conv2dOpts {
            padding: (1, 1),
            ..Conv2dOpts::default()
        };
        for &v in plan {
            if v == 0 {
                features = features.push(MaxPool2d(MaxPool2dOpts::new(2)));
            } else {
                let out = v / shrink;
                features = features
                    .push(Conv2d::new(gpu, r, c, out, (3, 3), conv, true)?)
                    .push(Activation::Relu);
                c = out;
            }
        }
        let flat = c * pool.0 * pool.1;
        let classifier = Sequential::new()
            .push(Linear::new(gpu, r, flat, hidden, true)?)
            .push(Activation::Relu)
            .push(Dropout {
                p: 0.5,
                channels: false,
            })
            .push(Linear::new(gpu, r, hidden, hidden, true)?)
            .push(Activation::Relu)
            .push(Dropout {
                p: 0.5,
                channels: false,
            })
            .push(Linear::new(gpu, r, hidden, num_classes, true)?);
        let net = Self {
            features,
            avgpool: AdaptiveAvgPool2d(pool),
            classifier,
        };
        super::kaiming_normal_convs(&net, r)?;
        Ok(net)
    }
}

impl Module for Vgg {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = ctx.scope("features", |c| self.features.forward(x, c))?;
        let h = self.avgpool.forward(&h, ctx)?;
        let h = Flatten.forward(&h, ctx)?;
        ctx.scope("classifier", |c| self.classifier.forward(&h, c))
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.features.visit(&join(prefix, "features"), f);
        self.classifier.visit(&join(prefix, "classifier"), f);
    }
}
