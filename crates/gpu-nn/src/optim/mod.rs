//! (Lives in optim/mod.rs so that the kernels! macro finds shaders/ at the same depth as ops/.)
//!
//! Optimizers as in-place GPU kernels on the parameter buffers: [`Sgd`] and [`Adam`] (with
//! AdamW's decoupled weight decay), following torch.optim's update rules operation by
//! operation, plus the learning-rate schedules [`StepLr`] and [`CosineAnnealingLr`].
//!
//! `step` records one dispatch per parameter that has a gradient and is not frozen into the
//! open command buffer, after the backward pass, so a training step stays one submission.
//! Optimizer state can be saved with `state` and restored with `load_state` (checkpoints).

use std::collections::HashMap;

use crate::autograd::Grads;
use crate::error::{Error, Result, ensure_shape};
use crate::kernel::{Params, groups, kernels};
use crate::tensor::{Tensor, TensorId};

kernels!("optim.wgsl";
    SGD = "sgd" [W, R],
    SGD_MOMENTUM = "sgd_momentum" [W, R, W],
    ADAM = "adam" [W, R, W, W],
);

/// One saved state entry as host data: (name, shape, values). What `load_state` takes, so a
/// checkpoint read from disk needs no GPU round trip.
pub type HostEntry = (String, Vec<usize>, Vec<f32>);

/// The interface the training loop uses, whatever the optimizer.
pub trait Optimizer {
    /// Records the in-place update of every parameter that has a gradient in `grads` and is
    /// not frozen. Parameters without a gradient are skipped (their state is untouched), as
    /// in torch. Errors, before recording anything, if a gradient's shape differs from its
    /// parameter's.
    fn step(&mut self, grads: &Grads) -> Result<()>;
    /// Current learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate used by the next steps (schedules call this once per epoch).
    fn set_lr(&mut self, lr: f32);
    /// Freezes (or unfreezes) one parameter: a frozen parameter is never updated, even if
    /// it has a gradient. Errors if `param` is not one of this optimizer's parameters.
    fn set_frozen(&mut self, param: &Tensor, frozen: bool) -> Result<()>;
    /// The parameters, in the order used by state names.
    fn params(&self) -> &[Tensor];
    /// Number of `step` calls so far (saved as `"step"`).
    fn steps(&self) -> u64;
    /// A snapshot (copies) of the optimizer state, named like torch's state dict:
    /// `"{i}.momentum_buffer"` (SGD), `"{i}.exp_avg"`, `"{i}.exp_avg_sq"`, `"{i}.step"`
    /// (Adam; the per-parameter step as a one-element tensor), and `"step"`, the
    /// optimizer's step count. `i` is the parameter's index in [`Optimizer::params`].
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Replaces the whole state with saved entries (as [`Optimizer::state`] names them).
    /// Parameters without entries start fresh. Checks everything before changing anything:
    /// unknown names, parameter indices beyond the parameter count, shapes that differ from
    /// the parameter's, incomplete or duplicated entries are errors.
    fn load_state(&mut self, state: &[HostEntry]) -> Result<()>;
}

/// What optimizers share: parameters, frozen flags, step count.
struct ParamSet {
    params: Vec<Tensor>,
    frozen: Vec<bool>,
    index: HashMap<TensorId, usize>,
    steps: u64,
}

impl ParamSet {
    fn new(op: &'static str, params: Vec<Tensor>) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, p) in params.iter().enumerate() {
            if index.insert(p.id(), i).is_some() {
                return Err(Error::State(format!(
                    "{op}: parameter {i} (shape {:?}) appears more than once",
                    p.shape()
                )));
            }
        }
        Ok(Self {
            frozen: vec![false; params.len()],
            params,
            index,
            steps: 0,
        })
    }

    fn set_frozen(&mut self, param: &Tensor, frozen: bool) -> Result<()> {
        let i = *self.index.get(&param.id()).ok_or_else(|| {
            Error::State(format!(
                "set_frozen: tensor of shape {:?} is not a parameter of this optimizer",
                param.shape()
            ))
        })?;
        self.frozen[i] = frozen;
        Ok(())
    }

    /// (index, param, grad) of every parameter to update, shapes checked.
    fn updates<'a>(
        &'a self,
        op: &'static str,
        grads: &'a Grads,
    ) -> Result<Vec<(usize, &'a Tensor, &'a Tensor)>> {
        let mut out = Vec::new();
        for (i, p) in self.params.iter().enumerate() {
            if self.frozen[i] {
                continue;
            }
            if let Some(g) = grads.get(p) {
                ensure_shape!(
                    g.shape() == p.shape(),
                    op,
                    "gradient of parameter {i} has shape {:?}, the parameter {:?}",
                    g.shape(),
                    p.shape()
                );
                out.push((i, p, g));
            }
        }
        Ok(out)
    }
}

/// Saved values of one parameter's state, by key.
type SavedParam = HashMap<&'static str, Vec<f32>>;

/// Parses and checks saved entries against the parameters: returns per-parameter maps of
/// key -> values and the optimizer step count.
fn parse_state(
    op: &'static str,
    params: &[Tensor],
    keys: &[&'static str],
    state: &[HostEntry],
) -> Result<(Vec<SavedParam>, u64)> {
    let err = |msg: String| Error::State(format!("{op} load_state: {msg}"));
    let mut per: Vec<SavedParam> = vec![HashMap::new(); params.len()];
    let mut steps = None;
    for (name, shape, data) in state {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(err(format!(
                "'{name}' has {} values for shape {shape:?}",
                data.len()
            )));
        }
        if name == "step" {
            if steps.is_some() {
                return Err(err("'step' appears twice".into()));
            }
            steps = Some(count(name, shape, data).map_err(err)?);
            continue;
        }
        let parsed = name
            .split_once('.')
            .and_then(|(i, k)| Some((i.parse::<usize>().ok()?, k)));
        let Some((i, key)) = parsed else {
            return Err(err(format!("unknown entry '{name}'")));
        };
        let Some(&key) = keys.iter().find(|&&k| k == key) else {
            return Err(err(format!(
                "unknown entry '{name}' (expected one of {keys:?} after the index)"
            )));
        };
        if i >= params.len() {
            return Err(err(format!(
                "'{name}' is for parameter {i}, but this optimizer has {} parameters",
                params.len()
            )));
        }
        let want: &[usize] = if key == "step" {
            &[1]
        } else {
            params[i].shape()
        };
        if shape.as_slice() != want {
            return Err(err(format!(
                "'{name}' has shape {shape:?}, expected {want:?}"
            )));
        }
        if per[i].insert(key, data.clone()).is_some() {
            return Err(err(format!("'{name}' appears twice")));
        }
    }
    for (i, m) in per.iter().enumerate() {
        if !m.is_empty() && m.len() != keys.len() {
            return Err(err(format!(
                "parameter {i} has entries {:?} but needs all of {keys:?}",
                m.keys().collect::<Vec<_>>()
            )));
        }
    }
    let steps = steps.ok_or_else(|| err("'step' is missing".into()))?;
    Ok((per, steps))
}

/// A step count stored as a one-element f32 tensor (exact up to 2^24 steps).
fn count(name: &str, shape: &[usize], data: &[f32]) -> std::result::Result<u64, String> {
    match data {
        [v] if shape == [1] && *v >= 0.0 && v.fract() == 0.0 && *v <= 16_777_216.0 => Ok(*v as u64),
        _ => Err(format!(
            "'{name}' must be one non-negative integer, got {data:?} of shape {shape:?}"
        )),
    }
}

fn step_tensor(like: &Tensor, steps: u64) -> Result<Tensor> {
    Tensor::from_slice(like.gpu(), &[steps as f32], &[1])
}

fn finite_nonneg(op: &'static str, name: &str, v: f32) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::State(format!("{op}: invalid {name} {v}")))
    }
}

/// Hyperparameters of [`Sgd`], as torch.optim.SGD's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 disables the momentum buffer).
    pub momentum: f32,
    /// Dampening of the gradient in the momentum update (not applied on the first step).
    pub dampening: f32,
    /// L2 penalty added to the gradient: g + weight_decay * param.
    pub weight_decay: f32,
    /// Nesterov momentum (needs momentum > 0 and dampening == 0, as in torch).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    /// torch's defaults with lr = 0.01.
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// Stochastic gradient descent with momentum, exactly torch.optim.SGD:
/// d = g + wd * p; buf = d on the first step, else momentum * buf + (1 - dampening) * d;
/// d = d + momentum * buf (nesterov) or buf; p -= lr * d.
pub struct Sgd {
    set: ParamSet,
    config: SgdConfig,
    bufs: Vec<Option<Tensor>>,
}

impl Sgd {
    /// An optimizer over `params` (leaves created with [`Tensor::parameter`]; the same
    /// tensors the forward pass uses, since gradients are looked up by tensor id).
    /// Errors on negative or non-finite hyperparameters, on nesterov without momentum or
    /// with dampening, and on a parameter listed twice.
    pub fn new(params: Vec<Tensor>, config: SgdConfig) -> Result<Self> {
        let op = "Sgd";
        finite_nonneg(op, "lr", config.lr)?;
        finite_nonneg(op, "momentum", config.momentum)?;
        finite_nonneg(op, "weight_decay", config.weight_decay)?;
        if !config.dampening.is_finite() {
            return Err(Error::State(format!(
                "{op}: invalid dampening {}",
                config.dampening
            )));
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::State(
                "Sgd: nesterov momentum requires a momentum and zero dampening".into(),
            ));
        }
        let n = params.len();
        Ok(Self {
            set: ParamSet::new(op, params)?,
            config,
            bufs: vec![None; n],
        })
    }

    /// The hyperparameters (lr reflects `set_lr`).
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// Sets the momentum of the next steps (the app changes it while training). Buffers
    /// already built are kept: at 0 they are left alone, and they resume when momentum
    /// returns. Errors (changing nothing) on a negative or non-finite value, or on 0 with
    /// nesterov.
    pub fn set_momentum(&mut self, momentum: f32) -> Result<()> {
        finite_nonneg("Sgd", "momentum", momentum)?;
        if self.config.nesterov && momentum <= 0.0 {
            return Err(Error::State(
                "Sgd: nesterov momentum requires a momentum".into(),
            ));
        }
        self.config.momentum = momentum;
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Grads) -> Result<()> {
        let c = self.config;
        let updates: Vec<(usize, Tensor, Tensor)> = self
            .set
            .updates("Sgd step", grads)?
            .into_iter()
            .map(|(i, p, g)| (i, p.clone(), g.clone()))
            .collect();
        for (i, p, g) in updates {
            // The kernels take vec4s (see optim.wgsl).
            let n = p.numel().div_ceil(4);
            let first = self.bufs[i].is_none();
            let params = Params::new()
                .u(n)
                .u(usize::from(first))
                .u(usize::from(c.nesterov))
                .u(0)
                .f(c.lr)
                .f(c.momentum)
                .f((1.0 - f64::from(c.dampening)) as f32)
                .f(c.weight_decay);
            let gpu = p.gpu().clone();
            if c.momentum == 0.0 {
                gpu.dispatch(&SGD, &params.0, &[p.buf(), g.buf()], groups(n, 256));
            } else {
                let buf = match &self.bufs[i] {
                    Some(b) => b.clone(),
                    // Written entirely by the first-step branch of the kernel.
                    None => Tensor::uninit(&gpu, "momentum_buffer", p.shape())?,
                };
                gpu.dispatch(
                    &SGD_MOMENTUM,
                    &params.0,
                    &[p.buf(), g.buf(), buf.buf()],
                    groups(n, 256),
                );
                self.bufs[i] = Some(buf);
            }
        }
        self.set.steps += 1;
        Ok(())
    }

    fn lr(&self) -> f32 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    fn set_frozen(&mut self, param: &Tensor, frozen: bool) -> Result<()> {
        self.set.set_frozen(param, frozen)
    }

    fn params(&self) -> &[Tensor] {
        &self.set.params
    }

    fn steps(&self) -> u64 {
        self.set.steps
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, b) in self.bufs.iter().enumerate() {
            if let Some(b) = b {
                out.push((format!("{i}.momentum_buffer"), b.deep_clone()?));
            }
        }
        if let Some(p) = self.set.params.first() {
            out.push(("step".into(), step_tensor(p, self.set.steps)?));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &[HostEntry]) -> Result<()> {
        if self.set.params.is_empty() {
            return Err(Error::State(
                "Sgd load_state: the optimizer has no parameters".into(),
            ));
        }
        let (per, steps) = parse_state("Sgd", &self.set.params, &["momentum_buffer"], state)?;
        let mut bufs = Vec::with_capacity(per.len());
        for (p, mut m) in self.set.params.iter().zip(per) {
            bufs.push(match m.remove("momentum_buffer") {
                Some(v) => Some(Tensor::from_slice(p.gpu(), &v, p.shape())?),
                None => None,
            });
        }
        self.bufs = bufs;
        self.set.steps = steps;
        Ok(())
    }
}

/// Hyperparameters of [`Adam`], as torch.optim.Adam's (and AdamW's with
/// `decoupled_weight_decay`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f32, f32),
    /// Added to the denominator for stability.
    pub eps: f32,
    /// Weight decay: an L2 term added to the gradient (Adam), or, with
    /// `decoupled_weight_decay`, p *= 1 - lr * weight_decay before the update (AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    /// torch.optim.Adam's defaults.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamConfig {
    /// torch.optim.AdamW's defaults (weight decay 0.01, decoupled).
    pub fn adamw() -> Self {
        Self {
            weight_decay: 1e-2,
            decoupled_weight_decay: true,
            ..Self::default()
        }
    }
}

/// The per-step scalars of one Adam update, computed on the CPU in f64 (as torch does in
/// Python floats) and rounded to f32 where the kernel uses them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars {
    /// 1 - beta1: the weight of torch's `exp_avg.lerp_(grad, 1 - beta1)`.
    pub lerp_w: f32,
    /// beta2.
    pub beta2: f32,
    /// 1 - beta2.
    pub one_minus_beta2: f32,
    /// lr / (1 - beta1^t).
    pub step_size: f32,
    /// sqrt(1 - beta2^t).
    pub bc2_sqrt: f32,
    /// 1 - lr * weight_decay (AdamW's decay factor).
    pub decay_factor: f32,
}

impl AdamScalars {
    /// The scalars of step `t` (1-based, after the increment, as in torch).
    pub fn new(c: &AdamConfig, t: u64) -> Self {
        let (b1, b2) = (f64::from(c.betas.0), f64::from(c.betas.1));
        let lr = f64::from(c.lr);
        let t = t as f64;
        let bc1 = 1.0 - b1.powf(t);
        let bc2 = 1.0 - b2.powf(t);
        Self {
            lerp_w: (1.0 - b1) as f32,
            beta2: c.betas.1,
            one_minus_beta2: (1.0 - b2) as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            decay_factor: (1.0 - lr * f64::from(c.weight_decay)) as f32,
        }
    }
}

/// Adam / AdamW, exactly torch.optim.Adam (non-amsgrad, single-tensor path):
/// g += wd * p (Adam) or p *= 1 - lr * wd (AdamW); m = lerp(m, g, 1 - b1);
/// v = b2 * v + (1 - b2) * g^2; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
/// The last update is rounded as p + (-step_size) * (m / denom), torch's CUDA addcdiv
/// (its CPU kernel rounds (step_size * m) / denom instead; the two differ by an ulp).
/// The step t is counted per parameter (a parameter skipped for lack of a gradient does
/// not advance), as torch does.
pub struct Adam {
    set: ParamSet,
    config: AdamConfig,
    /// (exp_avg, exp_avg_sq, step) per parameter, created on its first update.
    moments: Vec<Option<(Tensor, Tensor, u64)>>,
}

impl Adam {
    /// An optimizer over `params` (the tensors the forward pass uses). Errors on negative
    /// or non-finite lr/eps/weight decay, betas outside [0, 1), a parameter listed twice.
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Result<Self> {
        let op = "Adam";
        finite_nonneg(op, "lr", config.lr)?;
        finite_nonneg(op, "eps", config.eps)?;
        finite_nonneg(op, "weight_decay", config.weight_decay)?;
        for (name, b) in [("beta1", config.betas.0), ("beta2", config.betas.1)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::State(format!("{op}: {name} {b} is not in [0, 1)")));
            }
        }
        let n = params.len();
        Ok(Self {
            set: ParamSet::new(op, params)?,
            config,
            moments: vec![None; n],
        })
    }

    /// The hyperparameters (lr reflects `set_lr`).
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &Grads) -> Result<()> {
        let c = self.config;
        let updates: Vec<(usize, Tensor, Tensor)> = self
            .set
            .updates("Adam step", grads)?
            .into_iter()
            .map(|(i, p, g)| (i, p.clone(), g.clone()))
            .collect();
        for (i, p, g) in updates {
            let gpu = p.gpu().clone();
            let (m, v, t) = match self.moments[i].take() {
                Some(s) => s,
                // Written entirely by the kernel's first-step branch (moments read as 0).
                None => (
                    Tensor::uninit(&gpu, "exp_avg", p.shape())?,
                    Tensor::uninit(&gpu, "exp_avg_sq", p.shape())?,
                    0,
                ),
            };
            let t = t + 1;
            let s = AdamScalars::new(&c, t);
            // The kernels take vec4s (see optim.wgsl).
            let n = p.numel().div_ceil(4);
            let params = Params::new()
                .u(n)
                .u(usize::from(t == 1))
                .u(0)
                .u(usize::from(c.decoupled_weight_decay))
                .f(c.lr)
                .f(0.0)
                .f(0.0)
                .f(c.weight_decay)
                .f(s.lerp_w)
                .f(s.beta2)
                .f(s.one_minus_beta2)
                .f(c.eps)
                .f(s.step_size)
                .f(s.bc2_sqrt)
                .f(s.decay_factor)
                .f(0.0);
            gpu.dispatch(
                &ADAM,
                &params.0,
                &[p.buf(), g.buf(), m.buf(), v.buf()],
                groups(n, 256),
            );
            self.moments[i] = Some((m, v, t));
        }
        self.set.steps += 1;
        Ok(())
    }

    fn lr(&self) -> f32 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    fn set_frozen(&mut self, param: &Tensor, frozen: bool) -> Result<()> {
        self.set.set_frozen(param, frozen)
    }

    fn params(&self) -> &[Tensor] {
        &self.set.params
    }

    fn steps(&self) -> u64 {
        self.set.steps
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, s) in self.moments.iter().enumerate() {
            if let Some((m, v, t)) = s {
                out.push((format!("{i}.exp_avg"), m.deep_clone()?));
                out.push((format!("{i}.exp_avg_sq"), v.deep_clone()?));
                out.push((format!("{i}.step"), step_tensor(m, *t)?));
            }
        }
        if let Some(p) = self.set.params.first() {
            out.push(("step".into(), step_tensor(p, self.set.steps)?));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &[HostEntry]) -> Result<()> {
        if self.set.params.is_empty() {
            return Err(Error::State(
                "Adam load_state: the optimizer has no parameters".into(),
            ));
        }
        let keys = ["exp_avg", "exp_avg_sq", "step"];
        let (per, steps) = parse_state("Adam", &self.set.params, &keys, state)?;
        let mut moments = Vec::with_capacity(per.len());
        for (i, (p, mut m)) in self.set.params.iter().zip(per).enumerate() {
            moments.push(
                match (
                    m.remove("exp_avg"),
                    m.remove("exp_avg_sq"),
                    m.remove("step"),
                ) {
                    (Some(a), Some(b), Some(t)) => {
                        let t = count(&format!("{i}.step"), &[1], &t)
                            .map_err(|e| Error::State(format!("Adam load_state: {e}")))?;
                        Some((
                            Tensor::from_slice(p.gpu(), &a, p.shape())?,
                            Tensor::from_slice(p.gpu(), &b, p.shape())?,
                            t,
                        ))
                    }
                    _ => None,
                },
            );
        }
        self.moments = moments;
        self.set.steps = steps;
        Ok(())
    }
}

/// StepLR: lr = base_lr * gamma^(epoch / step_size) (integer division), torch's closed
/// form. A `step_size` of 0 is treated as 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLr {
    /// Epochs between decays.
    pub step_size: usize,
    /// Multiplicative decay.
    pub gamma: f32,
}

impl StepLr {
    /// The learning rate for `epoch` (0-based).
    pub fn lr(&self, base_lr: f32, epoch: usize) -> f32 {
        let k = epoch / self.step_size.max(1);
        (f64::from(base_lr) * f64::from(self.gamma).powf(k as f64)) as f32
    }
}

/// CosineAnnealingLR, torch's closed form:
/// eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2. Past `t_max` the
/// cosine continues (the lr rises again), as in torch. A `t_max` of 0 is treated as 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingLr {
    /// Half period, in epochs.
    pub t_max: usize,
    /// Minimum learning rate.
    pub eta_min: f32,
}

impl CosineAnnealingLr {
    /// The learning rate for `epoch` (0-based).
    pub fn lr(&self, base_lr: f32, epoch: usize) -> f32 {
        let (base, min) = (f64::from(base_lr), f64::from(self.eta_min));
        let phase = std::f64::consts::PI * epoch as f64 / self.t_max.max(1) as f64;
        (min + (base - min) * (1.0 + phase.cos()) / 2.0) as f32
    }
}

/// CPU references of the update kernels, in f32 with torch's rounding points.
pub mod cpu {
    use super::{AdamConfig, AdamScalars, SgdConfig};

    /// One SGD update of one parameter. `buf` is the momentum buffer (`None` before the
    /// first step; unused when momentum is 0).
    pub fn sgd_step(param: &mut [f32], grad: &[f32], buf: &mut Option<Vec<f32>>, c: &SgdConfig) {
        let odamp = (1.0 - f64::from(c.dampening)) as f32;
        let first = buf.is_none();
        let b = buf.get_or_insert_with(|| vec![0.0; param.len()]);
        for i in 0..param.len() {
            let w = param[i];
            let mut d = grad[i];
            if c.weight_decay != 0.0 {
                d += c.weight_decay * w;
            }
            if c.momentum != 0.0 {
                b[i] = if first {
                    d
                } else {
                    b[i] * c.momentum + odamp * d
                };
                d = if c.nesterov {
                    d + c.momentum * b[i]
                } else {
                    b[i]
                };
            }
            param[i] = w + (-c.lr) * d;
        }
        if c.momentum == 0.0 {
            *buf = None;
        }
    }

    /// Adam state of one parameter.
    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct AdamState {
        /// First moment.
        pub exp_avg: Vec<f32>,
        /// Second moment.
        pub exp_avg_sq: Vec<f32>,
        /// Steps taken.
        pub step: u64,
    }

    /// One Adam/AdamW update of one parameter.
    pub fn adam_step(param: &mut [f32], grad: &[f32], s: &mut AdamState, c: &AdamConfig) {
        if s.step == 0 {
            s.exp_avg = vec![0.0; param.len()];
            s.exp_avg_sq = vec![0.0; param.len()];
        }
        s.step += 1;
        let k = AdamScalars::new(c, s.step);
        for i in 0..param.len() {
            let mut w = param[i];
            let mut g = grad[i];
            if c.decoupled_weight_decay {
                w *= k.decay_factor;
            } else if c.weight_decay != 0.0 {
                g += c.weight_decay * w;
            }
            let m0 = s.exp_avg[i];
            let m = if k.lerp_w < 0.5 {
                m0 + k.lerp_w * (g - m0)
            } else {
                g - (g - m0) * (1.0 - k.lerp_w)
            };
            let v = s.exp_avg_sq[i] * k.beta2 + k.one_minus_beta2 * g * g;
            s.exp_avg[i] = m;
            s.exp_avg_sq[i] = v;
            let denom = v.sqrt() / k.bc2_sqrt + c.eps;
            param[i] = w + (-k.step_size) * (m / denom);
        }
    }
}
