//! Learning-rate schedules, as torch.optim.lr_scheduler, stepped per epoch.

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
