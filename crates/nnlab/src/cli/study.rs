//! `nnlab study`: the computations of the app's study views, headless, printing JSON, so
//! their results are reproducible, scriptable and testable.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::{Args, Subcommand};
use gpu_nn::nn;
use serde_json::json;

use super::{fit_data, gpu, load_train_data};
use crate::checkpoint::Checkpoint;
use crate::core::inflight::{GPU_IN_FLIGHT, InFlight};
use crate::core::landscape::Landscape;
use crate::core::study::{
    blocks, branch_shares, inception_modules, lesion_board, residual_response,
};
use crate::core::{Classifier, EVAL_BATCH, Evaluation, ModelSpec, OptSettings, TrainConfig};
use crate::registry::{self, Variant};

/// `nnlab study`.
#[derive(Args, Debug)]
pub struct StudyArgs {
    /// Also draw the result as a PNG plot at this path.
    #[arg(long, global = true)]
    pub plot: Option<PathBuf>,
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
    /// Residual responses (branch std, rms(F)/rms(x)) per block of trained checkpoints
    /// (He et al. 2015, Fig. 7).
    Response(CheckpointsArgs),
    /// The loss along the line from the initial to the trained weights and over a plane of
    /// filter-normalised random directions, of trained checkpoints (Li et al. 2018).
    Landscape(LandscapeArgs),
    /// The degradation race: plain and residual nets of two depths trained alike, error per
    /// epoch (He et al. 2015, Figs. 1 and 6).
    Degradation(DegradationArgs),
}

/// `nnlab study degradation`.
#[derive(Args, Debug)]
pub struct DegradationArgs {
    /// Depth of the shallow pair (6n+2).
    #[arg(long, default_value_t = 20)]
    pub shallow: usize,
    /// Depth of the deep pair.
    #[arg(long, default_value_t = 56)]
    pub deep: usize,
    /// Channel width multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub width: f32,
    /// Epochs for each of the four runs.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Data, as for `train`.
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Learning rate of SGD with momentum 0.9 (He et al.: 0.1).
    #[arg(long, default_value_t = 0.1)]
    pub lr: f32,
    /// Use the first N training and validation images only.
    #[arg(long)]
    pub limit: Option<usize>,
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

/// Studies of several trained checkpoints, compared.
#[derive(Args, Debug)]
pub struct CheckpointsArgs {
    /// Classifier checkpoints (repeat the flag to compare, e.g. a ResNet and its plain twin).
    #[arg(long, required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// Data, as for `train`.
    #[arg(long)]
    pub data: String,
    /// Images in the measured batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
}

/// `nnlab study landscape`.
#[derive(Args, Debug)]
pub struct LandscapeArgs {
    /// The checkpoints and the batch.
    #[command(flatten)]
    pub runs: CheckpointsArgs,
    /// Points a side of the plane's grid over [-1, 1]^2.
    #[arg(long, default_value_t = 11)]
    pub grid: usize,
    /// Points on the line from t = -0.25 to 1.25.
    #[arg(long, default_value_t = 25)]
    pub line: usize,
}

/// Runs `nnlab study`.
pub fn study(a: StudyArgs) -> Result<()> {
    if let Some(p) = &a.plot {
        super::ensure_writable_file(p, "--plot")?;
    }
    let out = match a.study {
        Study::Gradients(g) => gradients(g)?,
        Study::Lesion(c) => lesion(c)?,
        Study::Branches(c) => branches(c)?,
        Study::Degradation(d) => degradation(d)?,
        Study::Response(c) => response(c)?,
        Study::Landscape(l) => landscape(l)?,
    };
    if let Some(p) = &a.plot {
        super::study_plot::plot(&out, p)?;
    }
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
    let base_class = base
        .confusion(&val.labels, val.classes)
        .per_class_accuracy();
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
            let per_class: Vec<f64> = e
                .confusion(&val.labels, val.classes)
                .per_class_accuracy()
                .iter()
                .zip(&base_class)
                .map(|(a, b)| a - b)
                .collect();
            rows.push(
                json!({"branch": b, "energy_share": share, "ablated_accuracy": e.acc,
                       "delta": e.acc - base.acc, "per_class_delta": per_class}),
            );
        }
        out.push(json!({"module": module, "branches": rows}));
    }
    Ok(
        json!({"study": "branches", "model": t.spec.name, "step": t.progress.step,
              "images": val.len(), "accuracy": base.acc, "modules": out}),
    )
}

fn degradation(a: DegradationArgs) -> Result<serde_json::Value> {
    ensure!(
        a.epochs > 0 && a.batch_size > 0,
        "--epochs and --batch-size must be positive"
    );
    let gpu = gpu()?;
    let d = load_train_data(&a.data, [3, 32, 32], a.limit)?;
    let mut runs = Vec::new();
    for depth in [a.shallow, a.deep] {
        for plain in [true, false] {
            let name = if plain {
                format!("resnet{depth}-plain")
            } else {
                format!("resnet{depth}")
            };
            registry::find(&name)?;
            let spec = ModelSpec {
                name: name.clone(),
                input: d.train.shape,
                class_names: d.class_names.clone(),
                mean: d.mean.clone(),
                std: d.std.clone(),
                finetune: false,
                variant: Variant {
                    width: a.width,
                    ..Variant::default()
                },
            };
            let config = TrainConfig {
                batch: a.batch_size,
                seed: 1,
                opt: OptSettings {
                    kind: "sgd".into(),
                    lr: a.lr,
                    momentum: 0.9,
                    weight_decay: 0.0,
                    cosine_epochs: None,
                },
                augment: None,
            };
            let mut c = Classifier::new(&gpu, spec, config)?;
            let mut epochs = Vec::new();
            let t0 = std::time::Instant::now();
            for e in 0..a.epochs {
                let run = c.run_epoch(&d.train, None, |_| {})?;
                let v = crate::core::eval::evaluate(&gpu, c.net.as_ref(), &d.val, EVAL_BATCH)?;
                eprintln!(
                    "{name} epoch {}: train error {:.4}, validation error {:.4}",
                    e + 1,
                    1.0 - run.acc,
                    1.0 - v.acc
                );
                epochs.push(json!({"epoch": e + 1, "train_error": 1.0 - run.acc,
                                   "train_loss": run.loss, "val_error": 1.0 - v.acc}));
            }
            runs.push(json!({"model": name, "seconds": t0.elapsed().as_secs_f64(),
                             "epochs": epochs}));
        }
    }
    Ok(
        json!({"study": "degradation", "data": a.data, "width": a.width, "lr": a.lr,
              "batch": a.batch_size, "runs": runs}),
    )
}

/// Each checkpoint's classifier, and the data fitted to the first.
fn trained_runs(
    a: &CheckpointsArgs,
) -> Result<(gpu_nn::Gpu, Vec<Classifier>, crate::data::Loaded)> {
    ensure!(a.batch_size > 0, "--batch-size must be positive");
    let gpu = gpu()?;
    let mut runs = Vec::new();
    for p in &a.checkpoint {
        let c = Checkpoint::load(p)?;
        runs.push(Classifier::from_checkpoint(&gpu, &c).with_context(|| p.display().to_string())?);
    }
    let first = &runs[0].spec;
    let mut d = load_train_data(&a.data, first.input, Some(a.batch_size))?;
    fit_data(&mut d, first)?;
    for (r, p) in runs.iter().zip(&a.checkpoint) {
        ensure!(
            r.spec.input == first.input && r.spec.mean == first.mean && r.spec.std == first.std,
            "{}: its input differs from the first checkpoint's",
            p.display()
        );
    }
    Ok((gpu, runs, d))
}

fn response(a: CheckpointsArgs) -> Result<serde_json::Value> {
    let (gpu, runs, d) = trained_runs(&a)?;
    ensure!(!d.val.is_empty(), "{}: no validation images", a.data);
    let idx: Vec<usize> = (0..d.val.len()).collect();
    let (x, _) = d.val.batch(&gpu, &idx)?;
    let mut out = Vec::new();
    for r in &runs {
        let rows = residual_response(r.net.as_ref(), &x)
            .with_context(|| r.spec.name.clone())?
            .wait_blocking()?;
        out.push(json!({
            "model": r.spec.name, "step": r.progress.step,
            "blocks": rows.iter().map(|b| json!({
                "block": b.block, "branch_std": b.branch_std, "ratio": b.ratio,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({"study": "response", "images": idx.len(), "runs": out}))
}

fn landscape(a: LandscapeArgs) -> Result<serde_json::Value> {
    ensure!(
        a.grid >= 2 && a.line >= 2,
        "--grid and --line need at least 2 points"
    );
    let (gpu, runs, d) = trained_runs(&a.runs)?;
    ensure!(!d.train.is_empty(), "{}: no training images", a.runs.data);
    let idx: Vec<usize> = (0..d.train.len()).collect();
    let batch = d.train.batch(&gpu, &idx)?;
    let mut out = Vec::new();
    for r in &runs {
        let theta = nn::read_state(r.net.as_ref())?.wait_blocking()?;
        // The initial weights, rebuilt from the run's seed.
        let fresh = r.spec.build(&gpu, r.config.seed)?;
        let theta0 = nn::read_state(fresh.as_ref())?.wait_blocking()?;
        let scratch = r.spec.build(&gpu, r.config.seed)?;
        let mut l = Landscape::new(scratch, batch.clone(), theta, theta0, (a.line, a.grid, 11))?;
        l.run_blocking()?;
        out.push(json!({
            "model": r.spec.name, "step": r.progress.step,
            "line": l.line.iter().map(|(t, v)| json!({"t": t, "loss": v})).collect::<Vec<_>>(),
            "alphas": l.alphas, "grid": l.grid,
        }));
    }
    Ok(json!({"study": "landscape", "images": idx.len(), "runs": out}))
}
