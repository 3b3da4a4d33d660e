//! Sums and means over one dimension or over everything.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Params, groups, kernels};
use crate::tensor::Tensor;
use crate::trace::Op;

kernels!("reduce.wgsl";
    SUM_MID = "sum_mid" [R, W],
    SUM_MID_1 = "sum_mid" [R, W] (RW = 1),
    BROADCAST_MID = "broadcast_mid" [R, W],
);

/// Splits a shape around `dim` into (outer, r, inner).
fn split(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    let outer = shape[..dim].iter().product();
    let inner = shape[dim + 1..].iter().product();
    (outer, shape[dim], inner)
}

fn sum_mid_raw(x: &Tensor, dim: usize, scale: f32, out_shape: &[usize]) -> Result<Tensor> {
    let (outer, r, inner) = split(x.shape(), dim);
    let y = Tensor::uninit(x.gpu(), "sum", out_shape)?;
    let p = Params::new().u(outer).u(r).u(inner).f(scale);
    // Short axes are walked by one invocation per output (no 256-lane barrier tree).
    let kernel = if r <= 256 { &SUM_MID_1 } else { &SUM_MID };
    x.gpu().dispatch(
        kernel,
        &p.0,
        &[x.buf(), y.buf()],
        [(outer * inner) as u32, 1, 1],
    );
    Ok(y)
}

fn broadcast_mid_raw(g: &Tensor, shape: &[usize], dim: usize, scale: f32) -> Result<Tensor> {
    let (outer, r, inner) = split(shape, dim);
    let y = Tensor::uninit(g.gpu(), "sum backward", shape)?;
    let p = Params::new().u(outer).u(r).u(inner).f(scale);
    g.gpu().dispatch(
        &BROADCAST_MID,
        &p.0,
        &[g.buf(), y.buf()],
        groups(outer * r * inner, 256),
    );
    Ok(y)
}

impl Tensor {
    /// Sum over dimension `dim`, which is removed (kept as size 1 if it was the only one).
    pub fn sum_dim(&self, dim: usize) -> Result<Tensor> {
        self.reduce_dim(dim, false)
    }

    /// Mean over dimension `dim`.
    pub fn mean_dim(&self, dim: usize) -> Result<Tensor> {
        self.reduce_dim(dim, true)
    }

    fn reduce_dim(&self, dim: usize, mean: bool) -> Result<Tensor> {
        ensure_shape!(
            dim < self.shape().len(),
            "sum_dim",
            "dimension {dim} out of range for shape {:?}",
            self.shape()
        );
        let mut out: Vec<usize> = self.shape().to_vec();
        out.remove(dim);
        if out.is_empty() {
            out.push(1);
        }
        let scale = if mean {
            1.0 / self.shape()[dim] as f32
        } else {
            1.0
        };
        let y = sum_mid_raw(self, dim, scale, &out)?.with_op(SumOp {
            x: self.clone(),
            dim,
            scale,
        });
        Ok(y.traced(|| Op::Other("sum_dim"), &[self]))
    }

    /// Sum of all elements, shape [1].
    pub fn sum(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])?.sum_dim(0)
    }

    /// Mean of all elements, shape [1].
    pub fn mean(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])?.mean_dim(0)
    }
}

struct SumOp {
    x: Tensor,
    dim: usize,
    scale: f32,
}

impl BackwardOp for SumOp {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(broadcast_mid_raw(
            grad,
            self.x.shape(),
            self.dim,
            self.scale,
        )?)])
    }
}

/// CPU references.
pub mod cpu {
    /// Sum over `dim` of a tensor of `shape`, times `scale`.
    pub fn sum_dim(x: &[f32], shape: &[usize], dim: usize, scale: f32) -> Vec<f32> {
        let (outer, r, inner) = super::split(shape, dim);
        let mut y = vec![0f32; outer * inner];
        for o in 0..outer {
            for i in 0..inner {
                // f64 accumulation: the reference should be the more exact side.
                let s: f64 = (0..r).map(|k| f64::from(x[(o * r + k) * inner + i])).sum();
                y[o * inner + i] = s as f32 * scale;
            }
        }
        y
    }

    /// Backward of [`sum_dim`]: the output gradient broadcast back over `dim`, times `scale`.
    pub fn sum_dim_backward(gy: &[f32], shape: &[usize], dim: usize, scale: f32) -> Vec<f32> {
        let (outer, r, inner) = super::split(shape, dim);
        let mut gx = vec![0f32; outer * r * inner];
        for o in 0..outer {
            for k in 0..r {
                for i in 0..inner {
                    gx[(o * r + k) * inner + i] = gy[o * inner + i] * scale;
                }
            }
        }
        gx
    }
}
