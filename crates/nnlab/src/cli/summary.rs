//! `nnlab summary`: a model's layer table (output shape, parameters, multiply-accumulates)
//! and its totals, like torchinfo.

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::json;

use super::gpu;
use crate::core::summary::{summarise, thousands};
use crate::registry;

/// `nnlab summary`.
#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Model (`nnlab models` lists them).
    #[arg(long)]
    pub model: String,
    /// Input as CxHxW (default: the model's, 1x28x28 or 3x32x32 or 3x224x224).
    #[arg(long)]
    pub input: Option<String>,
    /// Output classes (default: 1000 for torchvision's layouts, else 10).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Images per batch the activation memory is stated for.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses `3x224x224`.
pub(super) fn parse_input(s: &str) -> Result<[usize; 3]> {
    let v: Vec<usize> = s
        .split(['x', 'X'])
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--input {s}: expected CxHxW, e.g. 3x224x224"))?;
    match v[..] {
        [c, h, w] if c * h * w > 0 => Ok([c, h, w]),
        _ => bail!("--input {s}: expected three positive sizes, CxHxW"),
    }
}

/// Runs `nnlab summary`.
pub fn summary(a: SummaryArgs) -> Result<()> {
    let info = registry::find(&a.model)?;
    ensure!(
        info.is_classifier(),
        "{}: the summary covers the classifiers (`nnlab models` lists the DCGAN's parameters)",
        a.model
    );
    let input = match &a.input {
        Some(s) => parse_input(s)?,
        None => info.input.default_shape(),
    };
    let classes = a.classes.unwrap_or(info.default_classes());
    let gpu = gpu()?;
    let net = info.build(&gpu, input, classes, 0)?;
    let s = summarise(&gpu, net.as_ref(), input)?;
    let act = s.activation_bytes * a.batch_size as u64;
    if a.json {
        let layers: Vec<_> = s
            .layers
            .iter()
            .map(|l| {
                json!({"layer": l.path, "depth": l.depth, "kind": l.kind, "output": l.output,
                       "parameters": l.params, "macs": l.macs})
            })
            .collect();
        let out = json!({"model": a.model, "input": input, "classes": classes,
                         "parameters": s.params, "macs": s.macs,
                         "activation_bytes_per_image": s.activation_bytes,
                         "batch_size": a.batch_size, "activation_bytes": act,
                         "layers": layers});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let shape = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
    let name_w = s
        .layers
        .iter()
        .map(|l| 2 * l.depth + l.path.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<name_w$}  {:<12}  {:>14}  {:>14}  {:>16}",
        "layer", "kind", "output", "parameters", "MACs"
    );
    for l in &s.layers {
        let name = format!("{}{}", "  ".repeat(l.depth), l.path);
        println!(
            "{name:<name_w$}  {:<12}  {:>14}  {:>14}  {:>16}",
            l.kind,
            shape(&l.output),
            thousands(l.params),
            thousands(l.macs)
        );
    }
    println!(
        "{} at {}: {} parameters, {} multiply-accumulates per image, layer outputs \
         {:.1} MB per image ({:.1} MB at batch {})",
        a.model,
        shape(&input),
        thousands(s.params),
        if s.macs >= 100_000_000 {
            format!("{:.3} G", s.macs as f64 / 1e9)
        } else {
            format!("{:.2} M", s.macs as f64 / 1e6)
        },
        s.activation_bytes as f64 / 1e6,
        act as f64 / 1e6,
        a.batch_size
    );
    Ok(())
}
