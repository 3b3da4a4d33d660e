//! The classic image networks, with torchvision's parameter names where torchvision has the
//! model. Residual = add, inception = convs + pool + concat: no bespoke kernels.

mod alexnet;
mod blocks;
mod dcgan;
mod googlenet;
mod mnist;
mod resnet;
mod vgg;

pub use alexnet::AlexNet;
pub use blocks::*;
pub use dcgan::{Discriminator, Generator, LATENT};
pub use googlenet::GoogLeNet;
pub use mnist::MnistCnn;
pub use resnet::{Block, ConvInit, ResNet, ResNetConfig, Stem};
pub use vgg::Vgg;

use crate::error::Result;
use crate::init::SeedRng;
use crate::nn::{Entry, Module};

/// torchvision's ResNet/VGG conv init: kaiming_normal(mode="fan_out", nonlinearity="relu"),
/// std = sqrt(2 / (out_channels * kh * kw)).
fn kaiming_normal_convs(m: &dyn Module, rng: &mut SeedRng) -> Result<()> {
    let mut result = Ok(());
    m.visit("", &mut |_, e| {
        if let Entry::Param(p) = e
            && p.tensor().shape().len() == 4
            && result.is_ok()
        {
            let s = p.tensor().shape();
            let std = (2.0 / (s[0] * s[2] * s[3]) as f32).sqrt();
            let data: Vec<f32> = (0..p.tensor().numel())
                .map(|_| rng.normal() * std)
                .collect();
            result = p.tensor().write(&data);
        }
    });
    result
}

/// DCGAN's init: conv weights N(0, 0.02), batch-norm scales N(1, 0.02), batch-norm shifts 0.
fn dcgan_init(m: &dyn Module, rng: &mut SeedRng) -> Result<()> {
    let mut result = Ok(());
    m.visit("", &mut |name, e| {
        if let Entry::Param(p) = e
            && result.is_ok()
        {
            let t = p.tensor();
            let is_bn_weight = name.contains("bn") && name.ends_with("weight");
            if t.shape().len() == 4 || is_bn_weight {
                let mean = if is_bn_weight { 1.0 } else { 0.0 };
                let data: Vec<f32> = (0..t.numel()).map(|_| mean + 0.02 * rng.normal()).collect();
                result = t.write(&data);
            }
        }
    });
    result
}
