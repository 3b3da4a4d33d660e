//! The computations behind the teaching views, on any classifier: which blocks and
//! branches a model has, lesion studies (Veit et al. 2016), Inception branch energy, all
//! through the same evaluation as validation. The app polls them; `nnlab study` waits.

use anyhow::{Result, ensure};
#[cfg(not(target_arch = "wasm32"))]
use gpu_nn::Gpu;
use gpu_nn::nn::{Ctx, Module};
use gpu_nn::{Readback, Tensor, cat_channels};

#[cfg(not(target_arch = "wasm32"))]
use crate::data::Dataset;

/// A residual (or plain) block of a ResNet: where it is and whether it changes the shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Its layer path (`layer2.0`).
    pub path: String,
    /// The first block of a later stage: it halves the resolution and widens the channels
    /// (in a residual net its shortcut is a 1x1 projection; a plain one cannot be deleted).
    pub downsamples: bool,
}

/// The blocks of a ResNet-style model (`layerS.B`), in order; empty for other models.
pub fn blocks(net: &dyn Module) -> Vec<BlockInfo> {
    let mut out: Vec<BlockInfo> = Vec::new();
    net.visit("", &mut |name, _| {
        let mut parts = name.split('.');
        let (Some(stage), Some(block)) = (parts.next(), parts.next()) else {
            return;
        };
        let Some(s) = stage
            .strip_prefix("layer")
            .and_then(|s| s.parse::<usize>().ok())
        else {
            return;
        };
        if block.parse::<usize>().is_err() {
            return;
        }
        let path = format!("{stage}.{block}");
        if out.last().is_none_or(|b| b.path != path) {
            out.push(BlockInfo {
                downsamples: block == "0" && s > 1,
                path,
            });
        }
    });
    out
}

/// The Inception modules of a model and their four branches: (module path, branch paths).
pub fn inception_modules(net: &dyn Module) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    net.visit("", &mut |name, _| {
        let Some((module, rest)) = name.split_once(".branch") else {
            return;
        };
        let Some(b) = rest.split('.').next() else {
            return;
        };
        let branch = format!("{module}.branch{b}");
        match out.last_mut() {
            Some((m, branches)) if *m == module => {
                if !branches.contains(&branch) {
                    branches.push(branch);
                }
            }
            _ => out.push((module.to_string(), vec![branch])),
        }
    });
    out
}

/// Each branch's share of an Inception module's output energy, ‖branch‖² / ‖module‖², for
/// a batch `x`, on its way back.
pub struct PendingShares {
    read: Readback,
    modules: Vec<(String, Vec<String>)>,
}

/// Branch energy shares per module: (module, [(branch, share)]).
pub type Shares = Vec<(String, Vec<(String, f32)>)>;

/// Starts computing the branch energy shares of every Inception module on `x` (eval mode).
pub fn branch_shares(net: &dyn Module, x: &Tensor) -> Result<PendingShares> {
    let modules = inception_modules(net);
    ensure!(!modules.is_empty(), "this model has no Inception modules");
    let _g = gpu_nn::no_grad();
    let mut ctx = Ctx::eval().capturing();
    net.forward(x, &mut ctx)?;
    let captures = ctx.take_captures();
    let mut parts = Vec::new();
    for (_, branches) in &modules {
        for b in branches {
            let t = captures
                .iter()
                .find(|(n, _)| n == b)
                .map(|(_, t)| t)
                .ok_or_else(|| anyhow::anyhow!("{b} was not captured"))?;
            parts.push(t.unary(gpu_nn::Unary::Square)?.sum()?.reshape(&[1, 1])?);
        }
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(PendingShares {
        read: cat_channels(&refs)?.read()?,
        modules,
    })
}

impl PendingShares {
    fn shares(&mut self, v: Vec<f32>) -> Shares {
        let mut i = 0;
        std::mem::take(&mut self.modules)
            .into_iter()
            .map(|(m, branches)| {
                let e = &v[i..i + branches.len()];
                i += branches.len();
                let total: f32 = e.iter().sum();
                let shares = branches
                    .into_iter()
                    .zip(e)
                    .map(|(b, &x)| (b, if total > 0.0 { x / total } else { 0.0 }))
                    .collect();
                (m, shares)
            })
            .collect()
    }

    /// Non-blocking: the shares once back.
    pub fn try_take(&mut self) -> Result<Option<Shares>> {
        Ok(self.read.try_take()?.map(|v| self.shares(v)))
    }

    /// Waits for the shares. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(mut self) -> Result<Shares> {
        let v = self.read.take_blocking()?;
        Ok(self.shares(v))
    }
}

/// A block and the accuracy without it (None: it cannot be deleted).
pub type Lesion = (BlockInfo, Option<f64>);

/// Validation accuracy with each single block lesioned, and with none: (baseline,
/// [(block, accuracy or None where the block cannot be deleted)]). Native only; the app
/// runs the same evaluations one by one.
#[cfg(not(target_arch = "wasm32"))]
pub fn lesion_board(
    gpu: &Gpu,
    net: &dyn Module,
    data: &Dataset,
    residual: bool,
) -> Result<(f64, Vec<Lesion>)> {
    use super::eval::{EVAL_BATCH, Evaluation};
    let base = Evaluation::start(gpu, net, data, EVAL_BATCH, 0)?.wait_blocking()?;
    let mut out = Vec::new();
    for b in blocks(net) {
        let acc = if !residual && b.downsamples {
            None
        } else {
            let e = Evaluation::start_lesioned(
                gpu,
                net,
                data,
                EVAL_BATCH,
                0,
                std::slice::from_ref(&b.path),
            )?;
            Some(e.wait_blocking()?.acc)
        };
        out.push((b, acc));
    }
    Ok((base.acc, out))
}
