//! SGD with momentum, dampening, Nesterov and weight decay, as torch.optim.SGD.

use super::*;

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

/// CPU reference of the update kernel, in f32 with torch's rounding points.
pub mod cpu {
    use super::SgdConfig;

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
}
