//! Softmax, log-softmax and classification losses over [N, C] rows, plus argmax and accuracy
//! counting that stay on the GPU.
//!
//! Class targets are f32 tensors of shape [N] holding integer class indices. A target that is
//! negative, >= C, not an integer or NaN is *invalid*: the kernels never index with it, and the
//! loss of its row is defined as NaN (so is the row's gradient). The mean loss is then NaN,
//! which training code can detect (PyTorch raises a device-side assert instead).

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Kernel, Params, groups, kernels};
use crate::tensor::Tensor;
use crate::trace::Op;

kernels!("loss.wgsl";
    SOFTMAX_FWD = "softmax_fwd" [R, W],
    SOFTMAX_FWD_1 = "softmax_fwd" [R, W] (RW = 1),
    SOFTMAX_BWD = "softmax_bwd" [R, R, W],
    SOFTMAX_BWD_1 = "softmax_bwd" [R, R, W] (RW = 1),
    NLL_FWD = "nll_fwd" [R, R, W],
    NLL_BWD = "nll_bwd" [R, R, W],
    CE_ROWS = "ce_rows" [R, R, W, W],
    CE_ROWS_1 = "ce_rows" [R, R, W, W] (RW = 1),
    CE_BWD = "ce_bwd" [R, R, R, R, W],
    MEAN_FWD = "mean_fwd" [R, W],
    BCE_FWD = "bce_fwd" [R, R, W],
    BCE_BWD = "bce_bwd" [R, R, R, W],
    ARGMAX_ROWS = "argmax_rows" [R, W],
    COUNT_EQUAL = "count_equal" [R, R, W],
);

/// A quiet NaN, handed to the kernels at run time.
const NAN_BITS: usize = 0x7fc0_0000;

fn params(n: usize, c: usize, mode: usize, scale: f32) -> Params {
    Params::new().u(n).u(c).u(mode).u(NAN_BITS).f(scale)
}

/// (N, C) of a 2-D tensor, or a shape error naming `op`.
fn rows(x: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    ensure_shape!(
        x.shape().len() == 2,
        op,
        "expected [N, C], got {:?}",
        x.shape()
    );
    Ok((x.shape()[0], x.shape()[1]))
}

/// Checks that `targets` is [N] for `x` of shape [N, C].
fn check_targets(x: &Tensor, targets: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    let (n, c) = rows(x, op)?;
    ensure_shape!(
        targets.shape() == [n],
        op,
        "targets have shape {:?} but the input {:?} needs [{n}] (one class index per row)",
        targets.shape(),
        x.shape()
    );
    Ok((n, c))
}

/// Rows up to this long are walked by one invocation (RW = 1 in loss.wgsl), not 256 lanes
/// and a barrier tree: 10 classes wasted 246 lanes and 16 barriers per row.
const SHORT_ROW: usize = 256;

/// The 256-lane kernel or its one-invocation twin, for rows of `c` values.
fn by_row(c: usize, wide: &'static Kernel, short: &'static Kernel) -> &'static Kernel {
    if c <= SHORT_ROW { short } else { wide }
}

fn softmax_raw(x: &Tensor, log: bool) -> Result<Tensor> {
    let name = if log { "log_softmax" } else { "softmax" };
    let (n, c) = rows(x, name)?;
    let y = Tensor::uninit(x.gpu(), name, x.shape())?;
    let p = params(n, c, usize::from(log), 1.0);
    x.gpu().dispatch(
        by_row(c, &SOFTMAX_FWD, &SOFTMAX_FWD_1),
        &p.0,
        &[x.buf(), y.buf()],
        [n as u32, 1, 1],
    );
    Ok(y)
}

impl Tensor {
    /// log(softmax(x)) over dimension 1 of an [N, C] tensor, computed stably
    /// (x - max - log(sum(exp(x - max)))).
    pub fn log_softmax(&self) -> Result<Tensor> {
        Ok(softmax_raw(self, true)?
            .with_op(SoftmaxOp {
                x: self.clone(),
                log: true,
            })
            .traced(|| Op::LogSoftmax, &[self]))
    }

    /// softmax(x) over dimension 1 of an [N, C] tensor (max-subtracted).
    pub fn softmax(&self) -> Result<Tensor> {
        Ok(softmax_raw(self, false)?
            .with_op(SoftmaxOp {
                x: self.clone(),
                log: false,
            })
            .traced(|| Op::Softmax, &[self]))
    }
}

struct SoftmaxOp {
    x: Tensor,
    log: bool,
}

impl BackwardOp for SoftmaxOp {
    fn name(&self) -> &'static str {
        if self.log { "log_softmax" } else { "softmax" }
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (n, c) = (out.shape()[0], out.shape()[1]);
        let gx = Tensor::uninit(grad.gpu(), "softmax backward", out.shape())?;
        let p = params(n, c, usize::from(self.log), 1.0);
        grad.gpu().dispatch(
            by_row(c, &SOFTMAX_BWD, &SOFTMAX_BWD_1),
            &p.0,
            &[out.buf(), grad.buf(), gx.buf()],
            [n as u32, 1, 1],
        );
        Ok(vec![Some(gx)])
    }
}

/// Negative log-likelihood, mean over the N rows: `-mean_i log_probs[i, targets[i]]`.
/// `log_probs` is [N, C] (typically from [`Tensor::log_softmax`]), `targets` is [N] class
/// indices. Returns shape [1]. Invalid targets make the result NaN (see the module docs).
pub fn nll_loss(log_probs: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, c) = check_targets(log_probs, targets, "nll_loss")?;
    let out = Tensor::uninit(log_probs.gpu(), "nll_loss", &[1])?;
    let p = params(n, c, 0, 1.0 / n as f32);
    log_probs.gpu().dispatch(
        &NLL_FWD,
        &p.0,
        &[log_probs.buf(), targets.buf(), out.buf()],
        [1, 1, 1],
    );
    Ok(out.with_op(NllOp {
        lp: log_probs.clone(),
        targets: targets.clone(),
    }))
}

struct NllOp {
    lp: Tensor,
    targets: Tensor,
}

impl BackwardOp for NllOp {
    fn name(&self) -> &'static str {
        "nll_loss"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.lp.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (n, c) = (self.lp.shape()[0], self.lp.shape()[1]);
        let gx = Tensor::uninit(grad.gpu(), "nll_loss backward", self.lp.shape())?;
        let p = params(n, c, 0, 1.0 / n as f32);
        grad.gpu().dispatch(
            &NLL_BWD,
            &p.0,
            &[self.targets.buf(), grad.buf(), gx.buf()],
            groups(n * c, 256),
        );
        Ok(vec![Some(gx)])
    }
}

/// Cross-entropy of [N, C] logits against [N] class indices, mean over rows: log_softmax and
/// NLL fused (max-subtracted, stable for extreme logits). Returns shape [1]; the gradient is
/// (softmax - onehot) / N. Invalid targets make the result NaN (see the module docs).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, c) = check_targets(logits, targets, "cross_entropy")?;
    let gpu = logits.gpu();
    let row_loss = Tensor::uninit(gpu, "cross_entropy", &[n])?;
    let lse = Tensor::uninit(gpu, "cross_entropy", &[n])?;
    let p = params(n, c, 0, 1.0);
    gpu.dispatch(
        by_row(c, &CE_ROWS, &CE_ROWS_1),
        &p.0,
        &[logits.buf(), targets.buf(), row_loss.buf(), lse.buf()],
        [n as u32, 1, 1],
    );
    let out = Tensor::uninit(gpu, "cross_entropy", &[1])?;
    let p = params(n, 1, 0, 1.0 / n as f32);
    gpu.dispatch(&MEAN_FWD, &p.0, &[row_loss.buf(), out.buf()], [1, 1, 1]);
    Ok(out.with_op(CrossEntropyOp {
        x: logits.clone(),
        targets: targets.clone(),
        lse,
    }))
}

struct CrossEntropyOp {
    x: Tensor,
    targets: Tensor,
    /// [N] log-sum-exp of each row, from the forward pass.
    lse: Tensor,
}

impl BackwardOp for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (n, c) = (self.x.shape()[0], self.x.shape()[1]);
        let gx = Tensor::uninit(grad.gpu(), "cross_entropy backward", self.x.shape())?;
        let p = params(n, c, 0, 1.0 / n as f32);
        grad.gpu().dispatch(
            &CE_BWD,
            &p.0,
            &[
                self.x.buf(),
                self.lse.buf(),
                self.targets.buf(),
                grad.buf(),
                gx.buf(),
            ],
            groups(n * c, 256),
        );
        Ok(vec![Some(gx)])
    }
}

/// Binary cross-entropy on logits, mean over all elements:
/// `mean(max(x, 0) - x * t + log(1 + exp(-|x|)))`, stable for any x. `targets` has the shape
/// of `logits` and may be soft (values in [0, 1]). Returns shape [1]. The gradient is
/// (sigmoid(x) - t) / n for the logits and -x / n for tracked targets.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    ensure_shape!(
        logits.shape() == targets.shape(),
        "bce_with_logits",
        "logits {:?} and targets {:?} differ in shape",
        logits.shape(),
        targets.shape()
    );
    let n = logits.numel();
    let out = Tensor::uninit(logits.gpu(), "bce_with_logits", &[1])?;
    let p = params(n, 1, 0, 1.0 / n as f32);
    logits.gpu().dispatch(
        &BCE_FWD,
        &p.0,
        &[logits.buf(), targets.buf(), out.buf()],
        [1, 1, 1],
    );
    Ok(out.with_op(BceOp {
        x: logits.clone(),
        t: targets.clone(),
    }))
}

struct BceOp {
    x: Tensor,
    t: Tensor,
}

impl BceOp {
    fn grad(&self, grad: &Tensor, mode: usize) -> Result<Tensor> {
        let n = self.x.numel();
        let gx = Tensor::uninit(grad.gpu(), "bce_with_logits backward", self.x.shape())?;
        let p = params(n, 1, mode, 1.0 / n as f32);
        grad.gpu().dispatch(
            &BCE_BWD,
            &p.0,
            &[self.x.buf(), self.t.buf(), grad.buf(), gx.buf()],
            groups(n, 256),
        );
        Ok(gx)
    }
}

impl BackwardOp for BceOp {
    fn name(&self) -> &'static str {
        "bce_with_logits"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone(), self.t.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let gx = if self.x.is_tracked() {
            Some(self.grad(grad, 0)?)
        } else {
            None
        };
        let gt = if self.t.is_tracked() {
            Some(self.grad(grad, 1)?)
        } else {
            None
        };
        Ok(vec![gx, gt])
    }
}

fn argmax_raw(x: &Tensor, op: &'static str) -> Result<Tensor> {
    let (n, c) = rows(x, op)?;
    let idx = Tensor::uninit(x.gpu(), op, &[n])?;
    let p = params(n, c, 0, 1.0);
    x.gpu()
        .dispatch(&ARGMAX_ROWS, &p.0, &[x.buf(), idx.buf()], [n as u32, 1, 1]);
    Ok(idx)
}

/// Index of the maximum of each row of an [N, C] tensor, as an [N] f32 tensor; the first
/// maximum on ties. NaN entries are skipped (a row of only NaN gives 0). Not differentiable.
pub fn argmax(x: &Tensor) -> Result<Tensor> {
    argmax_raw(x, "argmax")
}

/// Number of rows of [N, C] `logits` whose argmax equals the [N] `targets`, as a [1] tensor:
/// accuracy without reading the logits back. Invalid targets never match. Not differentiable.
pub fn correct_count(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, _) = check_targets(logits, targets, "correct_count")?;
    let idx = argmax_raw(logits, "correct_count")?;
    let out = Tensor::uninit(logits.gpu(), "correct_count", &[1])?;
    let p = params(n, 1, 0, 1.0);
    logits.gpu().dispatch(
        &COUNT_EQUAL,
        &p.0,
        &[idx.buf(), targets.buf(), out.buf()],
        [1, 1, 1],
    );
    Ok(out)
}

/// CPU references (f64 accumulation). Row-major [N, C] slices.
pub mod cpu {
    /// Whether `t` is a valid class index for `c` classes.
    pub fn valid_target(t: f32, c: usize) -> bool {
        t >= 0.0 && t < c as f32 && t.fract() == 0.0
    }

    /// log_softmax of each row.
    pub fn log_softmax(x: &[f32], c: usize) -> Vec<f32> {
        x.chunks(c)
            .flat_map(|row| {
                let mx = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let s: f64 = row.iter().map(|&v| f64::from(v - mx).exp()).sum();
                let lse = f64::from(mx) + s.ln();
                row.iter().map(move |&v| (f64::from(v) - lse) as f32)
            })
            .collect()
    }

    /// softmax of each row.
    pub fn softmax(x: &[f32], c: usize) -> Vec<f32> {
        log_softmax(x, c).into_iter().map(f32::exp).collect()
    }

    /// Backward of log_softmax: gx = g - softmax * sum(g) per row.
    pub fn log_softmax_backward(x: &[f32], c: usize, g: &[f32]) -> Vec<f32> {
        let sm = softmax(x, c);
        sm.chunks(c)
            .zip(g.chunks(c))
            .flat_map(|(s, g)| {
                let total: f64 = g.iter().map(|&v| f64::from(v)).sum();
                s.iter()
                    .zip(g)
                    .map(move |(&s, &g)| (f64::from(g) - f64::from(s) * total) as f32)
            })
            .collect()
    }

    /// Backward of softmax: gx = y * (g - sum(g * y)) per row.
    pub fn softmax_backward(x: &[f32], c: usize, g: &[f32]) -> Vec<f32> {
        let sm = softmax(x, c);
        sm.chunks(c)
            .zip(g.chunks(c))
            .flat_map(|(y, g)| {
                let total: f64 = y.iter().zip(g).map(|(&y, &g)| f64::from(y * g)).sum();
                y.iter()
                    .zip(g)
                    .map(move |(&y, &g)| (f64::from(y) * (f64::from(g) - total)) as f32)
            })
            .collect()
    }

    /// Mean NLL; NaN if any target is invalid.
    pub fn nll_loss(lp: &[f32], c: usize, targets: &[f32]) -> f32 {
        let n = targets.len();
        let s: f64 = targets
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if valid_target(t, c) {
                    -f64::from(lp[i * c + t as usize])
                } else {
                    f64::NAN
                }
            })
            .sum();
        (s / n as f64) as f32
    }

    /// Gradient of the mean NLL times `g`: -g / N at each target, NaN rows for invalid ones.
    pub fn nll_loss_backward(c: usize, targets: &[f32], g: f32) -> Vec<f32> {
        let n = targets.len();
        let mut gx = vec![0f32; n * c];
        for (i, &t) in targets.iter().enumerate() {
            if valid_target(t, c) {
                gx[i * c + t as usize] = -g / n as f32;
            } else {
                gx[i * c..(i + 1) * c].fill(f32::NAN);
            }
        }
        gx
    }

    /// Mean cross-entropy of logits.
    pub fn cross_entropy(x: &[f32], c: usize, targets: &[f32]) -> f32 {
        nll_loss(&log_softmax(x, c), c, targets)
    }

    /// Gradient of the mean cross-entropy times `g`: g * (softmax - onehot) / N.
    pub fn cross_entropy_backward(x: &[f32], c: usize, targets: &[f32], g: f32) -> Vec<f32> {
        let n = targets.len() as f32;
        let mut gx: Vec<f32> = softmax(x, c).into_iter().map(|s| g * s / n).collect();
        for (i, &t) in targets.iter().enumerate() {
            if valid_target(t, c) {
                gx[i * c + t as usize] -= g / n;
            } else {
                gx[i * c..(i + 1) * c].fill(f32::NAN);
            }
        }
        gx
    }

    /// Mean binary cross-entropy on logits.
    pub fn bce_with_logits(x: &[f32], t: &[f32]) -> f32 {
        let s: f64 = x
            .iter()
            .zip(t)
            .map(|(&x, &t)| {
                let x = f64::from(x);
                x.max(0.0) - x * f64::from(t) + (-x.abs()).exp().ln_1p()
            })
            .sum();
        (s / x.len() as f64) as f32
    }

    /// Gradients (d/dx, d/dt) of the mean BCE times `g`.
    pub fn bce_with_logits_backward(x: &[f32], t: &[f32], g: f32) -> (Vec<f32>, Vec<f32>) {
        let n = x.len() as f64;
        let g = f64::from(g);
        let gx = x
            .iter()
            .zip(t)
            .map(|(&x, &t)| {
                let sig = 1.0 / (1.0 + (-f64::from(x)).exp());
                (g * (sig - f64::from(t)) / n) as f32
            })
            .collect();
        let gt = x.iter().map(|&x| (-g * f64::from(x) / n) as f32).collect();
        (gx, gt)
    }

    /// First index of the maximum of each row (NaN skipped; 0 for an all-NaN row).
    pub fn argmax(x: &[f32], c: usize) -> Vec<f32> {
        x.chunks(c)
            .map(|row| {
                let mut best = (0usize, f32::NEG_INFINITY);
                for (k, &v) in row.iter().enumerate() {
                    if v > best.1 {
                        best = (k, v);
                    }
                }
                best.0 as f32
            })
            .collect()
    }

    /// Number of rows whose argmax equals the target.
    pub fn correct_count(x: &[f32], c: usize, targets: &[f32]) -> f32 {
        argmax(x, c)
            .iter()
            .zip(targets)
            .filter(|(a, t)| a == t)
            .count() as f32
    }
}
