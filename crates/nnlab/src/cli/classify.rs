//! `nnlab classify`: top-k classes of image files, from a checkpoint or torchvision weights.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use gpu_nn::Gpu;
use gpu_nn::nn::{self, Ctx};
use serde_json::json;

use super::{gpu, load_classifier};
use crate::checkpoint::read_safetensors;
use crate::core::ModelSpec;
use crate::images::{self, Preprocess};
use crate::registry;

/// `nnlab classify`.
#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Image files (PNG, JPEG, GIF, BMP, WebP; any size, colour or grey).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The classifier.
    #[command(flatten)]
    pub source: Source,
    /// Classes to show per image.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// Invert intensities first (dark digits on white paper for an MNIST model).
    #[arg(long)]
    pub invert: bool,
    /// Print JSON (with logits and probabilities of every class).
    #[arg(long)]
    pub json: bool,
}

/// Where a classifier comes from: a checkpoint, or torchvision weights and a model name.
#[derive(Args, Debug)]
pub struct Source {
    /// A classifier checkpoint written by `nnlab train`.
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// torchvision-named weights (.safetensors) instead of a checkpoint; needs --model.
    /// With 1000 classes they get ImageNet's names, else numbers (the file holds none); input
    /// is normalised as ImageNet.
    #[arg(long, requires = "model")]
    pub weights: Option<PathBuf>,
    /// Model the --weights are for (resnet18, googlenet, ...).
    #[arg(long)]
    pub model: Option<String>,
    /// Side of the square input for --weights (default 224 for resnet18/googlenet).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub image_size: Option<u32>,
}

impl Source {
    /// Builds the classifier and its spec.
    pub fn load(&self, gpu: &Gpu) -> Result<(Box<dyn nn::Module>, ModelSpec)> {
        match (&self.checkpoint, &self.weights, &self.model) {
            (Some(ck), _, _) => load_classifier(gpu, ck),
            (None, Some(w), Some(model)) => {
                classifier_from_weights(gpu, w, model, self.image_size.map(|s| s as usize))
            }
            _ => bail!("give --checkpoint, or --weights with --model"),
        }
    }
}

/// A model with torchvision weights for classification: the class count comes from the
/// file's classifier head, the input is colour at `size` (default as for image folders).
fn classifier_from_weights(
    gpu: &Gpu,
    path: &Path,
    model: &str,
    size: Option<usize>,
) -> Result<(Box<dyn nn::Module>, ModelSpec)> {
    let info = registry::find(model)?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (state, _) = read_safetensors(&bytes, &path.display().to_string())?;
    let head = format!("{}weight", info.head());
    let classes = state
        .get(&head)
        .and_then(|t| t.shape.first().copied())
        .with_context(|| format!("{}: no {head} (the classifier) in the file", path.display()))?;
    let input = info.input.folder_shape(size);
    let net = info.build(gpu, input, classes, 0)?;
    crate::weights::load_bytes(net.as_ref(), &bytes, &path.display().to_string(), None)?;
    let p = Preprocess::default_for(input)?;
    let spec = ModelSpec {
        name: model.to_string(),
        input,
        class_names: registry::class_names_for(classes),
        mean: p.mean,
        std: p.std,
        finetune: false,
        variant: Default::default(),
    };
    Ok((net, spec))
}

/// Every image decoded and prepared as `spec`'s input (the first bad file is the error).
pub(super) fn model_inputs(spec: &ModelSpec, paths: &[PathBuf], invert: bool) -> Result<Vec<f32>> {
    let p = Preprocess {
        shape: spec.input,
        mean: spec.mean.clone(),
        std: spec.std.clone(),
        invert,
    };
    let mut x = Vec::new();
    for path in paths {
        x.extend(images::load_input(path, &p)?);
    }
    Ok(x)
}

/// Runs `nnlab classify`. Every image is decoded before the model runs: an unreadable or
/// undecodable file fails the whole command, naming the file, and nothing is printed.
pub fn classify(a: ClassifyArgs) -> Result<()> {
    ensure!(a.top_k > 0, "--top-k must be at least 1");
    let gpu = gpu()?;
    let (net, spec) = a.source.load(&gpu)?;
    let x = model_inputs(&spec, &a.images, a.invert)?;
    let [ch, h, w] = spec.input;
    let n = a.images.len();
    let logits = {
        let _g = gpu_nn::no_grad();
        let xt = gpu_nn::Tensor::from_slice(&gpu, &x, &[n, ch, h, w])?;
        net.forward(&xt, &mut Ctx::eval())?.to_vec_blocking()?
    };
    let k = spec.classes();
    let mut out = Vec::new();
    for (i, path) in a.images.iter().enumerate() {
        let l = &logits[i * k..(i + 1) * k];
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = l.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        let probs: Vec<f32> = e.iter().map(|v| v / sum).collect();
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let top: Vec<_> = order
            .iter()
            .take(a.top_k)
            .map(|&j| json!({"class": spec.class_names[j], "index": j, "probability": probs[j]}))
            .collect();
        if !a.json {
            let shown: Vec<String> = order
                .iter()
                .take(a.top_k)
                .map(|&j| format!("{} {:.1}%", spec.class_names[j], 100.0 * probs[j]))
                .collect();
            println!("{}: {}", path.display(), shown.join(", "));
        }
        out.push(json!({"file": path, "top": top, "logits": l, "probabilities": probs}));
    }
    if a.json {
        let doc = json!({"model": spec.name, "classes": spec.class_names, "results": out});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
