//! The headless subcommands: their arguments (clap) and what they do. `main.rs` only
//! dispatches.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use gpu_nn::Gpu;
use gpu_nn::nn::{self, Ctx, HostState};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::checkpoint::{Checkpoint, read_safetensors, write_atomic};
use crate::data::{self, Augment, Dataset, Loaded};
use crate::gan::{self, GanTrainer};
use crate::images::{self, Preprocess};
use crate::train::{self, ModelSpec, OptSettings, TrainConfig, Trainer};

/// File name of the latest checkpoint in a `--checkpoint-dir`.
pub const LAST: &str = "last.safetensors";

fn gpu() -> Result<Gpu> {
    pollster::block_on(Gpu::new()).context("no usable GPU")
}

fn bar(total: usize, prefix: String) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix);
    pb
}

/// `nnlab train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model: mnist-cnn, resnet8, resnet14, resnet20, resnet20-plain, resnet18,
    /// googlenet-small, googlenet, vgg11-small. With --resume, taken from the checkpoint.
    #[arg(long)]
    pub model: Option<String>,
    /// Data: `mnist` or `fashion-mnist` (bundled 10k test set, demo split 9000/1000), or a
    /// directory with the four MNIST-format IDX files (raw or .gz), CIFAR-10 binary batches,
    /// or an image folder (one sub-folder per class; optional train/ and val/ splits).
    #[arg(long)]
    pub data: String,
    /// Total epochs (a resumed run continues up to this many).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// sgd or adam.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.5)]
    pub momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Anneal the learning rate from --lr to 0 over --epochs epochs (cosine, torch's
    /// CosineAnnealingLR stepped per epoch). With --resume, taken from the checkpoint.
    #[arg(long)]
    pub cosine: bool,
    /// Seed of initialisation, shuffling, dropout and augmentation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Use only the first N training and the first N validation images (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Random crop (padding 4) and horizontal flip of training images.
    #[arg(long)]
    pub augment: bool,
    /// Write per-epoch metrics to this file: .csv or .json.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Save `last.safetensors` here after every epoch (atomically).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from `last.safetensors` in --checkpoint-dir (model, optimizer, batch size,
    /// seed and position come from it); starts fresh if there is none yet.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
    /// Also save a checkpoint every N steps within an epoch (long epochs on slow devices).
    #[arg(long, requires = "checkpoint_dir", value_parser = clap::value_parser!(u64).range(1..))]
    pub save_every: Option<u64>,
    /// torchvision-named weights (.safetensors) to start from (resnet18, googlenet, ...).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Transfer learning: freeze everything but a new `fc` for the data's classes
    /// (needs --weights).
    #[arg(long, requires = "weights")]
    pub finetune: bool,
    /// Side of the square input images of an image folder are resized to (default: 224
    /// for resnet18/googlenet, 28 for mnist-cnn, 32 otherwise).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub image_size: Option<u32>,
}

/// Loads `--weights` (a torchvision-named `.safetensors`) into `net`: strictly, or when
/// fine-tuning everything but `fc`, which the model then has fresh for its own classes.
pub fn load_weights(net: &dyn nn::Module, path: &Path, finetune: bool) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    load_weights_bytes(net, &bytes, &path.display().to_string(), finetune)
}

/// [`load_weights`] from bytes; `name` names the source in errors. Any missing key,
/// unexpected key or shape mismatch is an error listing all of them; nothing is loaded then.
pub fn load_weights_bytes(
    net: &dyn nn::Module,
    bytes: &[u8],
    name: &str,
    finetune: bool,
) -> Result<()> {
    let (mut state, _) = read_safetensors(bytes, name)?;
    if finetune {
        state.retain(|k, _| !k.starts_with("fc."));
        // Check that only fc is left over before loading anything.
        let mut model_keys = Vec::new();
        net.visit("", &mut |k, _| model_keys.push(k));
        let missing: Vec<&String> = model_keys
            .iter()
            .filter(|k| !k.starts_with("fc.") && !state.contains_key(*k))
            .filter(|k| !k.ends_with("num_batches_tracked"))
            .collect();
        let unexpected: Vec<&String> = state.keys().filter(|k| !model_keys.contains(k)).collect();
        ensure!(
            missing.is_empty() && unexpected.is_empty(),
            "{name}: weights do not fit the model:\nmissing keys: {missing:?}\nunexpected keys: {unexpected:?}"
        );
    }
    nn::load_state(net, &state, !finetune)
        .with_context(|| format!("{name}: weights do not fit the model"))?;
    Ok(())
}

fn load_train_data(spec: &str, input: [usize; 3], limit: Option<usize>) -> Result<Loaded> {
    let mut d = data::load_data(spec, Some(input))?;
    if let Some(n) = limit {
        ensure!(n > 0, "--limit must be positive");
        d.train.truncate(n);
        d.val.truncate(n);
    }
    Ok(d)
}

/// Converts a dataset normalised with (from_mean, from_std) to (to_mean, to_std).
fn renormalise(d: &mut Dataset, from: (&[f32], &[f32]), to: (&[f32], &[f32])) {
    if from == to {
        return;
    }
    let [c, h, w] = d.shape;
    for (i, v) in d.images.iter_mut().enumerate() {
        let ch = (i / (h * w)) % c;
        *v = (*v * from.1[ch] + from.0[ch] - to.0[ch]) / to.1[ch];
    }
}

/// Checks that `d` fits a model spec (input shape, classes) and converts its normalisation
/// to the spec's.
fn fit_data(d: &mut Loaded, spec: &ModelSpec) -> Result<()> {
    ensure!(
        d.train.shape == spec.input,
        "the data's images are {:?}, the model takes {:?}",
        d.train.shape,
        spec.input
    );
    ensure!(
        d.class_names == spec.class_names,
        "the data's classes {:?} are not the model's {:?}",
        d.class_names,
        spec.class_names
    );
    let (from_m, from_s) = (d.mean.clone(), d.std.clone());
    for set in [&mut d.train, &mut d.val] {
        renormalise(set, (&from_m, &from_s), (&spec.mean, &spec.std));
    }
    Ok(())
}

fn write_metrics(path: &Path, rows: &[serde_json::Value]) -> Result<()> {
    let cols = [
        "epoch",
        "step",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "img_per_s",
        "seconds",
    ];
    let text = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::to_string_pretty(rows)?,
        Some("csv") => {
            let mut s = cols.join(",") + "\n";
            for r in rows {
                let line: Vec<String> = cols
                    .iter()
                    .map(|c| r.get(*c).map(|v| v.to_string()).unwrap_or_default())
                    .collect();
                s += &(line.join(",") + "\n");
            }
            s
        }
        _ => bail!("--metrics {}: use a .csv or .json file", path.display()),
    };
    write_atomic(path, text.as_bytes())
}

/// Runs `nnlab train`.
pub fn train(a: TrainArgs) -> Result<()> {
    ensure!(
        a.batch_size > 0 && a.epochs > 0,
        "--batch-size and --epochs must be positive"
    );
    if let Some(m) = &a.metrics {
        // Fail now, not after the first epoch.
        ensure!(
            matches!(m.extension().and_then(|e| e.to_str()), Some("csv" | "json")),
            "--metrics {}: use a .csv or .json file",
            m.display()
        );
    }
    let last = a.checkpoint_dir.as_ref().map(|d| d.join(LAST));
    if let Some(d) = &a.checkpoint_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let gpu = gpu()?;
    let resume_from = last.as_ref().filter(|p| a.resume && p.is_file());
    let (mut trainer, d) = if let Some(p) = resume_from {
        let c = Checkpoint::load(p)?;
        let t = Trainer::from_checkpoint(&gpu, &c)
            .with_context(|| format!("cannot resume from {}", p.display()))?;
        if let Some(m) = &a.model {
            ensure!(
                *m == t.spec.name,
                "--model {m}, but {} holds a {}",
                p.display(),
                t.spec.name
            );
        }
        let mut d = load_train_data(&a.data, t.spec.input, a.limit)?;
        fit_data(&mut d, &t.spec)?;
        println!(
            "resuming {} from {}: epoch {}, batch {}, step {} (model, optimizer, batch size \
             and seed from the checkpoint)",
            t.spec.name,
            p.display(),
            t.progress.epoch + 1,
            t.progress.batch,
            t.progress.step
        );
        (t, d)
    } else {
        if a.resume {
            println!("--resume: no checkpoint in the checkpoint dir yet, starting fresh");
        }
        let model = a.model.clone().unwrap_or_else(|| "mnist-cnn".into());
        ensure!(
            train::MODELS.contains(&model.as_str()),
            "unknown model '{model}' (known: {})",
            train::MODELS.join(", ")
        );
        let d = load_train_data(
            &a.data,
            train::folder_input(&model, a.image_size.map(|s| s as usize)),
            a.limit,
        )?;
        let spec = ModelSpec {
            name: model,
            input: d.train.shape,
            class_names: d.class_names.clone(),
            mean: d.mean.clone(),
            std: d.std.clone(),
            finetune: a.finetune,
        };
        let config = TrainConfig {
            batch: a.batch_size,
            seed: a.seed,
            opt: OptSettings {
                kind: a.optimizer.clone(),
                lr: a.lr,
                momentum: a.momentum,
                weight_decay: a.weight_decay,
                cosine_epochs: a.cosine.then_some(a.epochs),
            },
            augment: a.augment.then(|| Augment::crop_flip(&d.mean, &d.std)),
        };
        let t = match &a.weights {
            Some(w) => {
                // Weights first, then freezing, then the optimizer over what still trains.
                let net = train::build(&gpu, &spec.name, spec.input, spec.classes(), a.seed)?;
                load_weights(net.as_ref(), w, a.finetune)?;
                if a.finetune {
                    train::freeze_backbone(net.as_ref())?;
                }
                Trainer::with_net(&gpu, net, spec, config)?
            }
            None => Trainer::new(&gpu, spec, config)?,
        };
        (t, d)
    };
    println!("data: {}", d.description);
    println!(
        "{}: {} parameters ({} trainable), {} training / {} validation images, on {}",
        trainer.spec.name,
        nn::param_count(trainer.net.as_ref()),
        nn::parameters(trainer.net.as_ref())
            .iter()
            .map(|t| t.numel())
            .sum::<usize>(),
        d.train.len(),
        d.val.len(),
        gpu.adapter_info().name
    );
    let epochs = a.epochs;
    if trainer.progress.epoch >= epochs {
        println!(
            "the checkpoint already finished {} epochs; raise --epochs to train further",
            trainer.progress.epoch
        );
    }
    while trainer.progress.epoch < epochs {
        let e = trainer.progress.epoch;
        let t0 = std::time::Instant::now();
        let pb = bar(0, format!("{}/{epochs}", e + 1));
        let mut run = train::EpochRun::default();
        loop {
            let part = trainer.run_epoch(&d.train, a.save_every.map(|n| n as usize), |r| {
                pb.set_length(r.total as u64);
                pb.set_position(r.done as u64);
                pb.set_message(format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s",
                    r.loss,
                    100.0 * r.acc,
                    r.img_s
                ));
            })?;
            run = run.merge(part);
            if run.finished {
                break;
            }
            // A mid-epoch checkpoint (--save-every).
            if let Some(p) = &last {
                trainer.checkpoint()?.save(p)?;
                // suspend, not println: the line must appear without a terminal too.
                pb.suspend(|| println!("saved {} at step {}", p.display(), trainer.progress.step));
            }
        }
        pb.finish_and_clear();
        let (val_loss, val_acc) = train::evaluate(&gpu, trainer.net.as_ref(), &d.val, 500)?;
        let row = json!({
            "epoch": e + 1,
            "step": trainer.progress.step,
            "train_loss": run.loss,
            "train_acc": run.acc,
            "val_loss": if val_loss.is_finite() { json!(val_loss) } else { json!(null) },
            "val_acc": if val_acc.is_finite() { json!(val_acc) } else { json!(null) },
            "lr": trainer.config.opt.lr_at(e),
            "img_per_s": run.img_s,
            "seconds": t0.elapsed().as_secs_f64(),
        });
        trainer.history.push(row);
        let val = if d.val.is_empty() {
            "no validation images".to_string()
        } else {
            format!("val loss {val_loss:.4}  val acc {:.2}%", 100.0 * val_acc)
        };
        println!(
            "epoch {}: loss {:.4}  train acc {:.2}%  {val}  {:.0} img/s",
            e + 1,
            run.loss,
            100.0 * run.acc,
            run.img_s
        );
        if let Some(p) = &last {
            trainer.checkpoint()?.save(p)?;
            println!("saved {}", p.display());
        }
        if let Some(m) = &a.metrics {
            write_metrics(m, &trainer.history)?;
        }
    }
    Ok(())
}

/// `nnlab eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A classifier checkpoint written by `nnlab train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data as for `train`; evaluates its validation/test split.
    #[arg(long)]
    pub data: String,
    /// Evaluate the first N images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nnlab eval`.
pub fn eval(a: EvalArgs) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be positive");
    let c = Checkpoint::load(&a.checkpoint)?;
    let gpu = gpu()?;
    let (net, spec) =
        train::load_classifier(&gpu, &c).with_context(|| format!("{}", a.checkpoint.display()))?;
    let mut d = load_train_data(&a.data, spec.input, a.limit)?;
    fit_data(&mut d, &spec)?;
    ensure!(!d.val.is_empty(), "{}: no validation images", a.data);
    let (loss, acc) = train::evaluate(&gpu, net.as_ref(), &d.val, a.batch_size)?;
    if a.json {
        let out = json!({"checkpoint": a.checkpoint, "model": spec.name, "images": d.val.len(),
                         "loss": loss, "accuracy": acc});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("data: {}", d.description);
        println!(
            "{} on {} validation images: accuracy {:.2}%, loss {:.4}",
            spec.name,
            d.val.len(),
            100.0 * acc,
            loss
        );
    }
    Ok(())
}

/// `nnlab classify`.
#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Image files (PNG, JPEG, GIF, BMP, WebP; any size, colour or grey).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// A classifier checkpoint written by `nnlab train`.
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// torchvision-named weights (.safetensors) instead of a checkpoint; needs --model.
    /// Classes are numbered (the file holds no names); input is normalised as ImageNet.
    #[arg(long, requires = "model")]
    pub weights: Option<PathBuf>,
    /// Model the --weights are for (resnet18, googlenet, ...).
    #[arg(long)]
    pub model: Option<String>,
    /// Side of the square input for --weights (default 224 for resnet18/googlenet).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub image_size: Option<u32>,
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

/// A model with torchvision weights for classification: the class count comes from the
/// file's `fc.weight`, the input is colour at `size` (default as for image folders).
fn classifier_from_weights(
    gpu: &Gpu,
    path: &Path,
    model: &str,
    size: Option<usize>,
) -> Result<(Box<dyn nn::Module>, ModelSpec)> {
    let state = read_weights(path)?;
    let classes = state
        .get("fc.weight")
        .and_then(|t| t.shape.first().copied())
        .with_context(|| format!("{}: no fc.weight (classifier) in the file", path.display()))?;
    let input = train::folder_input(model, size);
    let net = train::build(gpu, model, input, classes, 0)?;
    nn::load_state(net.as_ref(), &state, true)
        .with_context(|| format!("{}: weights do not fit {model}", path.display()))?;
    let p = Preprocess::default_for(input)?;
    let spec = ModelSpec {
        name: model.to_string(),
        input,
        class_names: (0..classes).map(|i| format!("class {i}")).collect(),
        mean: p.mean,
        std: p.std,
        finetune: false,
    };
    Ok((net, spec))
}

/// Runs `nnlab classify`. Every image is decoded before the model runs: an unreadable or
/// undecodable file fails the whole command, naming the file, and nothing is printed.
pub fn classify(a: ClassifyArgs) -> Result<()> {
    ensure!(a.top_k > 0, "--top-k must be at least 1");
    let gpu = gpu()?;
    let (net, spec) = match (&a.checkpoint, &a.weights, &a.model) {
        (Some(ck), _, _) => {
            let c = Checkpoint::load(ck)?;
            train::load_classifier(&gpu, &c).with_context(|| format!("{}", ck.display()))?
        }
        (None, Some(w), Some(model)) => {
            classifier_from_weights(&gpu, w, model, a.image_size.map(|s| s as usize))?
        }
        _ => bail!("give --checkpoint, or --weights with --model"),
    };
    let p = Preprocess {
        shape: spec.input,
        mean: spec.mean.clone(),
        std: spec.std.clone(),
        invert: a.invert,
    };
    let mut x = Vec::new();
    for path in &a.images {
        x.extend(images::load_input(path, &p)?);
    }
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

/// `nnlab gan`.
#[derive(Args, Debug)]
pub struct GanArgs {
    /// Sample from this GAN checkpoint instead of training (with --out).
    #[arg(long, conflicts_with_all = ["checkpoint_dir", "resume"])]
    pub checkpoint: Option<PathBuf>,
    /// PNG grid of samples to write (after training, or from --checkpoint).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Number of samples in the grid.
    #[arg(long, default_value_t = 64)]
    pub samples: usize,
    /// Data to train on: mnist, fashion-mnist (bundled 9000-image demo split) or an IDX dir.
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// Epochs in total.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Width multiplier (1 = the DCGAN of the issue, 0.25 = a light one for slow devices).
    #[arg(long, default_value_t = 1.0)]
    pub width: f32,
    /// Seed of initialisation, shuffling and noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Train on the first N images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Save `last.safetensors` here after every epoch.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from `last.safetensors` in --checkpoint-dir.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
    /// A classifier checkpoint for 1x28x28 images (e.g. a trained mnist-cnn): report how
    /// many of the grid's samples it classifies with at least 0.9 confidence.
    #[arg(long, requires = "out")]
    pub judge: Option<PathBuf>,
}

fn write_grid(
    gpu: &Gpu,
    g: &gpu_nn::models::Generator,
    n: usize,
    out: &Path,
    judge: Option<&Path>,
) -> Result<()> {
    ensure!(n > 0, "--samples must be at least 1");
    let s = gan::sample(gpu, g, n, 12345)?;
    let cols = (n as f64).sqrt().ceil() as usize;
    write_atomic(out, &images::grid_png(&s, n, 28, 28, cols)?)?;
    println!("wrote {} ({n} samples)", out.display());
    if let Some(j) = judge {
        let (net, spec) = train::load_classifier(gpu, &Checkpoint::load(j)?)
            .with_context(|| format!("{}", j.display()))?;
        ensure!(
            spec.input == [1, 28, 28],
            "{}: the judge must take 1x28x28 images, it takes {:?}",
            j.display(),
            spec.input
        );
        // Samples are in [-1, 1]; the classifier expects its own normalisation.
        let x: Vec<f32> = s
            .iter()
            .map(|v| ((v + 1.0) / 2.0 - spec.mean[0]) / spec.std[0])
            .collect();
        let probs = {
            let _g = gpu_nn::no_grad();
            let xt = gpu_nn::Tensor::from_slice(gpu, &x, &[n, 1, 28, 28])?;
            net.forward(&xt, &mut Ctx::eval())?.to_vec_blocking()?
        };
        let k = spec.classes();
        let mut confident = 0;
        let mut counts = vec![0usize; k];
        for l in probs.chunks(k) {
            let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = l.iter().map(|v| (v - max).exp()).sum();
            let (best, _) =
                l.iter().enumerate().fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            // The top class's probability is exp(0) / sum.
            if 1.0 / sum >= 0.9 {
                confident += 1;
                counts[best] += 1;
            }
        }
        let per_class: Vec<String> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| format!("{}: {c}", spec.class_names[i]))
            .collect();
        let detail = if per_class.is_empty() {
            String::new()
        } else {
            format!(" ({})", per_class.join(", "))
        };
        println!(
            "judge {}: {confident}/{n} samples ({:.0}%) classified with >= 0.9 confidence{detail}",
            spec.name,
            100.0 * confident as f64 / n as f64,
        );
    }
    Ok(())
}

/// Runs `nnlab gan`.
pub fn gan(a: GanArgs) -> Result<()> {
    let gpu = gpu()?;
    if let Some(ck) = &a.checkpoint {
        let out = a
            .out
            .as_ref()
            .context("--checkpoint samples from a GAN: give --out grid.png")?;
        let c = Checkpoint::load(ck)?;
        let g = gan::load_generator(&gpu, &c).with_context(|| format!("{}", ck.display()))?;
        return write_grid(&gpu, &g, a.samples, out, a.judge.as_deref());
    }
    ensure!(
        a.batch_size > 0 && a.epochs > 0,
        "--batch-size and --epochs must be positive"
    );
    let last = a.checkpoint_dir.as_ref().map(|d| d.join(LAST));
    if let Some(d) = &a.checkpoint_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut t = match last.as_ref().filter(|p| a.resume && p.is_file()) {
        Some(p) => {
            let t = GanTrainer::from_checkpoint(&gpu, &Checkpoint::load(p)?)
                .with_context(|| format!("cannot resume from {}", p.display()))?;
            println!(
                "resuming from {}: epoch {}, step {}",
                p.display(),
                t.progress.epoch + 1,
                t.progress.step
            );
            t
        }
        None => GanTrainer::new(&gpu, a.width, a.batch_size, a.seed)?,
    };
    let mut d = data::load_data(&a.data, None)?;
    if let Some(n) = a.limit {
        ensure!(n > 0, "--limit must be positive");
        d.train.truncate(n);
    }
    ensure!(
        d.mean.len() == 1,
        "the DCGAN trains on grey 28x28 images; {} is not",
        a.data
    );
    let mut train_set = d.train;
    gan::to_tanh_range(&mut train_set, d.mean[0], d.std[0]);
    println!(
        "data: {}\nDCGAN (width {}): generator {} / discriminator {} parameters, {} images",
        d.description,
        t.width,
        nn::param_count(&t.g),
        nn::param_count(&t.d),
        train_set.len()
    );
    while t.progress.epoch < a.epochs {
        let e = t.progress.epoch;
        let pb = bar(0, format!("{}/{}", e + 1, a.epochs));
        let run = t.run_epoch(&train_set, None, |done, total, dl, gl| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
            pb.set_message(format!("D {dl:.3} G {gl:.3}"));
        })?;
        pb.finish_and_clear();
        let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
        println!(
            "epoch {}: D loss {:.4}  G loss {:.4}  {:.0} img/s",
            e + 1,
            mean(&run.d_losses),
            mean(&run.g_losses),
            run.img_s
        );
        if let Some(p) = &last {
            t.checkpoint()?.save(p)?;
            println!("saved {}", p.display());
        }
    }
    if let Some(out) = &a.out {
        write_grid(&gpu, &t.g, a.samples, out, a.judge.as_deref())?;
    }
    Ok(())
}

/// `nnlab bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Models to measure (comma-separated): mnist-cnn, resnet14, dcgan, and resnet18 (224x224,
    /// for GPUs: minutes per step on a CPU driver).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mnist-cnn,resnet14,dcgan"
    )]
    pub models: Vec<String>,
    /// Untimed steps first (pipeline compilation, pool warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also show where a training step's time goes, per kernel (the slowest first). Each
    /// kernel then runs on its own, so the img/s figures of a profiled run are lower.
    #[arg(long)]
    pub profile: bool,
    /// Kernels listed per model with --profile.
    #[arg(long, default_value_t = 12)]
    pub top: usize,
}

/// Per-step milliseconds and share of each of the `top` slowest kernels.
fn kernel_rows(k: &[gpu_nn::KernelTime], steps: usize, top: usize) -> Vec<(String, f64, f64, f64)> {
    let total: f64 = k.iter().map(|t| t.seconds).sum();
    k.iter()
        .take(top)
        .map(|t| {
            (
                t.entry.to_string(),
                t.calls as f64 / steps as f64,
                t.seconds * 1e3 / steps as f64,
                if total > 0.0 { t.seconds / total } else { 0.0 },
            )
        })
        .collect()
}

/// Runs `nnlab bench`.
pub fn bench(a: BenchArgs) -> Result<()> {
    let BenchArgs {
        models,
        warmup,
        steps,
        json,
        profile,
        top,
    } = a;
    anyhow::ensure!(steps > 0, "--steps must be at least 1");
    if let Some(m) = models
        .iter()
        .find(|m| !crate::bench::MODELS.contains(&m.as_str()))
    {
        anyhow::bail!(
            "unknown model '{m}' (known: {})",
            crate::bench::MODELS.join(", ")
        );
    }
    let gpu = if profile {
        gpu()?.with_profiling()
    } else {
        gpu()?
    };
    let a = gpu.adapter_info();
    let adapter = format!("{} ({:?})", a.name, a.backend);
    if !json {
        println!("adapter: {adapter}");
        if profile {
            println!("profiling: every kernel waits for the previous one (lower img/s)");
        }
        println!(
            "{:<10} {:>6} {:>12} {:>6} {:>12}",
            "model", "batch", "train img/s", "batch", "infer img/s"
        );
    }
    let mut rows = Vec::new();
    for m in &models {
        let r = crate::bench::run_one(&gpu, m, warmup, steps)?;
        if !json {
            println!(
                "{:<10} {:>6} {:>12.1} {:>6} {:>12.1}",
                r.model, r.train_batch, r.train_img_s, r.infer_batch, r.infer_img_s
            );
        }
        let kernels = kernel_rows(&r.train_kernels, steps, top);
        if !json && profile {
            println!(
                "  {:<32} {:>9} {:>9} {:>6}",
                "kernel", "calls/step", "ms/step", "share"
            );
            for (entry, calls, ms, share) in &kernels {
                println!(
                    "  {entry:<32} {calls:>9.1} {ms:>9.2} {:>5.1}%",
                    100.0 * share
                );
            }
        }
        let mut row = serde_json::json!({
            "model": r.model,
            "train_batch": r.train_batch,
            "train_img_per_s": r.train_img_s,
            "infer_batch": r.infer_batch,
            "infer_img_per_s": r.infer_img_s,
        });
        if profile {
            row["train_kernels"] = kernels
                .iter()
                .map(|(entry, calls, ms, share)| {
                    serde_json::json!({
                        "entry": entry, "calls_per_step": calls, "ms_per_step": ms, "share": share,
                    })
                })
                .collect();
        }
        rows.push(row);
    }
    if json {
        let out = serde_json::json!({ "adapter": adapter, "steps": steps, "results": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// Runs `nnlab info`.
pub fn info() -> Result<()> {
    let gpu = gpu()?;
    let a = gpu.adapter_info();
    println!("adapter: {} ({:?}, {:?})", a.name, a.backend, a.device_type);
    println!("driver:  {} {}", a.driver, a.driver_info);
    println!(
        "max storage binding: {} MiB",
        gpu.max_binding_bytes() / (1024 * 1024)
    );
    let x = gpu_nn::Tensor::from_slice(&gpu, &[-1.0, 2.0, -3.0, 4.0], &[4])?;
    let y = x.relu()?.sum()?.item_blocking()?;
    anyhow::ensure!(y == 6.0, "self-test: relu-sum gave {y}, expected 6");
    println!("self-test: ok (relu + sum on the GPU)");
    Ok(())
}

/// Reads a torchvision-named `.safetensors` (e.g. for tests and tools): the tensors only.
pub fn read_weights(path: &Path) -> Result<HostState> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(read_safetensors(&bytes, &path.display().to_string())?.0)
}
