//! What a training run is made of, as checkpoints store it: the model spec, the optimizer
//! settings, the run's fixed settings and where it stands.

use anyhow::{Context, Result, bail, ensure};
use gpu_nn::nn::{self, HostState, Module};
use gpu_nn::{Adam, AdamConfig, CosineAnnealingLr, Gpu, Optimizer, Sgd, SgdConfig, Tensor};
use serde_json::json;

use crate::data::Augment;
use crate::registry::{self, Variant};

/// Largest class count a checkpoint may declare (ImageNet-21k has 21,841).
pub const MAX_CLASSES: usize = 100_000;

/// Everything needed to rebuild a classifier and feed it: stored in checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Model name (a registry name).
    pub name: String,
    /// Input (C, H, W).
    pub input: [usize; 3],
    /// Class names in label order (their count is the number of outputs).
    pub class_names: Vec<String>,
    /// Per-channel mean the training data was normalised with (pixels in [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// Transfer learning: everything but the classifier head is frozen.
    pub finetune: bool,
    /// Batch norm, initialisation and width of the CIFAR-style ResNets.
    pub variant: Variant,
}

impl ModelSpec {
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// The model's registry entry.
    pub fn info(&self) -> Result<&'static registry::ModelInfo> {
        registry::find(&self.name)
    }

    /// Builds the model (and freezes the backbone when fine-tuning).
    pub fn build(&self, gpu: &Gpu, seed: u64) -> Result<Box<dyn Module>> {
        let info = self.info()?;
        let net = info.build_variant(gpu, self.input, self.classes(), seed, self.variant)?;
        if self.finetune {
            freeze_backbone(net.as_ref(), self.info()?.head())?;
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
            "variant": self.variant.to_json(),
        })
    }

    /// Reads a spec from checkpoint metadata; sizes are checked before anything is built.
    pub fn from_json(v: &serde_json::Value) -> Result<ModelSpec> {
        let err = |f: &str| format!("checkpoint metadata: model.{f} missing or malformed");
        let array = |f: &str| v.get(f).and_then(|a| a.as_array()).with_context(|| err(f));
        let floats = |f: &str| -> Result<Vec<f32>> {
            let a = array(f)?;
            ensure!(
                a.len() <= 4,
                "checkpoint metadata: model.{f} has {} entries",
                a.len()
            );
            a.iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<_>>()
                .with_context(|| err(f))
        };
        let input: Vec<usize> = array("input")?
            .iter()
            .map(|x| x.as_u64().map(|x| x as usize))
            .collect::<Option<_>>()
            .with_context(|| err("input"))?;
        let input: [usize; 3] = input.try_into().ok().with_context(|| err("input"))?;
        let names = array("class_names")?;
        ensure!(
            (1..=MAX_CLASSES).contains(&names.len()),
            "checkpoint metadata: {} classes (1 to {MAX_CLASSES} are allowed)",
            names.len()
        );
        let class_names: Vec<String> = names
            .iter()
            .map(|x| x.as_str().map(String::from))
            .collect::<Option<_>>()
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
            variant: Variant::from_json(v.get("variant"))?,
        };
        ensure!(
            spec.mean.len() == input[0]
                && spec.std.len() == input[0]
                && input.iter().all(|&d| d > 0 && d <= 4096),
            "checkpoint metadata: model normalisation does not fit input {input:?}"
        );
        Ok(spec)
    }
}

/// Freezes every parameter except the classifier head `head` (transfer learning).
pub fn freeze_backbone(net: &dyn Module, head: &str) -> Result<()> {
    let mut has_head = false;
    net.visit("", &mut |name, _| has_head |= name.starts_with(head));
    ensure!(
        has_head,
        "this model has no `{head}` classifier head to fine-tune"
    );
    nn::set_trainable(net, "", false);
    nn::set_trainable(net, head, true);
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

/// SGD or Adam, with the setters only one of them has.
pub enum Opt {
    /// SGD with momentum.
    Sgd(Sgd),
    /// Adam.
    Adam(Adam),
}

impl Opt {
    /// Builds the optimizer `s` describes over `params`.
    pub fn new(params: Vec<Tensor>, s: &OptSettings) -> Result<Opt> {
        Ok(match s.kind.as_str() {
            "sgd" => Opt::Sgd(Sgd::new(
                params,
                SgdConfig {
                    lr: s.lr,
                    momentum: s.momentum,
                    weight_decay: s.weight_decay,
                    ..SgdConfig::default()
                },
            )?),
            "adam" => Opt::Adam(Adam::new(
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

    /// The optimizer behind the common interface.
    pub fn as_dyn(&mut self) -> &mut dyn Optimizer {
        match self {
            Opt::Sgd(o) => o,
            Opt::Adam(o) => o,
        }
    }

    /// The optimizer behind the common interface, read-only.
    pub fn as_optimizer(&self) -> &dyn Optimizer {
        match self {
            Opt::Sgd(o) => o,
            Opt::Adam(o) => o,
        }
    }

    /// SGD's momentum (None for Adam).
    pub fn momentum(&self) -> Option<f32> {
        match self {
            Opt::Sgd(s) => Some(s.config().momentum),
            Opt::Adam(_) => None,
        }
    }

    /// Sets SGD's momentum for the next step (Adam has none: an error).
    pub fn set_momentum(&mut self, m: f32) -> Result<()> {
        match self {
            Opt::Sgd(s) => Ok(s.set_momentum(m)?),
            Opt::Adam(_) => bail!("Adam has no momentum setting"),
        }
    }

    /// Starts reading the optimizer's state (torch's names) into host memory.
    pub fn read_state(&self) -> Result<nn::PendingState> {
        read_optimizer(self.as_optimizer())
    }

    /// Loads saved optimizer state.
    pub fn load_state(&mut self, s: &HostState) -> Result<()> {
        load_optimizer(self.as_dyn(), s)
    }
}

/// Starts reading an optimizer's state (torch's names) into host memory.
pub fn read_optimizer(o: &dyn Optimizer) -> Result<nn::PendingState> {
    Ok(nn::PendingState::start(o.state()?, HostState::new())?)
}

/// Loads saved optimizer state (as [`read_optimizer`] read it).
pub fn load_optimizer(o: &mut dyn Optimizer, s: &HostState) -> Result<()> {
    let entries: Vec<gpu_nn::optim::HostEntry> = s
        .iter()
        .map(|(k, v)| (k.clone(), v.shape.clone(), v.data.clone()))
        .collect();
    Ok(o.load_state(&entries)?)
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

impl Progress {
    /// As checkpoint metadata.
    pub fn to_json(&self) -> serde_json::Value {
        json!({"epoch": self.epoch, "batch": self.batch, "step": self.step})
    }

    /// From checkpoint metadata.
    pub fn from_checkpoint(c: &crate::checkpoint::Checkpoint) -> Result<Progress> {
        Ok(Progress {
            epoch: c.meta_u64(&["progress", "epoch"])? as usize,
            batch: c.meta_u64(&["progress", "batch"])? as usize,
            step: c.meta_u64(&["progress", "step"])?,
        })
    }
}

/// The data a run trained on, as `nnlab train --data` (and `--limit`) named it: kept in
/// checkpoints so that the app can load a run with its data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSource {
    /// `mnist`, `fashion-mnist` or a directory.
    pub name: String,
    /// `--limit`: the first images of each split only.
    pub limit: Option<usize>,
}

impl DataSource {
    /// Reads `train.data` and `train.limit` (absent in older checkpoints).
    pub fn from_checkpoint(c: &crate::checkpoint::Checkpoint) -> Option<DataSource> {
        let t = c.meta.get("train")?;
        Some(DataSource {
            name: t.get("data")?.as_str()?.to_string(),
            limit: t.get("limit").and_then(|l| l.as_u64()).map(|l| l as usize),
        })
    }
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
