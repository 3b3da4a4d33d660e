//! The layers of the classic image networks.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Ctx, Entry, Module, Param, join};
use crate::error::{Result, ensure_shape};
use crate::gpu::Gpu;
use crate::init::{SeedRng, default_bound, uniform_vec};
use crate::ops::batchnorm::batch_norm;
use crate::ops::conv::{Conv2dOpts, ConvTranspose2dOpts, conv_transpose2d, conv2d};
use crate::ops::dropout::{dropout, dropout2d};
use crate::ops::matmul::linear;
use crate::ops::pool::{AvgPool2dOpts, MaxPool2dOpts, adaptive_avg_pool2d, avg_pool2d, max_pool2d};
use crate::tensor::Tensor;

fn uniform_param(gpu: &Gpu, rng: &mut SeedRng, shape: &[usize], bound: f32) -> Result<Param> {
    let n = shape.iter().product();
    Ok(Param::new(Tensor::from_slice(
        gpu,
        &uniform_vec(rng, n, bound),
        shape,
    )?))
}

/// Fully connected layer, y = x W^T + b, weight [out, in] (torch.nn.Linear).
pub struct Linear {
    /// [out, in]
    pub weight: Param,
    /// [out]
    pub bias: Option<Param>,
}

impl Linear {
    /// PyTorch's default initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    pub fn new(gpu: &Gpu, rng: &mut SeedRng, inp: usize, out: usize, bias: bool) -> Result<Self> {
        let bound = default_bound(inp);
        Ok(Self {
            weight: uniform_param(gpu, rng, &[out, inp], bound)?,
            bias: if bias {
                Some(uniform_param(gpu, rng, &[out], bound)?)
            } else {
                None
            },
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        let b = self.bias.as_ref().map(Param::get);
        linear(x, &self.weight.get(), b.as_ref())
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        f(join(prefix, "weight"), Entry::Param(&self.weight));
        if let Some(b) = &self.bias {
            f(join(prefix, "bias"), Entry::Param(b));
        }
    }
}

/// 2-D convolution (torch.nn.Conv2d), weight [out, in/groups, kh, kw].
pub struct Conv2d {
    /// [out, in/groups, kh, kw]
    pub weight: Param,
    /// [out]
    pub bias: Option<Param>,
    /// Stride, padding, dilation, groups.
    pub opts: Conv2dOpts,
}

impl Conv2d {
    /// PyTorch's default initialisation with fan_in = in/groups * kh * kw.
    pub fn new(
        gpu: &Gpu,
        rng: &mut SeedRng,
        inp: usize,
        out: usize,
        kernel: (usize, usize),
        opts: Conv2dOpts,
        bias: bool,
    ) -> Result<Self> {
        let g = opts.groups.max(1);
        ensure_shape!(
            inp.is_multiple_of(g) && out.is_multiple_of(g),
            "Conv2d",
            "channels {inp} -> {out} not divisible by groups {g}"
        );
        let bound = default_bound(inp / g * kernel.0 * kernel.1);
        Ok(Self {
            weight: uniform_param(gpu, rng, &[out, inp / g, kernel.0, kernel.1], bound)?,
            bias: if bias {
                Some(uniform_param(gpu, rng, &[out], bound)?)
            } else {
                None
            },
            opts,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        let b = self.bias.as_ref().map(Param::get);
        conv2d(x, &self.weight.get(), b.as_ref(), self.opts)
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        f(join(prefix, "weight"), Entry::Param(&self.weight));
        if let Some(b) = &self.bias {
            f(join(prefix, "bias"), Entry::Param(b));
        }
    }
}

/// Transposed 2-D convolution (torch.nn.ConvTranspose2d), weight [in, out/groups, kh, kw].
pub struct ConvTranspose2d {
    /// [in, out/groups, kh, kw]
    pub weight: Param,
    /// [out]
    pub bias: Option<Param>,
    /// Stride, padding, output padding, dilation, groups.
    pub opts: ConvTranspose2dOpts,
}

impl ConvTranspose2d {
    /// PyTorch's default initialisation: fan_in is computed from weight dim 1, i.e.
    /// out/groups * kh * kw (torch's `_calculate_fan_in_and_fan_out` on this layout).
    pub fn new(
        gpu: &Gpu,
        rng: &mut SeedRng,
        inp: usize,
        out: usize,
        kernel: (usize, usize),
        opts: ConvTranspose2dOpts,
        bias: bool,
    ) -> Result<Self> {
        let g = opts.groups.max(1);
        ensure_shape!(
            inp.is_multiple_of(g) && out.is_multiple_of(g),
            "ConvTranspose2d",
            "channels {inp} -> {out} not divisible by groups {g}"
        );
        let bound = default_bound(out / g * kernel.0 * kernel.1);
        Ok(Self {
            weight: uniform_param(gpu, rng, &[inp, out / g, kernel.0, kernel.1], bound)?,
            bias: if bias {
                Some(uniform_param(gpu, rng, &[out], bound)?)
            } else {
                None
            },
            opts,
        })
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        let b = self.bias.as_ref().map(Param::get);
        conv_transpose2d(x, &self.weight.get(), b.as_ref(), self.opts)
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        f(join(prefix, "weight"), Entry::Param(&self.weight));
        if let Some(b) = &self.bias {
            f(join(prefix, "bias"), Entry::Param(b));
        }
    }
}

/// Batch normalisation over channel dim 1 (torch.nn.BatchNorm1d / BatchNorm2d).
pub struct BatchNorm {
    /// Scale, ones at init.
    pub weight: Option<Param>,
    /// Shift, zeros at init.
    pub bias: Option<Param>,
    /// Running mean, zeros at init.
    pub running_mean: Tensor,
    /// Running (unbiased) variance, ones at init.
    pub running_var: Tensor,
    /// Training steps seen (torch's `num_batches_tracked`).
    pub num_batches_tracked: AtomicU64,
    /// Weight of the newest batch in the running stats (torch default 0.1).
    pub momentum: f32,
    /// Added to the variance (torch default 1e-5).
    pub eps: f32,
}

impl BatchNorm {
    /// A batch norm over `channels` with PyTorch's defaults (affine, momentum 0.1, eps 1e-5).
    pub fn new(gpu: &Gpu, channels: usize) -> Result<Self> {
        Ok(Self {
            weight: Some(Param::new(Tensor::full(gpu, &[channels], 1.0)?)),
            bias: Some(Param::new(Tensor::zeros(gpu, &[channels])?)),
            running_mean: Tensor::zeros(gpu, &[channels])?,
            running_var: Tensor::full(gpu, &[channels], 1.0)?,
            num_batches_tracked: AtomicU64::new(0),
            momentum: 0.1,
            eps: 1e-5,
        })
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let w = self.weight.as_ref().map(Param::get);
        let b = self.bias.as_ref().map(Param::get);
        let y = batch_norm(
            x,
            &self.running_mean,
            &self.running_var,
            w.as_ref(),
            b.as_ref(),
            ctx.training,
            self.momentum,
            self.eps,
        )?;
        if ctx.training {
            self.num_batches_tracked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(y)
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        if let Some(w) = &self.weight {
            f(join(prefix, "weight"), Entry::Param(w));
        }
        if let Some(b) = &self.bias {
            f(join(prefix, "bias"), Entry::Param(b));
        }
        f(
            join(prefix, "running_mean"),
            Entry::Buffer(&self.running_mean),
        );
        f(
            join(prefix, "running_var"),
            Entry::Buffer(&self.running_var),
        );
        f(
            join(prefix, "num_batches_tracked"),
            Entry::Counter(&self.num_batches_tracked),
        );
    }
}

/// Max pooling layer.
pub struct MaxPool2d(pub MaxPool2dOpts);

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        max_pool2d(x, self.0)
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(String, Entry<'_>)) {}
}

/// Average pooling layer.
pub struct AvgPool2d(pub AvgPool2dOpts);

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        avg_pool2d(x, self.0)
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(String, Entry<'_>)) {}
}

/// Adaptive average pooling to a fixed output size; (1, 1) is global average pooling.
pub struct AdaptiveAvgPool2d(pub (usize, usize));

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        adaptive_avg_pool2d(x, self.0)
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(String, Entry<'_>)) {}
}

/// Dropout of single elements (torch.nn.Dropout) or whole channels (torch.nn.Dropout2d).
pub struct Dropout {
    /// Probability of zeroing.
    pub p: f32,
    /// Drop whole channels of [N, C, H, W] instead of single elements.
    pub channels: bool,
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        if !ctx.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        let seed = ctx.next_seed();
        if self.channels {
            dropout2d(x, self.p, seed, true)
        } else {
            dropout(x, self.p, seed, true)
        }
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(String, Entry<'_>)) {}
}

/// Activation functions as layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// Leaky ReLU with this negative slope.
    LeakyRelu(f32),
    /// Logistic sigmoid.
    Sigmoid,
    /// tanh
    Tanh,
}

impl Module for Activation {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        match *self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => x.leaky_relu(s),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
        }
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(String, Entry<'_>)) {}
}

/// Flattens [N, ...] to [N, rest] (a view, no copy).
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        x.flatten()
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(String, Entry<'_>)) {}
}

/// Layers applied in order, named "0", "1", ... like torch.nn.Sequential unless named.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer named by its index.
    pub fn push(mut self, m: impl Module + 'static) -> Self {
        let name = self.layers.len().to_string();
        self.layers.push((name, Box::new(m)));
        self
    }

    /// Appends a layer with an explicit name.
    pub fn push_named(mut self, name: &str, m: impl Module + 'static) -> Self {
        self.layers.push((name.to_string(), Box::new(m)));
        self
    }

    /// Replaces the layer called `name` (a new classifier head, say). Returns false if
    /// there is none.
    pub fn replace(&mut self, name: &str, m: impl Module + 'static) -> bool {
        match self.layers.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = Box::new(m);
                true
            }
            None => false,
        }
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut h = x.clone();
        for (name, m) in &self.layers {
            h = ctx.scope(name, |ctx| m.forward(&h, ctx))?;
        }
        Ok(h)
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        for (name, m) in &self.layers {
            m.visit(&join(prefix, name), f);
        }
    }
}
