//! `nnlab study`: the computations of the app's study views, headless, printing JSON, so
//! their results are reproducible, scriptable and testable.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{fit_data, gpu, load_train_data};
use crate::checkpoint::Checkpoint;
use crate::core::inflight::{GPU_IN_FLIGHT, InFlight};
use crate::core::study::{blocks, branch_shares, inception_modules, lesion_board};
use crate::core::{Classifier, EVAL_BATCH, Evaluation, ModelSpec, OptSettings, TrainConfig};
use crate::registry::{self, Variant};

/// `nnlab study`.
#[derive(Args, Debug)]
pub struct StudyArgs {
    /// Which study.
    #[command(subcommand)]
    pub study: Study,
}

/// The studies.
#[derive(Subcommand, Debug)]
pub enum Study {
    /// Per-layer gradient norms at initialisation (one batch), for a model variant.
    Gradients(GradientsArgs),
    /// Validation accuracy of a trained ResNet checkpoint with each block deleted.
    Lesion(CheckpointArgs),
    /// Branch energy shares and branch ablation of a trained Inception checkpoint.
    Branches(CheckpointArgs),
}

/// `nnlab study gradients`.
#[derive(Args, Debug)]
pub struct GradientsArgs {
    /// A CIFAR-style ResNet or its plain twin (`resnet56-plain`).
    #[arg(long)]
    pub model: String,
    /// Leave batch norm out.
    #[arg(long)]
    pub no_batch_norm: bool,
    /// PyTorch's default initialisation instead of He's.
    #[arg(long)]
    pub default_init: bool,
    /// Data, as for `train`.
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// Images in the batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seeds of the initialisation (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub seeds: Vec<u64>,
}

/// A study of a trained checkpoint.
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// A classifier checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data, as for `train`: its validation split is evaluated.
    #[arg(long)]
    pub data: String,
    /// Evaluate the first N validation images only.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Runs `nnlab study`.
pub fn study(a: StudyArgs) -> Result<()> {
    let out = match a.study {
        Study::Gradients(g) => gradients(g)?,
        Study::Lesion(c) => lesion(c)?,
        Study::Branches(c) => branches(c)?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn gradients(a: GradientsArgs) -> Result<serde_json::Value> {
    ensure!(a.batch_size > 0, "--batch-size must be positive");
    let info = registry::find(&a.model)?;
    ensure!(
        info.has_variants(),
        "{}: gradient studies take the CIFAR-style ResNets (resnetN, resnetN-plain)",
        a.model
    );
    let gpu = gpu()?;
    let d = load_train_data(&a.data, info.input.folder_shape(None), Some(a.batch_size))?;
    let variant = Variant {
        batch_norm: !a.no_batch_norm,
        he_init: !a.default_init,
        width: 1.0,
    };
    let mut rows = Vec::new();
    for &seed in &a.seeds {
        let spec = ModelSpec {
            name: a.model.clone(),
            input: d.train.shape,
            class_names: d.class_names.clone(),
            mean: d.mean.clone(),
            std: d.std.clone(),
            finetune: false,
            variant,
        };
        let config = TrainConfig {
            batch: a.batch_size,
            seed,
            opt: OptSettings {
                kind: "sgd".into(),
                lr: 0.0,
                momentum: 0.0,
                weight_decay: 0.0,
                cosine_epochs: None,
            },
            augment: None,
        };
        let mut c = Classifier::new(&gpu, spec, config)?;
        c.probe_every = 1;
        let mut q = InFlight::new(GPU_IN_FLIGHT, "loss");
        c.submit(&d.train, &mut q, 1)?;
        q.drain_blocking()?;
        let n = c
            .take_probes()
            .pop()
            .context("no gradient probe")?
            .wait_blocking()?;
        rows.push(json!({
            "seed": seed,
            "first_to_last": n.first_to_last(),
            "layers": n.layers.iter().zip(&n.grad).zip(&n.weight).map(|((l, g), w)| {
                json!({"layer": l, "grad_norm": g, "weight_norm": w})
            }).collect::<Vec<_>>(),
        }));
    }
    Ok(
        json!({"study": "gradients", "model": a.model, "batch_norm": variant.batch_norm,
              "he_init": variant.he_init, "batch": a.batch_size, "runs": rows}),
    )
}

/// The checkpoint's classifier and the validation data fitted to it.
fn trained(a: &CheckpointArgs) -> Result<(gpu_nn::Gpu, Classifier, crate::data::Dataset)> {
    let gpu = gpu()?;
    let c = Checkpoint::load(&a.checkpoint)?;
    let t = Classifier::from_checkpoint(&gpu, &c)
        .with_context(|| a.checkpoint.display().to_string())?;
    let mut d = load_train_data(&a.data, t.spec.input, a.limit)?;
    fit_data(&mut d, &t.spec)?;
    ensure!(!d.val.is_empty(), "{}: no validation images", a.data);
    Ok((gpu, t, d.val))
}

fn lesion(a: CheckpointArgs) -> Result<serde_json::Value> {
    let (gpu, t, val) = trained(&a)?;
    ensure!(
        !blocks(t.net.as_ref()).is_empty(),
        "{}: {} has no residual or plain blocks",
        a.checkpoint.display(),
        t.spec.name
    );
    let residual = !t.spec.name.ends_with("-plain");
    let (base, rows) = lesion_board(&gpu, t.net.as_ref(), &val, residual)?;
    Ok(json!({
        "study": "lesion", "model": t.spec.name, "step": t.progress.step,
        "images": val.len(), "accuracy": base,
        "blocks": rows.iter().map(|(b, acc)| json!({
            "block": b.path, "downsamples": b.downsamples, "accuracy": acc,
            "delta": acc.map(|a| a - base),
        })).collect::<Vec<_>>(),
    }))
}

fn branches(a: CheckpointArgs) -> Result<serde_json::Value> {
    let (gpu, t, val) = trained(&a)?;
    let modules = inception_modules(t.net.as_ref());
    ensure!(
        !modules.is_empty(),
        "{}: {} has no Inception modules",
        a.checkpoint.display(),
        t.spec.name
    );
    let idx: Vec<usize> = (0..val.len().min(64)).collect();
    let (x, _) = val.batch(&gpu, &idx)?;
    let shares = branch_shares(t.net.as_ref(), &x)?.wait_blocking()?;
    let base = Evaluation::start(&gpu, t.net.as_ref(), &val, EVAL_BATCH, 0)?.wait_blocking()?;
    let mut out = Vec::new();
    for ((module, branches), (_, s)) in modules.iter().zip(&shares) {
        let mut rows = Vec::new();
        for (b, (_, share)) in branches.iter().zip(s) {
            let e = Evaluation::start_lesioned(
                &gpu,
                t.net.as_ref(),
                &val,
                EVAL_BATCH,
                0,
                std::slice::from_ref(b),
            )?
            .wait_blocking()?;
            rows.push(
                json!({"branch": b, "energy_share": share, "ablated_accuracy": e.acc,
                             "delta": e.acc - base.acc}),
            );
        }
        out.push(json!({"module": module, "branches": rows}));
    }
    Ok(
        json!({"study": "branches", "model": t.spec.name, "step": t.progress.step,
              "images": val.len(), "accuracy": base.acc, "modules": out}),
    )
}
