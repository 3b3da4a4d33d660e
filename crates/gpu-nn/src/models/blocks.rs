//! ResNet's BasicBlock and Bottleneck, GoogLeNet's Inception module.

use crate::error::{Result, ensure_shape};
use crate::gpu::Gpu;
use crate::init::SeedRng;
use crate::nn::{BatchNorm, Conv2d, Ctx, Entry, MaxPool2d, Module, Sequential, join};
use crate::ops::concat::cat_channels;
use crate::ops::conv::Conv2dOpts;
use crate::ops::pool::MaxPool2dOpts;
use crate::tensor::Tensor;

fn conv(
    gpu: &Gpu,
    rng: &mut SeedRng,
    inp: usize,
    out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Result<Conv2d> {
    let opts = Conv2dOpts {
        stride: (stride, stride),
        padding: (pad, pad),
        ..Conv2dOpts::default()
    };
    Conv2d::new(gpu, rng, inp, out, (k, k), opts, false)
}

/// The 1x1 projection shortcut: Sequential(conv1x1(stride), BatchNorm), named
/// `downsample.0` / `downsample.1` as in torchvision (no batch norm in a network without).
fn downsample(
    gpu: &Gpu,
    rng: &mut SeedRng,
    inp: usize,
    out: usize,
    stride: usize,
    batch_norm: bool,
) -> Result<Sequential> {
    let s = Sequential::new().push(conv(gpu, rng, inp, out, 1, stride, 0)?);
    Ok(if batch_norm {
        s.push(BatchNorm::new(gpu, out)?)
    } else {
        s
    })
}

/// ResNet's BasicBlock: two 3x3 convs with batch norm, plus the shortcut. With
/// `residual == false` it is the "plain" block of the same depth (no shortcut), for
/// teaching the degradation problem.
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: Option<BatchNorm>,
    conv2: Conv2d,
    bn2: Option<BatchNorm>,
    downsample: Option<Sequential>,
    residual: bool,
    same_shape: bool,
}

/// Runs `bn` (named `name`) on `h`, or passes `h` on in a network without batch norm.
fn maybe_bn(bn: &Option<BatchNorm>, name: &str, h: Tensor, ctx: &mut Ctx) -> Result<Tensor> {
    match bn {
        Some(b) => ctx.scope(name, |c| b.forward(&h, c)),
        None => Ok(h),
    }
}

/// The end of a residual block: relu(F(x) + shortcut), where a lesioned block's residual
/// branch F(x) counts as zero. A plain block has no shortcut: lesioned, it passes its input
/// on where the shapes allow (it is deleted), else it is an error.
fn block_output(
    branch: impl FnOnce(&mut Ctx) -> Result<Tensor>,
    shortcut: Option<&Sequential>,
    residual: bool,
    same_shape: bool,
    x: &Tensor,
    ctx: &mut Ctx,
) -> Result<Tensor> {
    let lesioned = ctx.is_lesioned("");
    if !residual {
        if lesioned {
            ensure_shape!(
                same_shape,
                "lesion",
                "{}: a plain block that changes the shape cannot be deleted",
                ctx.path()
            );
            return Ok(x.clone());
        }
        return branch(ctx)?.relu();
    }
    let identity = match shortcut {
        Some(d) => ctx.scope("downsample", |c| d.forward(x, c))?,
        None => x.clone(),
    };
    if lesioned {
        return identity.relu();
    }
    branch(ctx)?.add(&identity)?.relu()
}

impl BasicBlock {
    /// Channel expansion of the block's output.
    pub const EXPANSION: usize = 1;

    /// `inp` -> `planes` channels; a projection shortcut is added when the shape changes.
    /// Without `batch_norm` the convs follow each other directly (for teaching: a deep
    /// plain net without batch norm is where gradients vanish).
    pub fn new(
        gpu: &Gpu,
        rng: &mut SeedRng,
        inp: usize,
        planes: usize,
        stride: usize,
        residual: bool,
        batch_norm: bool,
    ) -> Result<Self> {
        let needs_proj = residual && (stride != 1 || inp != planes);
        let bn = |c| -> Result<Option<BatchNorm>> {
            Ok(if batch_norm {
                Some(BatchNorm::new(gpu, c)?)
            } else {
                None
            })
        };
        Ok(Self {
            conv1: conv(gpu, rng, inp, planes, 3, stride, 1)?,
            bn1: bn(planes)?,
            conv2: conv(gpu, rng, planes, planes, 3, 1, 1)?,
            bn2: bn(planes)?,
            downsample: if needs_proj {
                Some(downsample(gpu, rng, inp, planes, stride, batch_norm)?)
            } else {
                None
            },
            residual,
            same_shape: stride == 1 && inp == planes,
        })
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let branch = |ctx: &mut Ctx| -> Result<Tensor> {
            let h = ctx.scope("conv1", |c| self.conv1.forward(x, c))?;
            let h = maybe_bn(&self.bn1, "bn1", h, ctx)?.relu()?;
            let h = ctx.scope("conv2", |c| self.conv2.forward(&h, c))?;
            maybe_bn(&self.bn2, "bn2", h, ctx)
        };
        let same = self.same_shape;
        block_output(
            branch,
            self.downsample.as_ref(),
            self.residual,
            same,
            x,
            ctx,
        )
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        if let Some(b) = &self.bn1 {
            b.visit(&join(prefix, "bn1"), f);
        }
        self.conv2.visit(&join(prefix, "conv2"), f);
        if let Some(b) = &self.bn2 {
            b.visit(&join(prefix, "bn2"), f);
        }
        if let Some(d) = &self.downsample {
            d.visit(&join(prefix, "downsample"), f);
        }
    }
}

/// ResNet's Bottleneck (torchvision v1.5: the stride sits on the 3x3 conv): 1x1 reduce,
/// 3x3, 1x1 expand by 4, plus the shortcut.
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    downsample: Option<Sequential>,
    residual: bool,
    same_shape: bool,
}

impl Bottleneck {
    /// Channel expansion of the block's output.
    pub const EXPANSION: usize = 4;

    /// `inp` -> `planes * 4` channels.
    pub fn new(
        gpu: &Gpu,
        rng: &mut SeedRng,
        inp: usize,
        planes: usize,
        stride: usize,
        residual: bool,
    ) -> Result<Self> {
        let out = planes * Self::EXPANSION;
        let needs_proj = residual && (stride != 1 || inp != out);
        Ok(Self {
            conv1: conv(gpu, rng, inp, planes, 1, 1, 0)?,
            bn1: BatchNorm::new(gpu, planes)?,
            conv2: conv(gpu, rng, planes, planes, 3, stride, 1)?,
            bn2: BatchNorm::new(gpu, planes)?,
            conv3: conv(gpu, rng, planes, out, 1, 1, 0)?,
            bn3: BatchNorm::new(gpu, out)?,
            downsample: if needs_proj {
                Some(downsample(gpu, rng, inp, out, stride, true)?)
            } else {
                None
            },
            residual,
            same_shape: stride == 1 && inp == out,
        })
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let branch = |ctx: &mut Ctx| -> Result<Tensor> {
            let h = ctx.scope("conv1", |c| self.conv1.forward(x, c))?;
            let h = ctx.scope("bn1", |c| self.bn1.forward(&h, c))?.relu()?;
            let h = ctx.scope("conv2", |c| self.conv2.forward(&h, c))?;
            let h = ctx.scope("bn2", |c| self.bn2.forward(&h, c))?.relu()?;
            let h = ctx.scope("conv3", |c| self.conv3.forward(&h, c))?;
            ctx.scope("bn3", |c| self.bn3.forward(&h, c))
        };
        let same = self.same_shape;
        block_output(
            branch,
            self.downsample.as_ref(),
            self.residual,
            same,
            x,
            ctx,
        )
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        self.bn1.visit(&join(prefix, "bn1"), f);
        self.conv2.visit(&join(prefix, "conv2"), f);
        self.bn2.visit(&join(prefix, "bn2"), f);
        self.conv3.visit(&join(prefix, "conv3"), f);
        self.bn3.visit(&join(prefix, "bn3"), f);
        if let Some(d) = &self.downsample {
            d.visit(&join(prefix, "downsample"), f);
        }
    }
}

/// GoogLeNet's BasicConv2d: conv (no bias) + batch norm (eps 1e-3) + ReLU, named
/// `conv` and `bn`.
pub struct BasicConv2d {
    conv: Conv2d,
    bn: BatchNorm,
}

impl BasicConv2d {
    /// A k x k conv with the given stride and padding.
    pub fn new(
        gpu: &Gpu,
        rng: &mut SeedRng,
        inp: usize,
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let mut bn = BatchNorm::new(gpu, out)?;
        bn.eps = 1e-3;
        Ok(Self {
            conv: conv(gpu, rng, inp, out, k, stride, pad)?,
            bn,
        })
    }
}

impl Module for BasicConv2d {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = ctx.scope("conv", |c| self.conv.forward(x, c))?;
        ctx.scope("bn", |c| self.bn.forward(&h, c))?.relu()
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.conv.visit(&join(prefix, "conv"), f);
        self.bn.visit(&join(prefix, "bn"), f);
    }
}

/// Channel counts of one Inception module, in torchvision's argument order.
#[derive(Clone, Copy, Debug)]
pub struct InceptionSpec {
    /// Input channels.
    pub inp: usize,
    /// 1x1 branch.
    pub ch1x1: usize,
    /// 1x1 reduction before the first 3x3 branch.
    pub ch3x3red: usize,
    /// First 3x3 branch.
    pub ch3x3: usize,
    /// 1x1 reduction before the "5x5" branch.
    pub ch5x5red: usize,
    /// The "5x5" branch, a 3x3 conv in torchvision (kept for weight compatibility).
    pub ch5x5: usize,
    /// Kernel of that branch: 3 as torchvision, 5 for a true 5x5 (pytorch/vision#906).
    pub k5x5: usize,
    /// 1x1 projection after the 3x3 max pool.
    pub pool_proj: usize,
}

impl InceptionSpec {
    /// Output channels: the four branches concatenated.
    pub fn out_channels(&self) -> usize {
        self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj
    }
}

/// GoogLeNet's Inception module: four branches concatenated on channels.
pub struct Inception {
    branch1: BasicConv2d,
    branch2: Sequential,
    branch3: Sequential,
    branch4: Sequential,
}

impl Inception {
    /// Builds the module; names follow torchvision (`branch2.1.conv.weight`).
    pub fn new(gpu: &Gpu, rng: &mut SeedRng, s: InceptionSpec) -> Result<Self> {
        Ok(Self {
            branch1: BasicConv2d::new(gpu, rng, s.inp, s.ch1x1, 1, 1, 0)?,
            branch2: Sequential::new()
                .push(BasicConv2d::new(gpu, rng, s.inp, s.ch3x3red, 1, 1, 0)?)
                .push(BasicConv2d::new(gpu, rng, s.ch3x3red, s.ch3x3, 3, 1, 1)?),
            branch3: Sequential::new()
                .push(BasicConv2d::new(gpu, rng, s.inp, s.ch5x5red, 1, 1, 0)?)
                .push(BasicConv2d::new(
                    gpu,
                    rng,
                    s.ch5x5red,
                    s.ch5x5,
                    s.k5x5,
                    1,
                    s.k5x5 / 2,
                )?),
            branch4: Sequential::new()
                .push(MaxPool2d(MaxPool2dOpts {
                    stride: (1, 1),
                    padding: (1, 1),
                    ceil_mode: true,
                    ..MaxPool2dOpts::new(3)
                }))
                .push(BasicConv2d::new(gpu, rng, s.inp, s.pool_proj, 1, 1, 0)?),
        })
    }
}

impl Module for Inception {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        // A lesioned branch outputs zeros of its shape (test-time branch ablation).
        let branch = |ctx: &mut Ctx, name: &str, m: &dyn Module| -> Result<Tensor> {
            let out = ctx.scope(name, |c| m.forward(x, c))?;
            if ctx.is_lesioned(name) {
                return out.scale(0.0);
            }
            Ok(out)
        };
        let b1 = branch(ctx, "branch1", &self.branch1)?;
        let b2 = branch(ctx, "branch2", &self.branch2)?;
        let b3 = branch(ctx, "branch3", &self.branch3)?;
        let b4 = branch(ctx, "branch4", &self.branch4)?;
        cat_channels(&[&b1, &b2, &b3, &b4])
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.branch1.visit(&join(prefix, "branch1"), f);
        self.branch2.visit(&join(prefix, "branch2"), f);
        self.branch3.visit(&join(prefix, "branch3"), f);
        self.branch4.visit(&join(prefix, "branch4"), f);
    }
}
