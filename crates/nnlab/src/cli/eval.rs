//! `nnlab eval`: accuracy and loss of a checkpoint on a dataset's validation split.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;
use serde_json::json;

use super::{fit_data, gpu, load_classifier, load_train_data};
use crate::core::eval::evaluate;

/// `nnlab eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A classifier checkpoint written by `nnlab train` or saved from the app.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data as for `train`; evaluates its validation/test split.
    #[arg(long)]
    pub data: String,
    /// Evaluate the first N images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per batch (fewer where the device needs it).
    #[arg(long, default_value_t = crate::core::EVAL_BATCH)]
    pub batch_size: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nnlab eval`.
pub fn eval(a: EvalArgs) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be positive");
    let gpu = gpu()?;
    let (net, spec) = load_classifier(&gpu, &a.checkpoint)?;
    let mut d = load_train_data(&a.data, spec.input, a.limit)?;
    fit_data(&mut d, &spec)?;
    ensure!(!d.val.is_empty(), "{}: no validation images", a.data);
    let r = evaluate(&gpu, net.as_ref(), &d.val, a.batch_size)?;
    if a.json {
        let out = json!({"checkpoint": a.checkpoint, "model": spec.name, "images": r.images,
                         "loss": r.loss, "accuracy": r.acc});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("data: {}", d.description);
        println!(
            "{} on {} validation images: accuracy {:.2}%, loss {:.4}",
            spec.name,
            r.images,
            100.0 * r.acc,
            r.loss
        );
    }
    Ok(())
}
