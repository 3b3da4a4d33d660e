//! `nnlab eval`: accuracy and loss of a checkpoint on a dataset's validation split.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;
use serde_json::json;

use super::{fit_data, gpu, load_classifier, load_train_data};
use crate::core::Confusion;
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
    /// Also print the confusion matrix (rows true class, columns predicted) and each
    /// class's accuracy.
    #[arg(long)]
    pub confusion: bool,
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
    let m = r.confusion(&d.val.labels, d.val.classes);
    if a.json {
        let mut out = json!({"checkpoint": a.checkpoint, "model": spec.name, "images": r.images,
                         "loss": r.loss, "accuracy": r.acc});
        if a.confusion {
            out["confusion"] = json!({
                "classes": spec.class_names,
                "counts": m.counts.chunks(m.classes).collect::<Vec<_>>(),
                "per_class_accuracy": m.per_class_accuracy(),
            });
        }
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
        if a.confusion {
            print!("{}", confusion_table(&m, &spec.class_names));
        }
    }
    Ok(())
}

/// The matrix as text: a row per true class, its counts and its accuracy.
fn confusion_table(m: &Confusion, names: &[String]) -> String {
    let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
    let label_w = (0..m.classes)
        .map(|i| name(i).len())
        .max()
        .unwrap_or(1)
        .max(4);
    let cell_w = m
        .counts
        .iter()
        .map(|c| c.to_string().len())
        .max()
        .unwrap_or(1)
        .max(3);
    let mut s = format!("{:>label_w$}  predicted\n{:>label_w$}", "true", "");
    for p in 0..m.classes {
        s += &format!(" {:>cell_w$}", p);
    }
    s += "  accuracy\n";
    let acc = m.per_class_accuracy();
    for (t, (row, a)) in m.counts.chunks(m.classes).zip(&acc).enumerate() {
        s += &format!("{:>label_w$}", name(t));
        for n in row {
            s += &format!(" {n:>cell_w$}");
        }
        s += &format!("  {:>7.2}%\n", 100.0 * a);
    }
    s
}
