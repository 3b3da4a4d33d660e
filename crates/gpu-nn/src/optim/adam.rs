//! Adam and AdamW, as torch.optim.Adam / AdamW.

use super::*;

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

/// CPU reference of the update kernel, in f32 with torch's rounding points.
pub mod cpu {
    use super::{AdamConfig, AdamScalars};

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
