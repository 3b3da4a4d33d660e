//! AlexNet in torchvision's layout (`features.{0,3,6,8,10}`, `classifier.{1,4,6}`), with
//! adaptive average pooling to 6x6 so that inputs other than 224x224 work too.

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

/// torchvision's `alexnet` (Krizhevsky et al. 2012, the one-GPU variant of "One weird
/// trick"): five convs, three max pools, three fully connected layers with dropout.
pub struct AlexNet {
    features: Sequential,
    avgpool: AdaptiveAvgPool2d,
    classifier: Sequential,
}

impl AlexNet {
    /// PyTorch's default initialisation everywhere, as torchvision does for this model.
    pub fn new(gpu: &Gpu, in_channels: usize, num_classes: usize, seed: u64) -> Result<Self> {
        let r = &mut SeedRng::new(seed);
        let conv = |r: &mut SeedRng, i, o, k, stride, pad| {
            let opts = Conv2dOpts {
                stride: (stride, stride),
                padding: (pad, pad),
                ..Conv2dOpts::default()
            };
            Conv2d::new(gpu, r, i, o, (k, k), opts, true)
        };
        let pool = || {
            MaxPool2d(MaxPool2dOpts {
                stride: (2, 2),
                ..MaxPool2dOpts::new(3)
            })
        };
        let features = Sequential::new()
            .push(conv(r, in_channels, 64, 11, 4, 2)?)
            .push(Activation::Relu)
            .push(pool())
            .push(conv(r, 64, 192, 5, 1, 2)?)
            .push(Activation::Relu)
            .push(pool())
            .push(conv(r, 192, 384, 3, 1, 1)?)
            .push(Activation::Relu)
            .push(conv(r, 384, 256, 3, 1, 1)?)
            .push(Activation::Relu)
            .push(conv(r, 256, 256, 3, 1, 1)?)
            .push(Activation::Relu)
            .push(pool());
        let dropout = || Dropout {
            p: 0.5,
            channels: false,
        };
        let classifier = Sequential::new()
            .push(dropout())
            .push(Linear::new(gpu, r, 256 * 6 * 6, 4096, true)?)
            .push(Activation::Relu)
            .push(dropout())
            .push(Linear::new(gpu, r, 4096, 4096, true)?)
            .push(Activation::Relu)
            .push(Linear::new(gpu, r, 4096, num_classes, true)?);
        Ok(Self {
            features,
            avgpool: AdaptiveAvgPool2d((6, 6)),
            classifier,
        })
    }
}

impl Module for AlexNet {
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
