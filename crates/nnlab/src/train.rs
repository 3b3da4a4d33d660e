//! Supervised training: models by name, a [`Trainer`] that runs epochs step by step and
//! saves and resumes exactly, evaluation.
//!
//! Resuming is exact because everything random derives from (seed, position): the shuffle
//! of epoch `e` from `seed + e`, dropout masks and augmentation from `seed ^ step`. A
//! checkpoint stores the seed, the epoch, the batch within it and the step, next to the
//! parameters, buffers and optimizer state.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use gpu_nn::models::{GoogLeNet, MnistCnn, ResNet, ResNetConfig, Vgg};
use gpu_nn::nn::{self, Ctx, HostState, Module};
use gpu_nn::{
    Adam, AdamConfig, CosineAnnealingLr, Gpu, Optimizer, Readback, Sgd, SgdConfig, Tensor,
    cat_channels, correct_count, cross_entropy,
};
use serde_json::json;

use crate::checkpoint::{self, Checkpoint};
use crate::data::{Augment, Dataset};

/// Classifier names `train` and `eval` accept.
pub const MODELS: &[&str] = &[
    "mnist-cnn",
    "resnet8",
    "resnet20",
    "resnet14",
    "resnet20-plain",
    "resnet18",
    "googlenet-small",
    "googlenet",
    "vgg11-small",
];

/// Input (C, H, W) a model gets from an image folder: 224x224 colour for the ImageNet
/// models (torchvision weights expect it), 28x28 grey for mnist-cnn, 32x32 colour
/// otherwise; `size` overrides H and W.
pub fn folder_input(model: &str, size: Option<usize>) -> [usize; 3] {
    let (c, s) = match model {
        "mnist-cnn" => (1, 28),
        "resnet18" | "googlenet" => (3, 224),
        _ => (3, 32),
    };
    let s = size.unwrap_or(s);
    [c, s, s]
}

/// Builds a classifier for `shape` = (C, H, W) inputs.
pub fn build(
    gpu: &Gpu,
    name: &str,
    shape: [usize; 3],
    classes: usize,
    seed: u64,
) -> Result<Box<dyn Module>> {
    let c = shape[0];
    Ok(match name {
        "mnist-cnn" => {
            if shape != [1, 28, 28] || classes != 10 {
                bail!(
                    "mnist-cnn takes 1x28x28 images and 10 classes, the data has {shape:?} and {classes}"
                );
            }
            Box::new(MnistCnn::new(gpu, seed)?)
        }
        "resnet8" => Box::new(ResNet::new(gpu, ResNetConfig::cifar(8, c, classes)?, seed)?),
        "resnet20" => Box::new(ResNet::new(
            gpu,
            ResNetConfig::cifar(20, c, classes)?,
            seed,
        )?),
        "resnet20-plain" => Box::new(ResNet::new(
            gpu,
            ResNetConfig::cifar(20, c, classes)?.plain(),
            seed,
        )?),
        "resnet14" => Box::new(ResNet::new(
            gpu,
            ResNetConfig::cifar(14, c, classes)?,
            seed,
        )?),
        "resnet18" => {
            let cfg = ResNetConfig {
                in_channels: c,
                ..ResNetConfig::resnet18(classes)
            };
            Box::new(ResNet::new(gpu, cfg, seed)?)
        }
        "googlenet-small" => Box::new(GoogLeNet::small(gpu, c, classes, seed)?),
        "googlenet" => {
            ensure!(c == 3, "googlenet takes colour (3-channel) input");
            Box::new(GoogLeNet::new(gpu, classes, seed)?)
        }
        "vgg11-small" => Box::new(Vgg::vgg11_small(gpu, c, classes, seed)?),
        other => bail!("unknown model '{other}' (known: {})", MODELS.join(", ")),
    })
}

/// Everything needed to rebuild a classifier and feed it: stored in checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Model name (one of [`MODELS`]).
    pub name: String,
    /// Input (C, H, W).
    pub input: [usize; 3],
    /// Class names in label order (their count is the number of outputs).
    pub class_names: Vec<String>,
    /// Per-channel mean the training data was normalised with (pixels in [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// Transfer learning: everything but `fc` is frozen.
    pub finetune: bool,
}

impl ModelSpec {
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// Builds the model (and freezes the backbone when fine-tuning).
    pub fn build(&self, gpu: &Gpu, seed: u64) -> Result<Box<dyn Module>> {
        let net = build(gpu, &self.name, self.input, self.classes(), seed)?;
        if self.finetune {
            freeze_backbone(net.as_ref())?;
        }
        Ok(net)
    }

    /// The spec as JSON (checkpoint metadata).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "input": self.input,
            "class_names": self.class_names,
            "mean": self.mean,
            "std": self.std,
            "finetune": self.finetune,
        })
    }

    /// Reads a spec from checkpoint metadata.
    pub fn from_json(v: &serde_json::Value) -> Result<ModelSpec> {
        let err = |f: &str| format!("checkpoint metadata: model.{f} missing or malformed");
        let floats = |f: &str| -> Result<Vec<f32>> {
            v.get(f)
                .and_then(|a| a.as_array())
                .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect())
                .with_context(|| err(f))
        };
        let input: Vec<usize> = v
            .get("input")
            .and_then(|a| a.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
            .with_context(|| err("input"))?;
        let input: [usize; 3] = input.try_into().ok().with_context(|| err("input"))?;
        let class_names: Vec<String> = v
            .get("class_names")
            .and_then(|a| a.as_array())
            .and_then(|a| a.iter().map(|x| x.as_str().map(String::from)).collect())
            .with_context(|| err("class_names"))?;
        let spec = ModelSpec {
            name: v
                .get("name")
                .and_then(|n| n.as_str())
                .with_context(|| err("name"))?
                .to_string(),
            input,
            class_names,
            mean: floats("mean")?,
            std: floats("std")?,
            finetune: v.get("finetune").and_then(|f| f.as_bool()).unwrap_or(false),
        };
        ensure!(
            spec.mean.len() == input[0]
                && spec.std.len() == input[0]
                && spec.classes() > 0
                && input.iter().all(|&d| d > 0 && d <= 4096),
            "checkpoint metadata: model normalisation or classes do not fit input {input:?}"
        );
        Ok(spec)
    }
}

/// Freezes every parameter except the classifier `fc` (transfer learning).
pub fn freeze_backbone(net: &dyn Module) -> Result<()> {
    let mut has_fc = false;
    net.visit("", &mut |name, _| has_fc |= name.starts_with("fc."));
    ensure!(
        has_fc,
        "this model has no `fc` classifier to fine-tune (resnet*, googlenet* have one)"
    );
    nn::set_trainable(net, "", false);
    nn::set_trainable(net, "fc.", true);
    Ok(())
}

/// Optimizer choice and hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct OptSettings {
    /// "sgd" or "adam"
    pub kind: String,
    /// Learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// Cosine annealing of the learning rate to 0 over this many epochs (torch's
    /// CosineAnnealingLR with `T_max` epochs, stepped per epoch); `None` keeps `lr`.
    pub cosine_epochs: Option<usize>,
}

impl OptSettings {
    /// The learning rate of epoch `epoch` (0-based) under this schedule.
    pub fn lr_at(&self, epoch: usize) -> f32 {
        match self.cosine_epochs {
            Some(t_max) => CosineAnnealingLr {
                t_max,
                eta_min: 0.0,
            }
            .lr(self.lr, epoch),
            None => self.lr,
        }
    }

    /// The settings as JSON (checkpoint metadata).
    pub fn to_json(&self) -> serde_json::Value {
        json!({"kind": self.kind, "lr": self.lr, "momentum": self.momentum,
               "weight_decay": self.weight_decay, "cosine_epochs": self.cosine_epochs})
    }

    /// Reads settings from checkpoint metadata.
    pub fn from_json(v: &serde_json::Value) -> Result<OptSettings> {
        let f = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_f64())
                .map(|x| x as f32)
                .with_context(|| format!("checkpoint metadata: optimizer.{k} missing"))
        };
        Ok(OptSettings {
            kind: v
                .get("kind")
                .and_then(|k| k.as_str())
                .context("checkpoint metadata: optimizer.kind missing")?
                .to_string(),
            lr: f("lr")?,
            momentum: f("momentum")?,
            weight_decay: f("weight_decay")?,
            // Absent in checkpoints written before schedules existed: constant lr.
            cosine_epochs: v
                .get("cosine_epochs")
                .and_then(serde_json::Value::as_u64)
                .map(|e| e as usize),
        })
    }
}

/// Builds the optimizer `s` describes over `params`.
pub fn optimizer(params: Vec<Tensor>, s: &OptSettings) -> Result<Box<dyn Optimizer>> {
    Ok(match s.kind.as_str() {
        "sgd" => Box::new(Sgd::new(
            params,
            SgdConfig {
                lr: s.lr,
                momentum: s.momentum,
                weight_decay: s.weight_decay,
                ..SgdConfig::default()
            },
        )?),
        "adam" => Box::new(Adam::new(
            params,
            AdamConfig {
                lr: s.lr,
                weight_decay: s.weight_decay,
                ..AdamConfig::default()
            },
        )?),
        other => bail!("unknown optimizer '{other}' (sgd, adam)"),
    })
}

/// Reads an optimizer's state into host memory (blocking; native only).
pub fn read_optimizer_state(opt: &dyn Optimizer) -> Result<HostState> {
    let mut out = HostState::new();
    for (name, t) in opt.state()? {
        out.insert(
            name,
            nn::HostTensor {
                shape: t.shape().to_vec(),
                data: t.to_vec_blocking()?,
            },
        );
    }
    Ok(out)
}

/// Loads saved optimizer state (as [`read_optimizer_state`] produced it).
pub fn load_optimizer_state(opt: &mut dyn Optimizer, s: &HostState) -> Result<()> {
    let entries: Vec<gpu_nn::optim::HostEntry> = s
        .iter()
        .map(|(k, v)| (k.clone(), v.shape.clone(), v.data.clone()))
        .collect();
    Ok(opt.load_state(&entries)?)
}

/// Loss and accuracy of `net` on `data` in eval mode, in batches; the per-batch results
/// come back asynchronously and are summed at the end. (NaN, NaN) for an empty set.
pub fn evaluate(gpu: &Gpu, net: &dyn Module, data: &Dataset, batch: usize) -> Result<(f64, f64)> {
    if data.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    let _g = gpu_nn::no_grad();
    let mut reads = Vec::new();
    for idx in data.batches(batch, None) {
        let (x, y) = data.batch(gpu, &idx)?;
        let logits = net.forward(&x, &mut Ctx::eval())?;
        let loss = cross_entropy(&logits, &y)?.reshape(&[1, 1])?;
        let count = correct_count(&logits, &y)?.reshape(&[1, 1])?;
        reads.push((cat_channels(&[&loss, &count])?.read()?, idx.len()));
    }
    gpu.sync()?;
    let (mut loss, mut correct) = (0.0, 0.0);
    for (r, n) in reads {
        let v = r.wait_blocking()?;
        loss += f64::from(v[0]) * n as f64;
        correct += f64::from(v[1]);
    }
    let n = data.len() as f64;
    Ok((loss / n, correct / n))
}

/// Where a training run stands: what a checkpoint needs to continue exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Batches of the current epoch already done.
    pub batch: usize,
    /// Optimizer steps done in total.
    pub step: u64,
}

/// Settings of a training run that do not change while it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Images per step.
    pub batch: usize,
    /// Seed of initialisation, shuffling, dropout and augmentation.
    pub seed: u64,
    /// Optimizer and hyper-parameters.
    pub opt: OptSettings,
    /// Random crop + flip, or none.
    pub augment: Option<Augment>,
}

/// Running numbers of the epoch in progress, for progress bars.
#[derive(Clone, Copy, Debug)]
pub struct Running {
    /// Batches done in this epoch.
    pub done: usize,
    /// Batches in this epoch.
    pub total: usize,
    /// Mean loss of the batches whose results arrived.
    pub loss: f64,
    /// Their accuracy.
    pub acc: f64,
    /// Training images per second.
    pub img_s: f64,
}

/// What one call of [`Trainer::run_epoch`] did.
#[derive(Clone, Debug, Default)]
pub struct EpochRun {
    /// Loss of every step run, in order.
    pub losses: Vec<f32>,
    /// Mean loss over those steps (weighted by batch size).
    pub loss: f64,
    /// Training accuracy over them (dropout active, augmented).
    pub acc: f64,
    /// Training images per second.
    pub img_s: f64,
    /// True when the epoch ended (false when `max_steps` stopped it early).
    pub finished: bool,
    /// Images trained on.
    pub images: usize,
    /// Seconds taken.
    pub seconds: f64,
}

impl EpochRun {
    /// Combines consecutive parts of one epoch (e.g. between mid-epoch checkpoints).
    pub fn merge(mut self, next: EpochRun) -> EpochRun {
        let (a, b) = (self.images as f64, next.images as f64);
        let n = (a + b).max(1.0);
        self.loss = (self.loss * a + next.loss * b) / n;
        self.acc = (self.acc * a + next.acc * b) / n;
        self.images += next.images;
        self.seconds += next.seconds;
        self.img_s = self.images as f64 / self.seconds.max(1e-9);
        self.losses.extend(next.losses);
        self.finished = next.finished;
        self
    }
}

/// Running sums, fed by readbacks as they arrive.
#[derive(Default)]
struct Acc {
    seen: usize,
    loss_sum: f64,
    correct: f64,
    losses: Vec<f32>,
}

/// Takes the readbacks that are ready (all of them with `all`, waiting if needed; at most
/// three stay in flight so the GPU never runs far ahead of the host).
fn drain(
    gpu: &Gpu,
    pending: &mut VecDeque<(Readback, usize)>,
    acc: &mut Acc,
    all: bool,
    epoch: usize,
) -> Result<()> {
    loop {
        let must_wait = all || pending.len() > 3;
        let Some((r, n)) = pending.front_mut() else {
            break;
        };
        if must_wait {
            gpu.sync()?;
        }
        let Some(v) = r.try_take()? else { break };
        if !v[0].is_finite() {
            bail!(
                "the loss became {} in epoch {}: training diverged (try a lower learning rate)",
                v[0],
                epoch + 1
            );
        }
        acc.loss_sum += f64::from(v[0]) * *n as f64;
        acc.correct += f64::from(v[1]);
        acc.seen += *n;
        acc.losses.push(v[0]);
        pending.pop_front();
    }
    Ok(())
}

/// A classifier, its optimizer and where training stands.
pub struct Trainer {
    /// The network.
    pub net: Box<dyn Module>,
    /// What it is.
    pub spec: ModelSpec,
    /// How it trains.
    pub config: TrainConfig,
    /// Where training stands.
    pub progress: Progress,
    /// Per-epoch metrics so far (kept in checkpoints so a resumed run's metrics file is
    /// complete).
    pub history: Vec<serde_json::Value>,
    opt: Box<dyn Optimizer>,
    gpu: Gpu,
}

impl Trainer {
    /// A fresh model (initialised from `config.seed`) and optimizer.
    pub fn new(gpu: &Gpu, spec: ModelSpec, config: TrainConfig) -> Result<Trainer> {
        let net = spec.build(gpu, config.seed)?;
        Self::with_net(gpu, net, spec, config)
    }

    /// Wraps an already built (e.g. pretrained) model; builds the optimizer over its
    /// trainable parameters.
    pub fn with_net(
        gpu: &Gpu,
        net: Box<dyn Module>,
        spec: ModelSpec,
        config: TrainConfig,
    ) -> Result<Trainer> {
        ensure!(config.batch > 0, "the batch size must be positive");
        let opt = optimizer(nn::parameters(net.as_ref()), &config.opt)?;
        Ok(Trainer {
            net,
            spec,
            config,
            progress: Progress::default(),
            history: Vec::new(),
            opt,
            gpu: gpu.clone(),
        })
    }

    /// Snapshot of everything needed to continue: parameters, buffers, optimizer state,
    /// progress, seed, settings and model spec. Blocks until the GPU has finished.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut c = Checkpoint {
            meta: json!({
                "format": checkpoint::FORMAT,
                "version": checkpoint::VERSION,
                "kind": "classifier",
                "model": self.spec.to_json(),
                "optimizer": self.config.opt.to_json(),
                "train": {
                    "batch_size": self.config.batch,
                    "seed": self.config.seed,
                    "augment": self.config.augment.is_some(),
                },
                "progress": {
                    "epoch": self.progress.epoch,
                    "batch": self.progress.batch,
                    "step": self.progress.step,
                },
                "history": self.history,
            }),
            tensors: HostState::new(),
        };
        c.insert_section("model", nn::read_state_blocking(self.net.as_ref())?);
        c.insert_section("optim", read_optimizer_state(self.opt.as_ref())?);
        Ok(c)
    }

    /// Rebuilds model, optimizer and progress from a checkpoint. Everything is checked
    /// (names, shapes, metadata) before the new model is used; on error nothing is loaded.
    pub fn from_checkpoint(gpu: &Gpu, c: &Checkpoint) -> Result<Trainer> {
        ensure!(
            c.meta_str(&["kind"])? == "classifier",
            "this checkpoint holds a {}, not a classifier",
            c.meta_str(&["kind"])?
        );
        let spec = ModelSpec::from_json(c.meta_field(&["model"])?)?;
        let augment = c
            .meta_field(&["train", "augment"])?
            .as_bool()
            .unwrap_or(false)
            .then(|| Augment::crop_flip(&spec.mean, &spec.std));
        let config = TrainConfig {
            batch: c.meta_u64(&["train", "batch_size"])? as usize,
            seed: c.meta_u64(&["train", "seed"])?,
            opt: OptSettings::from_json(c.meta_field(&["optimizer"])?)?,
            augment,
        };
        let mut t = Trainer::new(gpu, spec, config)?;
        nn::load_state(t.net.as_ref(), &c.section("model"), true)
            .context("checkpoint does not fit its model")?;
        load_optimizer_state(t.opt.as_mut(), &c.section("optim"))
            .context("checkpoint's optimizer state")?;
        t.progress = Progress {
            epoch: c.meta_u64(&["progress", "epoch"])? as usize,
            batch: c.meta_u64(&["progress", "batch"])? as usize,
            step: c.meta_u64(&["progress", "step"])?,
        };
        t.history = c
            .meta
            .get("history")
            .and_then(|h| h.as_array())
            .cloned()
            .unwrap_or_default();
        Ok(t)
    }

    /// Batches of epoch `epoch`: the shuffle depends only on the seed and the epoch.
    fn epoch_batches(&self, data: &Dataset, epoch: usize) -> Vec<Vec<usize>> {
        data.batches(
            self.config.batch,
            Some(self.config.seed.wrapping_add(epoch as u64)),
        )
    }

    /// Trains on the rest of the current epoch (or at most `max_steps` batches of it),
    /// calling `on_step` after each step. Advances [`Trainer::progress`]; at the end of an
    /// epoch moves to the next one.
    pub fn run_epoch(
        &mut self,
        data: &Dataset,
        max_steps: Option<usize>,
        mut on_step: impl FnMut(&Running),
    ) -> Result<EpochRun> {
        ensure!(!data.is_empty(), "no training images");
        let gpu = self.gpu.clone();
        let batches = self.epoch_batches(data, self.progress.epoch);
        ensure!(
            self.progress.batch <= batches.len(),
            "the checkpoint is at batch {} of epoch {}, which has only {} batches here \
             (different data or --limit than the run that saved it?)",
            self.progress.batch,
            self.progress.epoch + 1,
            batches.len()
        );
        // The schedule is a closed form of the epoch, so a resumed run gets the same rate.
        self.opt.set_lr(self.config.opt.lr_at(self.progress.epoch));
        let t0 = Instant::now();
        let mut acc = Acc::default();
        let mut pending: VecDeque<(Readback, usize)> = VecDeque::new();
        let end = match max_steps {
            Some(m) => (self.progress.batch + m).min(batches.len()),
            None => batches.len(),
        };
        let seed = self.config.seed;
        for idx in &batches[self.progress.batch..end] {
            let step = self.progress.step;
            let (x, y) = match &self.config.augment {
                // Distinct streams for augmentation and dropout from the same step.
                Some(a) => data.batch_augmented(&gpu, idx, a, seed ^ step ^ 0xA5A5_5A5A)?,
                None => data.batch(&gpu, idx)?,
            };
            let logits = self.net.forward(&x, &mut Ctx::train(seed ^ step))?;
            let loss = cross_entropy(&logits, &y)?;
            let grads = loss.backward()?;
            self.opt.step(&grads)?;
            // Loss and correct count in one readback: one submission per step.
            let count = correct_count(&logits.detach(), &y)?;
            let both = cat_channels(&[&loss.detach().reshape(&[1, 1])?, &count.reshape(&[1, 1])?])?;
            pending.push_back((both.read()?, idx.len()));
            drain(&gpu, &mut pending, &mut acc, false, self.progress.epoch)?;
            self.progress.step += 1;
            self.progress.batch += 1;
            if acc.seen > 0 {
                on_step(&Running {
                    done: self.progress.batch,
                    total: batches.len(),
                    loss: acc.loss_sum / acc.seen as f64,
                    acc: acc.correct / acc.seen as f64,
                    img_s: acc.seen as f64 / t0.elapsed().as_secs_f64(),
                });
            }
        }
        drain(&gpu, &mut pending, &mut acc, true, self.progress.epoch)?;
        let finished = self.progress.batch == batches.len();
        if finished {
            self.progress.epoch += 1;
            self.progress.batch = 0;
        }
        let seen = acc.seen.max(1) as f64;
        Ok(EpochRun {
            images: acc.seen,
            seconds: t0.elapsed().as_secs_f64(),
            loss: acc.loss_sum / seen,
            acc: acc.correct / seen,
            img_s: acc.seen as f64 / t0.elapsed().as_secs_f64(),
            losses: acc.losses,
            finished,
        })
    }
}

/// Loads a checkpoint's classifier for inference (eval, classify).
pub fn load_classifier(gpu: &Gpu, c: &Checkpoint) -> Result<(Box<dyn Module>, ModelSpec)> {
    let kind = c.meta_str(&["kind"])?;
    ensure!(
        kind == "classifier",
        "this checkpoint holds a {kind}, not a classifier"
    );
    let spec = ModelSpec::from_json(c.meta_field(&["model"])?)?;
    let net = build(gpu, &spec.name, spec.input, spec.classes(), 0)?;
    nn::load_state(net.as_ref(), &c.section("model"), true)
        .context("checkpoint does not fit its model")?;
    Ok((net, spec))
}
