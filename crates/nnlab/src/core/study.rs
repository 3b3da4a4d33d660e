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

/// Where a block's pieces are captured: (block, its input, its residual branch's last
/// layer, its shortcut if a projection). CIFAR-style ResNets and their plain twins.
pub fn block_parts(net: &dyn Module) -> Vec<(String, String, String, Option<String>)> {
    let mut names = Vec::new();
    net.visit("", &mut |name, _| names.push(name));
    let has = |p: &str| names.iter().any(|n| n.starts_with(&format!("{p}.")));
    let bs = blocks(net);
    let mut out = Vec::new();
    for (k, b) in bs.iter().enumerate() {
        let input = match k {
            0 => "bn1".to_string(),
            _ => bs[k - 1].path.clone(),
        };
        let branch = ["bn3", "bn2", "conv2"]
            .iter()
            .map(|l| format!("{}.{l}", b.path))
            .find(|p| has(p))
            .unwrap_or_else(|| format!("{}.conv2", b.path));
        let proj = format!("{}.downsample", b.path);
        let proj = has(&proj).then_some(proj);
        out.push((b.path.clone(), input, branch, proj));
    }
    out
}

/// One block's residual response.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The block (`layer2.1`).
    pub block: String,
    /// Standard deviation of its residual branch's output (after its last batch norm,
    /// before the add).
    pub branch_std: f32,
    /// rms(F(x)) / rms(x): how much the block changes what flows through it.
    pub ratio: f32,
}

/// Residual responses of every block for a batch, on their way back.
pub struct PendingResponse {
    read: Readback,
    blocks: Vec<(String, [usize; 2])>,
}

/// Starts measuring every block's residual response on `x` (eval mode).
pub fn residual_response(net: &dyn Module, x: &Tensor) -> Result<PendingResponse> {
    let parts = block_parts(net);
    ensure!(
        !parts.is_empty(),
        "this model has no residual or plain blocks"
    );
    let _g = gpu_nn::no_grad();
    let mut ctx = Ctx::eval().capturing();
    net.forward(x, &mut ctx)?;
    let caps = ctx.take_captures();
    let get = |name: &str| {
        caps.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| anyhow::anyhow!("{name} was not captured"))
    };
    let mut stats = Vec::new();
    let mut blocks = Vec::new();
    for (block, input, branch, _) in &parts {
        let f = get(branch)?;
        // The first block's input is the stem after its relu.
        let x = if input == "bn1" {
            get(input)?.relu()?
        } else {
            get(input)?
        };
        stats.push(f.sum()?.reshape(&[1, 1])?);
        stats.push(f.unary(gpu_nn::Unary::Square)?.sum()?.reshape(&[1, 1])?);
        stats.push(x.unary(gpu_nn::Unary::Square)?.sum()?.reshape(&[1, 1])?);
        blocks.push((block.clone(), [f.numel(), x.numel()]));
    }
    let refs: Vec<&Tensor> = stats.iter().collect();
    Ok(PendingResponse {
        read: cat_channels(&refs)?.read()?,
        blocks,
    })
}

impl PendingResponse {
    fn responses(&mut self, v: Vec<f32>) -> Vec<Response> {
        std::mem::take(&mut self.blocks)
            .into_iter()
            .zip(v.chunks_exact(3))
            .map(|((block, [nf, nx]), s)| {
                let (mean, sq) = (f64::from(s[0]) / nf as f64, f64::from(s[1]) / nf as f64);
                let rms_x = (f64::from(s[2]) / nx as f64).sqrt();
                Response {
                    block,
                    branch_std: (sq - mean * mean).max(0.0).sqrt() as f32,
                    ratio: if rms_x > 0.0 {
                        (sq.sqrt() / rms_x) as f32
                    } else {
                        0.0
                    },
                }
            })
            .collect()
    }

    /// Non-blocking: the responses once back.
    pub fn try_take(&mut self) -> Result<Option<Vec<Response>>> {
        Ok(self.read.try_take()?.map(|v| self.responses(v)))
    }

    /// Waits for the responses. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(mut self) -> Result<Vec<Response>> {
        let v = self.read.take_blocking()?;
        Ok(self.responses(v))
    }
}
