//! Dropout and channel dropout (dropout2d) with a seeded counter-based RNG: the mask depends
//! only on (seed, element or channel index), so it is the same on every device and on the
//! CPU reference, and backward recomputes it rather than storing it.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Params, groups, kernels};
use crate::tensor::Tensor;
use crate::trace::Op;

kernels!("dropout.wgsl";
    DROPOUT = "dropout_mask_mul" [R, W],
);

/// Everything the kernel needs to draw one mask: a pure function of (p, seed, group).
#[derive(Clone, Copy, Debug)]
struct Mask {
    group: usize,
    threshold: u32,
    drop_all: bool,
    key0: u32,
    key1: u32,
    scale: f32,
}

impl Mask {
    fn new(p: f32, seed: u64, group: usize) -> Self {
        let (key0, key1) = cpu::keys(seed);
        Self {
            group,
            threshold: cpu::threshold(p),
            drop_all: p >= 1.0,
            key0,
            key1,
            scale: cpu::scale(p),
        }
    }

    /// y = x * mask * scale (forward), or gx = gy * mask * scale (backward: the same map).
    fn apply(&self, x: &Tensor, name: &'static str) -> Result<Tensor> {
        let y = Tensor::uninit(x.gpu(), name, x.shape())?;
        let n = x.numel();
        let p = Params::new()
            .u(n)
            .u(self.group)
            .u(self.threshold as usize)
            .u(usize::from(self.drop_all))
            .u(self.key0 as usize)
            .u(self.key1 as usize)
            .f(self.scale)
            .u(0);
        x.gpu().dispatch(
            &DROPOUT,
            &p.0,
            &[x.buf(), y.buf()],
            groups(n.div_ceil(4), 256),
        );
        Ok(y)
    }
}

fn check_p(op: &'static str, p: f32) -> Result<()> {
    ensure_shape!(
        (0.0..=1.0).contains(&p),
        op,
        "drop probability {p} is not in [0, 1]"
    );
    Ok(())
}

/// Zeroes each element independently with probability `p` and scales the kept ones by
/// 1 / (1 - p). Identity (the same tensor) when `!training` or `p == 0`; all zeros when
/// `p == 1`. The mask is a pure function of (`seed`, element index): pass a new seed each
/// step. Errors if `p` is outside [0, 1].
pub fn dropout(x: &Tensor, p: f32, seed: u64, training: bool) -> Result<Tensor> {
    check_p("dropout", p)?;
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let mask = Mask::new(p, seed, 1);
    Ok(mask
        .apply(x, "dropout")?
        .with_op(DropoutOp { x: x.clone(), mask })
        .traced(|| Op::Dropout { p, channels: false }, &[x]))
}

/// Zeroes whole channels of an [N, C, ...] tensor (rank >= 3) independently with
/// probability `p`, scaling kept channels by 1 / (1 - p). The draw for channel (n, c) is a
/// pure function of (`seed`, n * C + c). Same identity/zero/error rules as [`dropout`].
pub fn dropout2d(x: &Tensor, p: f32, seed: u64, training: bool) -> Result<Tensor> {
    check_p("dropout2d", p)?;
    ensure_shape!(
        x.shape().len() >= 3,
        "dropout2d",
        "needs an [N, C, H, W] (rank >= 3) tensor, got shape {:?}",
        x.shape()
    );
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let group = x.shape()[2..].iter().product();
    let mask = Mask::new(p, seed, group);
    Ok(mask
        .apply(x, "dropout2d")?
        .with_op(DropoutOp { x: x.clone(), mask })
        .traced(|| Op::Dropout { p, channels: true }, &[x]))
}

struct DropoutOp {
    x: Tensor,
    mask: Mask,
}

impl BackwardOp for DropoutOp {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // The op is linear in x with a diagonal Jacobian: gx = gy * mask * scale.
        Ok(vec![Some(self.mask.apply(grad, "dropout backward")?)])
    }
}

/// CPU references, bit-exact with the kernel.
pub mod cpu {
    /// The PCG-RXS-M-XS hash the kernel uses.
    pub fn pcg(v: u32) -> u32 {
        let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
        let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
        (word >> 22) ^ word
    }

    /// The two 32-bit keys derived from a 64-bit seed.
    pub fn keys(seed: u64) -> (u32, u32) {
        let (lo, hi) = (seed as u32, (seed >> 32) as u32);
        let key0 = pcg(lo ^ pcg(hi));
        let key1 = pcg(key0.wrapping_add(0x9E37_79B9) ^ hi);
        (key0, key1)
    }

    /// The 32-bit draw for mask index `i` (element for dropout, channel for dropout2d).
    pub fn draw(seed: u64, i: u32) -> u32 {
        let (k0, k1) = keys(seed);
        pcg(pcg(i ^ k0).wrapping_add(k1))
    }

    /// Draws at or above this value are kept: round(p * 2^32), so P(keep) = 1 - p up to
    /// 2^-33. Meaningless for p == 1, which drops everything.
    pub fn threshold(p: f32) -> u32 {
        (f64::from(p) * 4_294_967_296.0)
            .round()
            .min(f64::from(u32::MAX)) as u32
    }

    /// Factor applied to kept values: 1 / (1 - p), computed in f32.
    pub fn scale(p: f32) -> f32 {
        if p >= 1.0 { 0.0 } else { 1.0 / (1.0 - p) }
    }

    /// Whether mask index `i` is kept.
    pub fn keep(p: f32, seed: u64, i: u32) -> bool {
        p < 1.0 && draw(seed, i) >= threshold(p)
    }

    /// Dropout forward (training, 0 < p <= 1) over a flat tensor whose mask index is
    /// `element / group` (group = 1 for dropout, H*W for dropout2d). Backward is the same
    /// function applied to the output gradient.
    pub fn dropout(x: &[f32], p: f32, seed: u64, group: usize) -> Vec<f32> {
        let s = scale(p);
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                if keep(p, seed, (i / group) as u32) {
                    v * s
                } else {
                    0.0
                }
            })
            .collect()
    }
}
