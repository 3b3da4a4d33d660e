//! `nnlab export`: a checkpoint (classifier or DCGAN), torchvision weights, or a model's fresh
//! weights as an ONNX file; optionally a sample of inputs with nnlab's outputs for them, to
//! check a runtime against.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use gpu_nn::Gpu;
use gpu_nn::init::SeedRng;
use gpu_nn::models::{Generator, LATENT};
use gpu_nn::nn::{Ctx, Module, read_state_blocking};
use safetensors::{Dtype, tensor::TensorView};

use super::summary::parse_input;
use super::{ensure_writable_file, gpu, load_classifier};
use crate::checkpoint::{Checkpoint, write_atomic};
use crate::core::ModelSpec;
use crate::core::gan::load_generator;
use crate::export;
use crate::images::Preprocess;
use crate::registry;

/// `nnlab export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint written by `nnlab train` or `nnlab gan` (the DCGAN's generator is
    /// exported).
    #[arg(long, conflicts_with_all = ["weights", "model"])]
    pub checkpoint: Option<PathBuf>,
    /// torchvision-named weights (.safetensors); needs --model.
    #[arg(long, requires = "model")]
    pub weights: Option<PathBuf>,
    /// Model of the --weights; alone, the model with fresh weights (to look at in Netron).
    #[arg(long)]
    pub model: Option<String>,
    /// Input as CxHxW for --model (default: the model's).
    #[arg(long)]
    pub input: Option<String>,
    /// Classes for a fresh --model (default: 1000 for torchvision's layouts, else 10).
    #[arg(long)]
    pub classes: Option<usize>,
    /// The ONNX file to write.
    #[arg(long)]
    pub onnx: PathBuf,
    /// Also write random inputs and nnlab's outputs for them (safetensors: `input`,
    /// `output`), to compare a runtime's results with.
    #[arg(long)]
    pub sample: Option<PathBuf>,
    /// Inputs in the --sample.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub sample_batch: u32,
}

/// What is exported.
enum Subject {
    Classifier(Box<dyn Module>, ModelSpec),
    Generator(Box<Generator>, f32),
}

/// Runs `nnlab export`.
pub fn export(a: ExportArgs) -> Result<()> {
    ensure_writable_file(&a.onnx, "--onnx")?;
    if let Some(s) = &a.sample {
        ensure_writable_file(s, "--sample")?;
    }
    let gpu = gpu()?;
    let subject = load(&gpu, &a)?;
    let (bytes, input) = match &subject {
        Subject::Classifier(net, spec) => {
            let w = read_state_blocking(net.as_ref())?;
            let b = export::classifier_onnx(&gpu, net.as_ref(), &w, spec)?;
            (b, spec.input.to_vec())
        }
        Subject::Generator(g, width) => {
            let w = read_state_blocking(g.as_ref())?;
            (export::generator_onnx(&gpu, g, &w, *width)?, vec![LATENT])
        }
    };
    export::write(&a.onnx, &bytes)?;
    println!(
        "{}: {} bytes (ONNX IR {}, opset {})",
        a.onnx.display(),
        bytes.len(),
        export::IR_VERSION,
        export::OPSET
    );
    if let Some(path) = &a.sample {
        let net: &dyn Module = match &subject {
            Subject::Classifier(n, _) => n.as_ref(),
            Subject::Generator(g, _) => g.as_ref(),
        };
        write_sample(&gpu, net, &input, a.sample_batch as usize, path)?;
        println!(
            "{}: {} inputs and nnlab's outputs",
            path.display(),
            a.sample_batch
        );
    }
    Ok(())
}

fn load(gpu: &Gpu, a: &ExportArgs) -> Result<Subject> {
    if let Some(ck) = &a.checkpoint {
        let c = Checkpoint::load(ck)?;
        let kind = c
            .meta_str(&["kind"])
            .with_context(|| ck.display().to_string())?;
        return match kind {
            "gan" => {
                let width = c.meta_f64(&["gan", "width"])? as f32;
                Ok(Subject::Generator(
                    Box::new(load_generator(gpu, &c)?),
                    width,
                ))
            }
            "classifier" => {
                let (net, spec) = load_classifier(gpu, ck)?;
                Ok(Subject::Classifier(net, spec))
            }
            k => bail!("{}: a {k} checkpoint cannot be exported", ck.display()),
        };
    }
    let Some(name) = &a.model else {
        bail!("give --checkpoint, --weights with --model, or --model");
    };
    let info = registry::find(name)?;
    if !info.is_classifier() {
        ensure!(
            a.weights.is_none(),
            "--weights are for classifiers; give a DCGAN --checkpoint"
        );
        let (g, _) = info.build_gan(gpu, 1.0, 0)?;
        return Ok(Subject::Generator(Box::new(g), 1.0));
    }
    let input = match &a.input {
        Some(s) => parse_input(s)?,
        None => info.input.default_shape(),
    };
    let mut classes = a.classes.unwrap_or(info.default_classes());
    if let Some(w) = &a.weights {
        let bytes = std::fs::read(w).with_context(|| format!("cannot read {}", w.display()))?;
        let (state, _) = crate::checkpoint::read_safetensors(&bytes, &w.display().to_string())?;
        let head = format!("{}weight", info.head());
        classes = state
            .get(&head)
            .and_then(|t| t.shape.first().copied())
            .with_context(|| format!("{}: no {head} (the classifier) in the file", w.display()))?;
        let net = info.build(gpu, input, classes, 0)?;
        crate::weights::load_bytes(net.as_ref(), &bytes, &w.display().to_string(), None)?;
        return Ok(Subject::Classifier(net, fresh_spec(name, input, classes)?));
    }
    let net = info.build(gpu, input, classes, 0)?;
    Ok(Subject::Classifier(net, fresh_spec(name, input, classes)?))
}

/// The spec of a model that did not come from a checkpoint: ImageNet's or numbered classes, the
/// normalisation nnlab uses for such inputs.
fn fresh_spec(name: &str, input: [usize; 3], classes: usize) -> Result<ModelSpec> {
    let p = Preprocess::default_for(input)?;
    Ok(ModelSpec {
        name: name.to_string(),
        input,
        class_names: registry::class_names_for(classes),
        mean: p.mean,
        std: p.std,
        finetune: false,
        variant: Default::default(),
    })
}

/// Standard normal inputs and the model's eval-mode outputs, as safetensors.
fn write_sample(gpu: &Gpu, net: &dyn Module, input: &[usize], n: usize, path: &Path) -> Result<()> {
    let mut shape = vec![n];
    shape.extend(input);
    let mut rng = SeedRng::new(7);
    let x: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.normal())
        .collect();
    let y = {
        let _g = gpu_nn::no_grad();
        let xt = gpu_nn::Tensor::from_slice(gpu, &x, &shape)?;
        net.forward(&xt, &mut Ctx::eval())?
    };
    let y_shape = y.shape().to_vec();
    let y = y.to_vec_blocking()?;
    let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let (xb, yb) = (bytes(&x), bytes(&y));
    let views = vec![
        ("input", TensorView::new(Dtype::F32, shape, &xb)?),
        ("output", TensorView::new(Dtype::F32, y_shape, &yb)?),
    ];
    let data = safetensors::serialize(views, None::<HashMap<String, String>>)?;
    write_atomic(path, &data)
}
