//! (The kernels are declared here, in optim/mod.rs, so that the kernels! macro finds
//! shaders/ at the same depth as from ops/.)
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

mod adam;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig, AdamScalars};
pub use schedule::{CosineAnnealingLr, StepLr};
pub use sgd::{Sgd, SgdConfig};

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

/// CPU references of the update kernels, in f32 with torch's rounding points.
pub mod cpu {
    pub use super::adam::cpu::{AdamState, adam_step};
    pub use super::sgd::cpu::sgd_step;
}
