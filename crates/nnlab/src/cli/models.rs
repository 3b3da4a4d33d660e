//! `nnlab models`: the model registry, one line per model.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::core::summary::thousands;
use crate::registry::{Arch, MODELS};

/// `nnlab models`.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn input(m: &crate::registry::ModelInfo) -> String {
    match m.arch {
        Arch::Dcgan => "z100 -> 1x28x28".to_string(),
        _ => m.input.describe().to_string(),
    }
}

/// Runs `nnlab models` (needs no GPU).
pub fn models(a: ModelsArgs) -> Result<()> {
    if a.json {
        let rows: Vec<_> = MODELS
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "input": input(m),
                    "parameters": m.params,
                    "classes": m.is_classifier().then(|| m.default_classes()),
                    "torchvision_layout": m.torchvision(),
                    "description": m.description,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:>12}  description",
        "model", "input", "parameters"
    );
    for m in MODELS {
        println!(
            "{:<16} {:<16} {:>12}  {}{}",
            m.name,
            input(m),
            thousands(m.params as u64),
            m.description,
            if m.torchvision() { " [--weights]" } else { "" }
        );
    }
    println!(
        "\nParameters at the default input, with 10 classes (1000 for the torchvision \
         layouts). Cx32x32: any channel count, 28x28 too. The CIFAR-style ResNets (He et \
         al. 2015) take 1x1 projection shortcuts where the shape changes (torchvision's \
         downsample), not the paper's zero-padding option A; their -plain twins have none."
    );
    Ok(())
}
