//! Batch normalization with PyTorch's semantics (`torch.nn.functional.batch_norm`): per-channel
//! statistics over every dimension but 1 of [N, C], [N, C, L] or [N, C, H, W] inputs.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Params, groups, kernels};
use crate::tensor::Tensor;
use crate::trace::Op;

kernels!("batchnorm.wgsl";
    BN_STATS = "bn_stats" [R, W, W, W],
    BN_APPLY = "bn_apply" [R, R, R, R, W],
    BN_BWD_REDUCE = "bn_bwd_reduce" [R, R, R, W, W],
    BN_BWD_DX = "bn_bwd_dx" [R, R, R, R, R, R, W],
    BN_STATS_T = "bn_stats_t" [T, W, W, W],
    BN_APPLY_T = "bn_apply_t" [T, R, R, R, W],
    BN_BWD_REDUCE_T = "bn_bwd_reduce_t" [T, T, R, W, W],
    BN_BWD_DX_T = "bn_bwd_dx_t" [T, T, R, R, R, R, W],
);

/// The [N, C, S] view of an input (S = product of the spatial dims).
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c: usize,
    s: usize,
}

impl Dims {
    fn params(self, training: bool, has_w: bool, has_b: bool, momentum: f32, eps: f32) -> Params {
        Params::new()
            .u(self.n)
            .u(self.c)
            .u(self.s)
            .u(usize::from(training))
            .u(usize::from(has_w))
            .u(usize::from(has_b))
            .f(momentum)
            .f(eps)
    }

    /// Whether the kernels read their big operands as texels (the `*_t` kernels, a vec4 per
    /// load): where a texel stays in one channel's plane (S % 4 == 0).
    fn texels(self) -> bool {
        self.s.is_multiple_of(4)
    }

    /// Grids of the elementwise kernels: one value per invocation (scalar kernels), or one
    /// texel of four (the texel twins).
    fn elementwise_grids(self) -> ([u32; 3], [u32; 3]) {
        (groups(self.numel(), 256), groups(self.numel() / 4, 256))
    }

    fn numel(self) -> usize {
        self.n * self.c * self.s
    }
}

/// Checks that a per-channel tensor has shape [C].
fn check_channel(t: &Tensor, c: usize, what: &str, x: &Tensor) -> Result<()> {
    ensure_shape!(
        t.shape() == [c],
        "batch_norm",
        "{what} has shape {:?} but the input {:?} has {c} channels (expected [{c}])",
        t.shape(),
        x.shape()
    );
    Ok(())
}

/// Batch normalization, as `torch.nn.functional.batch_norm(x, running_mean, running_var,
/// weight, bias, training, momentum, eps)`.
///
/// `x` is [N, C], [N, C, L] or [N, C, H, W]; `running_mean`, `running_var`, `weight` and `bias`
/// are [C]. In training the batch mean and biased batch variance normalize `x`, and the running
/// statistics are updated in place on the GPU:
/// `running = (1 - momentum) * running + momentum * batch`, with the unbiased batch variance
/// for `running_var`. Training needs more than one value per channel (N * spatial > 1).
/// In evaluation the running statistics normalize `x` and are left unchanged.
///
/// Gradients flow to `x`, `weight` and `bias`; the running statistics get none. Evaluation-mode
/// backward treats the statistics as constants (a frozen backbone).
#[allow(clippy::too_many_arguments)] // mirrors PyTorch's functional signature
pub fn batch_norm(
    x: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<Tensor> {
    let shape = x.shape();
    ensure_shape!(
        (2..=4).contains(&shape.len()),
        "batch_norm",
        "input must be [N, C], [N, C, L] or [N, C, H, W], got {shape:?}"
    );
    let d = Dims {
        n: shape[0],
        c: shape[1],
        s: shape[2..].iter().product(),
    };
    check_channel(running_mean, d.c, "running_mean", x)?;
    check_channel(running_var, d.c, "running_var", x)?;
    if let Some(w) = weight {
        check_channel(w, d.c, "weight", x)?;
    }
    if let Some(b) = bias {
        check_channel(b, d.c, "bias", x)?;
    }
    ensure_shape!(
        !training || d.n * d.s > 1,
        "batch_norm",
        "Expected more than 1 value per channel when training, got input of shape {shape:?}"
    );
    // The running statistics are written in place: they must not alias anything else bound.
    ensure_shape!(
        !running_mean.same_storage(running_var)
            && !running_mean.same_storage(x)
            && !running_var.same_storage(x),
        "batch_norm",
        "running_mean, running_var and the input must be distinct buffers"
    );
    ensure_shape!(
        eps.is_finite() && eps >= 0.0 && momentum.is_finite(),
        "batch_norm",
        "eps ({eps}) must be finite and non-negative, momentum ({momentum}) finite"
    );

    let gpu = x.gpu();
    let save = Tensor::uninit(gpu, "batch_norm stats", &[2, d.c])?;
    let p = d.params(training, weight.is_some(), bias.is_some(), momentum, eps);
    let texels = d.texels();
    let per_channel = [d.c as u32, 1, 1];
    // Evaluation only copies the running statistics: no texel read of x for that.
    gpu.dispatch_either(
        training && texels,
        (&BN_STATS, &BN_STATS_T),
        &p.0,
        &[x],
        &[save.buf(), running_mean.buf(), running_var.buf()],
        (per_channel, per_channel),
    )?;
    let y = Tensor::uninit(gpu, "batch_norm", shape)?;
    // Absent affine parameters: bind `save` as a dummy the kernel ignores.
    let wbuf = weight.map_or(save.buf(), Tensor::buf);
    let bbuf = bias.map_or(save.buf(), Tensor::buf);
    gpu.dispatch_either(
        texels,
        (&BN_APPLY, &BN_APPLY_T),
        &p.0,
        &[x],
        &[save.buf(), wbuf, bbuf, y.buf()],
        d.elementwise_grids(),
    )?;
    let y = y.with_op(BatchNormOp {
        x: x.clone(),
        weight: weight.cloned(),
        bias: bias.cloned(),
        save,
        dims: d,
        training,
    });
    let mut inputs = vec![x, running_mean, running_var];
    inputs.extend(weight);
    inputs.extend(bias);
    let op = || Op::BatchNorm {
        training,
        eps,
        momentum,
        weight: weight.is_some(),
        bias: bias.is_some(),
    };
    Ok(y.traced(op, &inputs))
}

struct BatchNormOp {
    x: Tensor,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    /// [2, C]: mean and inverse std used by the forward pass.
    save: Tensor,
    dims: Dims,
    training: bool,
}

impl BackwardOp for BatchNormOp {
    fn name(&self) -> &'static str {
        "batch_norm"
    }
    fn inputs(&self) -> Vec<Tensor> {
        let mut v = vec![self.x.clone()];
        v.extend(self.weight.clone());
        v.extend(self.bias.clone());
        v
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let d = self.dims;
        let gpu = grad.gpu();
        let p = d.params(
            self.training,
            self.weight.is_some(),
            self.bias.is_some(),
            0.0,
            0.0,
        );
        let dbeta = Tensor::uninit(gpu, "batch_norm backward", &[d.c])?;
        let dgamma = Tensor::uninit(gpu, "batch_norm backward", &[d.c])?;
        let texels = d.texels();
        let per_channel = [d.c as u32, 1, 1];
        gpu.dispatch_either(
            texels,
            (&BN_BWD_REDUCE, &BN_BWD_REDUCE_T),
            &p.0,
            &[&self.x, grad],
            &[self.save.buf(), dbeta.buf(), dgamma.buf()],
            (per_channel, per_channel),
        )?;
        let gx = if self.x.is_tracked() {
            let gx = Tensor::uninit(gpu, "batch_norm backward", self.x.shape())?;
            let wbuf = self.weight.as_ref().map_or(self.save.buf(), Tensor::buf);
            gpu.dispatch_either(
                texels,
                (&BN_BWD_DX, &BN_BWD_DX_T),
                &p.0,
                &[&self.x, grad],
                &[self.save.buf(), wbuf, dbeta.buf(), dgamma.buf(), gx.buf()],
                d.elementwise_grids(),
            )?;
            Some(gx)
        } else {
            None
        };
        let mut out = vec![gx];
        if self.weight.is_some() {
            out.push(Some(dgamma));
        }
        if self.bias.is_some() {
            out.push(Some(dbeta));
        }
        Ok(out)
    }
}

/// CPU references (f64 accumulation).
pub mod cpu {
    /// (N, C, S) of an [N, C, ...] shape.
    fn dims(shape: &[usize]) -> (usize, usize, usize) {
        (shape[0], shape[1], shape[2..].iter().product())
    }

    /// Per-channel (mean, biased variance, unbiased variance) of `x`.
    pub fn batch_stats(x: &[f32], shape: &[usize]) -> Vec<(f64, f64, f64)> {
        let (n, c, s) = dims(shape);
        let m = (n * s) as f64;
        (0..c)
            .map(|ch| {
                let vals = (0..n).flat_map(|i| (0..s).map(move |k| (i * c + ch) * s + k));
                let mean = vals.clone().map(|j| f64::from(x[j])).sum::<f64>() / m;
                let ss: f64 = vals.map(|j| (f64::from(x[j]) - mean).powi(2)).sum();
                (mean, ss / m, ss / (m - 1.0))
            })
            .collect()
    }

    /// Per-channel (mean, inverse std) the forward pass normalizes with.
    fn norm_stats(
        x: &[f32],
        shape: &[usize],
        running_mean: &[f32],
        running_var: &[f32],
        training: bool,
        eps: f32,
    ) -> Vec<(f64, f64)> {
        if training {
            batch_stats(x, shape)
                .into_iter()
                .map(|(m, v, _)| (m, 1.0 / (v + f64::from(eps)).sqrt()))
                .collect()
        } else {
            running_mean
                .iter()
                .zip(running_var)
                .map(|(&m, &v)| (f64::from(m), 1.0 / (f64::from(v) + f64::from(eps)).sqrt()))
                .collect()
        }
    }

    /// Forward pass; in training also updates `running_mean` / `running_var` in place.
    #[allow(clippy::too_many_arguments)] // mirrors the GPU op
    pub fn batch_norm(
        x: &[f32],
        shape: &[usize],
        running_mean: &mut [f32],
        running_var: &mut [f32],
        weight: Option<&[f32]>,
        bias: Option<&[f32]>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Vec<f32> {
        let (_, c, s) = dims(shape);
        let st = norm_stats(x, shape, running_mean, running_var, training, eps);
        if training {
            let mo = f64::from(momentum);
            for (ch, (mean, _, var_u)) in batch_stats(x, shape).into_iter().enumerate() {
                running_mean[ch] = ((1.0 - mo) * f64::from(running_mean[ch]) + mo * mean) as f32;
                running_var[ch] = ((1.0 - mo) * f64::from(running_var[ch]) + mo * var_u) as f32;
            }
        }
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = (i / s) % c;
                let (mean, invstd) = st[ch];
                let w = weight.map_or(1.0, |w| f64::from(w[ch]));
                let b = bias.map_or(0.0, |b| f64::from(b[ch]));
                ((f64::from(v) - mean) * invstd * w + b) as f32
            })
            .collect()
    }

    /// Backward pass: (dx, dgamma, dbeta) given the upstream gradient `g`. The statistics are
    /// those the forward pass used (batch in training, the given running ones in evaluation).
    #[allow(clippy::too_many_arguments)] // mirrors the GPU op
    pub fn batch_norm_backward(
        x: &[f32],
        shape: &[usize],
        running_mean: &[f32],
        running_var: &[f32],
        weight: Option<&[f32]>,
        training: bool,
        eps: f32,
        g: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (n, c, s) = dims(shape);
        let m = (n * s) as f64;
        let st = norm_stats(x, shape, running_mean, running_var, training, eps);
        let xhat = |i: usize| {
            let (mean, invstd) = st[(i / s) % c];
            (f64::from(x[i]) - mean) * invstd
        };
        let mut sg = vec![0f64; c];
        let mut sgx = vec![0f64; c];
        for (i, &gi) in g.iter().enumerate() {
            let ch = (i / s) % c;
            sg[ch] += f64::from(gi);
            sgx[ch] += f64::from(gi) * xhat(i);
        }
        let dx = (0..x.len())
            .map(|i| {
                let ch = (i / s) % c;
                let k = st[ch].1 * weight.map_or(1.0, |w| f64::from(w[ch]));
                let gi = f64::from(g[i]);
                let v = if training {
                    k / m * (m * gi - sg[ch] - xhat(i) * sgx[ch])
                } else {
                    gi * k
                };
                v as f32
            })
            .collect();
        let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
        (dx, f(sgx), f(sg))
    }
}
