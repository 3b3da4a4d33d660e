//! Concatenation and slicing along dimension 1 (channels of [N, C, H, W], features of
//! [N, F]): inception branches, channel splits. One strided block-copy kernel does all of it.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Params, groups, kernels};
use crate::tensor::Tensor;
use crate::trace::Op;

kernels!("concat.wgsl";
    CHANNEL_COPY = "channel_copy" [R, W],
);

/// Splits a shape of rank >= 2 into (N, C, inner).
fn split(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2..].iter().product())
}

/// Copies channels `[src_off, src_off + len)` of `src` into channels `[dst_off, ..)` of
/// `dst`; both have the same N and inner size (checked by the callers).
fn copy_channels(src: &Tensor, src_off: usize, dst: &Tensor, dst_off: usize, len: usize) {
    let (n, src_c, inner) = split(src.shape());
    let dst_c = dst.shape()[1];
    let p = Params::new()
        .u(n)
        .u(len)
        .u(inner)
        .u(src_c)
        .u(src_off)
        .u(dst_c)
        .u(dst_off)
        .u(0);
    src.gpu().dispatch(
        &CHANNEL_COPY,
        &p.0,
        &[src.buf(), dst.buf()],
        groups(n * len * inner, 256),
    );
}

fn narrow_raw(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    shape[1] = len;
    let y = Tensor::uninit(x.gpu(), "narrow_channels", &shape)?;
    copy_channels(x, start, &y, 0, len);
    Ok(y)
}

/// Concatenates tensors along dimension 1. All must have the same rank (at least 2) and
/// agree in every dimension but 1. Backward splits the gradient back into the pieces.
pub fn cat_channels(xs: &[&Tensor]) -> Result<Tensor> {
    ensure_shape!(!xs.is_empty(), "cat_channels", "no tensors to concatenate");
    let first = xs[0].shape();
    ensure_shape!(
        first.len() >= 2,
        "cat_channels",
        "needs tensors of rank >= 2, got shape {first:?}"
    );
    for x in xs {
        let s = x.shape();
        ensure_shape!(
            s.len() == first.len() && s[0] == first[0] && s[2..] == first[2..],
            "cat_channels",
            "shapes {:?} must agree in every dimension but 1",
            xs.iter().map(|x| x.shape().to_vec()).collect::<Vec<_>>()
        );
    }
    let total: usize = xs.iter().map(|x| x.shape()[1]).sum();
    let mut shape = first.to_vec();
    shape[1] = total;
    let y = Tensor::uninit(xs[0].gpu(), "cat_channels", &shape)?;
    let mut off = 0;
    for x in xs {
        let c = x.shape()[1];
        copy_channels(x, 0, &y, off, c);
        off += c;
    }
    let y = y.with_op(CatOp {
        xs: xs.iter().map(|&x| x.clone()).collect(),
    });
    Ok(y.traced(|| Op::CatChannels, xs))
}

impl Tensor {
    /// Channels `[start, start + len)` along dimension 1, as a new (copied) tensor.
    /// Backward places the gradient into zeros of the input's shape.
    pub fn narrow_channels(&self, start: usize, len: usize) -> Result<Tensor> {
        let s = self.shape();
        ensure_shape!(
            s.len() >= 2,
            "narrow_channels",
            "needs a tensor of rank >= 2, got shape {s:?}"
        );
        ensure_shape!(
            len > 0 && start.checked_add(len).is_some_and(|end| end <= s[1]),
            "narrow_channels",
            "channels [{start}, {start} + {len}) are not a non-empty range within dimension 1 of \
             shape {s:?}"
        );
        let y = narrow_raw(self, start, len)?.with_op(NarrowOp {
            x: self.clone(),
            start,
        });
        Ok(y.traced(|| Op::NarrowChannels { start, len }, &[self]))
    }
}

struct CatOp {
    xs: Vec<Tensor>,
}

impl BackwardOp for CatOp {
    fn name(&self) -> &'static str {
        "cat_channels"
    }
    fn inputs(&self) -> Vec<Tensor> {
        self.xs.clone()
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let mut off = 0;
        let mut out = Vec::with_capacity(self.xs.len());
        for x in &self.xs {
            let c = x.shape()[1];
            // Untracked pieces need no gradient: skip their copy.
            out.push(if x.is_tracked() {
                Some(narrow_raw(grad, off, c)?)
            } else {
                None
            });
            off += c;
        }
        Ok(out)
    }
}

struct NarrowOp {
    x: Tensor,
    start: usize,
}

impl BackwardOp for NarrowOp {
    fn name(&self) -> &'static str {
        "narrow_channels"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let gx = Tensor::zeros(grad.gpu(), self.x.shape())?;
        copy_channels(grad, 0, &gx, self.start, grad.shape()[1]);
        Ok(vec![Some(gx)])
    }
}

/// CPU references.
pub mod cpu {
    /// Concatenation along dimension 1 of tensors given as (data, shape).
    pub fn cat_channels(xs: &[(&[f32], &[usize])]) -> Vec<f32> {
        let (n, _, inner) = super::split(xs[0].1);
        let mut y = Vec::new();
        for s in 0..n {
            for (data, shape) in xs {
                let block = shape[1] * inner;
                y.extend_from_slice(&data[s * block..(s + 1) * block]);
            }
        }
        y
    }

    /// Backward of [`cat_channels`]: the gradient of a [N, sum(C), ..] output split into
    /// pieces of `channels[k]` channels each.
    pub fn cat_channels_bwd(
        gy: &[f32],
        n: usize,
        channels: &[usize],
        inner: usize,
    ) -> Vec<Vec<f32>> {
        let total: usize = channels.iter().sum();
        let mut off = 0;
        let mut out = Vec::new();
        for &c in channels {
            let shape = [n, total, inner];
            out.push(narrow_channels(gy, &shape, off, c));
            off += c;
        }
        out
    }

    /// Channels `[start, start + len)` of a tensor of `shape`.
    pub fn narrow_channels(x: &[f32], shape: &[usize], start: usize, len: usize) -> Vec<f32> {
        let (n, c, inner) = super::split(shape);
        let mut y = Vec::with_capacity(n * len * inner);
        for s in 0..n {
            let base = (s * c + start) * inner;
            y.extend_from_slice(&x[base..base + len * inner]);
        }
        y
    }

    /// Backward of [`narrow_channels`]: `gy` placed into zeros of `shape`.
    pub fn narrow_channels_bwd(gy: &[f32], shape: &[usize], start: usize, len: usize) -> Vec<f32> {
        let (n, c, inner) = super::split(shape);
        let mut gx = vec![0.0; n * c * inner];
        for s in 0..n {
            let dst = (s * c + start) * inner;
            let src = s * len * inner;
            gx[dst..dst + len * inner].copy_from_slice(&gy[src..src + len * inner]);
        }
        gx
    }
}
