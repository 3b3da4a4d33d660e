//! ResNets in torchvision's layout (`conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`), the small
//! CIFAR-style variants, and plain twins without shortcuts.

use super::{BasicBlock, Bottleneck};
use crate::error::{Result, ensure_shape};
use crate::gpu::Gpu;
use crate::init::SeedRng;
use crate::nn::{BatchNorm, Conv2d, Ctx, Entry, Linear, Module, Sequential, join};
use crate::ops::conv::Conv2dOpts;
use crate::ops::pool::{MaxPool2dOpts, global_avg_pool2d, max_pool2d};
use crate::tensor::Tensor;

/// Which residual block a ResNet stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Two 3x3 convs (ResNet-18/34, CIFAR ResNets).
    Basic,
    /// 1x1, 3x3, 1x1 with 4x expansion (ResNet-50 and deeper).
    Bottleneck,
}

/// The first layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stem {
    /// ImageNet: 7x7 stride-2 conv, then 3x3 stride-2 max pool (224x224 input).
    ImageNet,
    /// Small images: one 3x3 stride-1 conv, no pooling (28x28 or 32x32 input).
    Small,
}

/// Everything that defines a ResNet.
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Block type.
    pub block: Block,
    /// Blocks per stage; the stage count is its length.
    pub layers: Vec<usize>,
    /// Channel width of each stage (before expansion); same length as `layers`.
    pub widths: Vec<usize>,
    /// Stem type.
    pub stem: Stem,
    /// Input channels (3 colour, 1 grey).
    pub in_channels: usize,
    /// Output classes.
    pub num_classes: usize,
    /// False gives the plain network of the same depth (no shortcuts).
    pub residual: bool,
    /// False leaves batch norm out (teaching: where gradients vanish); basic blocks only.
    pub batch_norm: bool,
    /// How the convolutions start.
    pub init: ConvInit,
}

/// How a ResNet's convolution weights are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvInit {
    /// He et al. 2015 ("Delving deep"), as torchvision: normal with std sqrt(2 / fan_out).
    He,
    /// PyTorch's layer default, kaiming_uniform(a = sqrt(5)): variance 1 / (3 fan_in), a
    /// sixth of what ReLU layers need to keep the signal's scale.
    PyTorchDefault,
}

impl ResNetConfig {
    /// torchvision's resnet18.
    pub fn resnet18(num_classes: usize) -> Self {
        Self::imagenet(Block::Basic, vec![2, 2, 2, 2], num_classes)
    }
    /// torchvision's resnet34.
    pub fn resnet34(num_classes: usize) -> Self {
        Self::imagenet(Block::Basic, vec![3, 4, 6, 3], num_classes)
    }
    /// torchvision's resnet50.
    pub fn resnet50(num_classes: usize) -> Self {
        Self::imagenet(Block::Bottleneck, vec![3, 4, 6, 3], num_classes)
    }

    fn imagenet(block: Block, layers: Vec<usize>, num_classes: usize) -> Self {
        Self {
            block,
            layers,
            widths: vec![64, 128, 256, 512],
            stem: Stem::ImageNet,
            in_channels: 3,
            num_classes,
            residual: true,
            batch_norm: true,
            init: ConvInit::He,
        }
    }

    /// CIFAR-style ResNet of depth 6n+2 (He et al. 2015): 3 stages of 16/32/64 channels with
    /// n BasicBlocks each. depth 20 has 0.27M parameters; depth 14 is the bench model.
    pub fn cifar(depth: usize, in_channels: usize, num_classes: usize) -> Result<Self> {
        ensure_shape!(
            depth >= 8 && (depth - 2).is_multiple_of(6),
            "ResNetConfig::cifar",
            "depth must be 6n+2 (8, 14, 20, 32, ...), got {depth}"
        );
        let n = (depth - 2) / 6;
        Ok(Self {
            block: Block::Basic,
            layers: vec![n; 3],
            widths: vec![16, 32, 64],
            stem: Stem::Small,
            in_channels,
            num_classes,
            residual: true,
            batch_norm: true,
            init: ConvInit::He,
        })
    }

    /// The same network without shortcut connections.
    pub fn plain(mut self) -> Self {
        self.residual = false;
        self
    }

    /// Channel widths scaled by `w` (at least one channel each): a thinner net for slow
    /// devices, the same depth and shape otherwise.
    pub fn width(mut self, w: f32) -> Self {
        self.widths = self
            .widths
            .iter()
            .map(|&c| ((c as f32 * w).round() as usize).max(1))
            .collect();
        self
    }
}

/// A ResNet (or its plain twin).
pub struct ResNet {
    conv1: Conv2d,
    bn1: Option<BatchNorm>,
    stem: Stem,
    stages: Vec<Sequential>,
    fc: Linear,
    config: ResNetConfig,
}

impl ResNet {
    /// Builds the network; conv weights get torchvision's kaiming_normal(fan_out, relu),
    /// batch norms ones and zeros, fc PyTorch's default.
    pub fn new(gpu: &Gpu, config: ResNetConfig, seed: u64) -> Result<Self> {
        ensure_shape!(
            !config.layers.is_empty() && config.layers.len() == config.widths.len(),
            "ResNet",
            "layers {:?} and widths {:?} must be non-empty and of equal length",
            config.layers,
            config.widths
        );
        ensure_shape!(
            config.batch_norm || config.block == Block::Basic,
            "ResNet",
            "bottleneck ResNets always have batch norm"
        );
        let mut rng = SeedRng::new(seed);
        let w0 = config.widths[0];
        let (k, s, p) = match config.stem {
            Stem::ImageNet => (7, 2, 3),
            Stem::Small => (3, 1, 1),
        };
        let stem_opts = Conv2dOpts {
            stride: (s, s),
            padding: (p, p),
            ..Conv2dOpts::default()
        };
        let conv1 = Conv2d::new(
            gpu,
            &mut rng,
            config.in_channels,
            w0,
            (k, k),
            stem_opts,
            false,
        )?;
        let bn1 = if config.batch_norm {
            Some(BatchNorm::new(gpu, w0)?)
        } else {
            None
        };
        let expansion = match config.block {
            Block::Basic => BasicBlock::EXPANSION,
            Block::Bottleneck => Bottleneck::EXPANSION,
        };
        let mut inp = w0;
        let mut stages = Vec::new();
        for (i, (&n, &width)) in config.layers.iter().zip(&config.widths).enumerate() {
            let mut stage = Sequential::new();
            for b in 0..n {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                stage = match config.block {
                    Block::Basic => stage.push(BasicBlock::new(
                        gpu,
                        &mut rng,
                        inp,
                        width,
                        stride,
                        config.residual,
                        config.batch_norm,
                    )?),
                    Block::Bottleneck => stage.push(Bottleneck::new(
                        gpu,
                        &mut rng,
                        inp,
                        width,
                        stride,
                        config.residual,
                    )?),
                };
                inp = width * expansion;
            }
            stages.push(stage);
        }
        let fc = Linear::new(gpu, &mut rng, inp, config.num_classes, true)?;
        let net = Self {
            conv1,
            bn1,
            stem: config.stem,
            stages,
            fc,
            config,
        };
        if net.config.init == ConvInit::He {
            super::kaiming_normal_convs(&net, &mut rng)?;
        }
        Ok(net)
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Replaces the classifier with a fresh one for `num_classes` (transfer learning).
    pub fn replace_fc(&mut self, gpu: &Gpu, num_classes: usize, seed: u64) -> Result<()> {
        let inp = self.fc.weight.tensor().shape()[1];
        self.fc = Linear::new(gpu, &mut SeedRng::new(seed), inp, num_classes, true)?;
        self.config.num_classes = num_classes;
        Ok(())
    }
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = ctx.scope("conv1", |c| self.conv1.forward(x, c))?;
        let h = match &self.bn1 {
            Some(b) => ctx.scope("bn1", |c| b.forward(&h, c))?,
            None => h,
        };
        let mut h = h.relu()?;
        if self.stem == Stem::ImageNet {
            let opts = MaxPool2dOpts {
                stride: (2, 2),
                padding: (1, 1),
                ..MaxPool2dOpts::new(3)
            };
            h = max_pool2d(&h, opts)?;
        }
        for (i, stage) in self.stages.iter().enumerate() {
            h = ctx.scope(&format!("layer{}", i + 1), |c| stage.forward(&h, c))?;
        }
        let h = global_avg_pool2d(&h)?.flatten()?;
        ctx.scope("fc", |c| self.fc.forward(&h, c))
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        if let Some(b) = &self.bn1 {
            b.visit(&join(prefix, "bn1"), f);
        }
        for (i, s) in self.stages.iter().enumerate() {
            s.visit(&join(prefix, &format!("layer{}", i + 1)), f);
        }
        self.fc.visit(&join(prefix, "fc"), f);
    }
}
