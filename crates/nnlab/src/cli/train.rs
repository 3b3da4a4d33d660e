//! `nnlab train`: epochs of a classifier with progress bars, validation, metrics and
//! checkpoints that resume exactly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use gpu_nn::nn;
use serde_json::json;

use super::{LAST, bar, ensure_writable_dir, ensure_writable_file, fit_data, gpu, load_train_data};
use crate::checkpoint::{Checkpoint, write_atomic};
use crate::core::eval::evaluate;
use crate::core::{
    Classifier, DataSource, EVAL_BATCH, EpochRun, ModelSpec, OptSettings, TrainConfig,
};
use crate::data::{Augment, Loaded};
use crate::registry;

/// `nnlab train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model (`nnlab models` lists them) [default: mnist-cnn]. With --resume, taken from the
    /// checkpoint.
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
    /// Images per step [default: 64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// sgd or adam [default: sgd].
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning rate [default: 0.01].
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD momentum [default: 0.5].
    #[arg(long)]
    pub momentum: Option<f32>,
    /// L2 weight decay [default: 0].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Anneal the learning rate from --lr to 0 over --epochs epochs (cosine, torch's
    /// CosineAnnealingLR stepped per epoch).
    #[arg(long)]
    pub cosine: bool,
    /// Seed of initialisation, shuffling, dropout and augmentation [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
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
    /// seed and position come from it; giving one of those flags too is an error); starts
    /// fresh if there is none yet.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
    /// Also save a checkpoint every N steps within an epoch (long epochs on slow devices).
    #[arg(long, requires = "checkpoint_dir", value_parser = clap::value_parser!(u64).range(1..))]
    pub save_every: Option<u64>,
    /// torchvision-named weights (.safetensors) to start from: any torchvision layout of
    /// `nnlab models`, or a state dict of the same names for the others.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Transfer learning: freeze everything but a new classifier head for the data's
    /// classes (needs --weights).
    #[arg(long, requires = "weights")]
    pub finetune: bool,
    /// Side of the square input images of an image folder are resized to (default: 224
    /// for torchvision layouts, 28 for mnist-cnn, 32 otherwise).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub image_size: Option<u32>,
}

impl TrainArgs {
    /// The settings a resumed run takes from its checkpoint, and whether each was given.
    fn overridden(&self) -> [(&'static str, bool); 10] {
        [
            ("--batch-size", self.batch_size.is_some()),
            ("--optimizer", self.optimizer.is_some()),
            ("--lr", self.lr.is_some()),
            ("--momentum", self.momentum.is_some()),
            ("--weight-decay", self.weight_decay.is_some()),
            ("--seed", self.seed.is_some()),
            ("--cosine", self.cosine),
            ("--augment", self.augment),
            ("--weights", self.weights.is_some()),
            ("--image-size", self.image_size.is_some()),
        ]
    }
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

/// A fresh run from the command line's settings (and --weights).
fn fresh(gpu: &gpu_nn::Gpu, a: &TrainArgs) -> Result<(Classifier, Loaded)> {
    let model = a.model.clone().unwrap_or_else(|| "mnist-cnn".into());
    let info = registry::find(&model)?;
    ensure!(
        info.is_classifier(),
        "{model} is not a classifier (`nnlab gan` trains the DCGAN)"
    );
    let d = load_train_data(
        &a.data,
        info.input.folder_shape(a.image_size.map(|s| s as usize)),
        a.limit,
    )?;
    let spec = ModelSpec {
        name: model,
        input: d.train.shape,
        class_names: d.class_names.clone(),
        mean: d.mean.clone(),
        std: d.std.clone(),
        finetune: a.finetune,
        variant: Default::default(),
    };
    let config = TrainConfig {
        batch: a.batch_size.unwrap_or(64),
        seed: a.seed.unwrap_or(1),
        opt: OptSettings {
            kind: a.optimizer.clone().unwrap_or_else(|| "sgd".into()),
            lr: a.lr.unwrap_or(0.01),
            momentum: a.momentum.unwrap_or(0.5),
            weight_decay: a.weight_decay.unwrap_or(0.0),
            cosine_epochs: a.cosine.then_some(a.epochs),
        },
        augment: a.augment.then(Augment::crop_flip),
    };
    let t = match &a.weights {
        Some(w) => {
            let bytes = std::fs::read(w).with_context(|| format!("cannot read {}", w.display()))?;
            Classifier::from_weights(gpu, spec, config, &bytes, &w.display().to_string())?
        }
        None => Classifier::new(gpu, spec, config)?,
    };
    Ok((t, d))
}

/// Runs `nnlab train`.
pub fn train(a: TrainArgs) -> Result<()> {
    ensure!(
        a.batch_size != Some(0) && a.epochs > 0,
        "--batch-size and --epochs must be positive"
    );
    if let Some(m) = &a.metrics {
        // Fail now, not after the first epoch.
        ensure!(
            matches!(m.extension().and_then(|e| e.to_str()), Some("csv" | "json")),
            "--metrics {}: use a .csv or .json file",
            m.display()
        );
        ensure_writable_file(m, "--metrics")?;
    }
    if let Some(d) = &a.checkpoint_dir {
        ensure_writable_dir(d, "--checkpoint-dir")?;
    }
    let last = a.checkpoint_dir.as_ref().map(|d| d.join(LAST));
    let resume_from = last.as_ref().filter(|p| a.resume && p.is_file());
    if resume_from.is_some() {
        super::refuse_with_resume(&a.overridden())?;
    }
    let gpu = gpu()?;
    let (mut trainer, d) = if let Some(p) = resume_from {
        let c = Checkpoint::load(p)?;
        let t = Classifier::from_checkpoint(&gpu, &c)
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
        fresh(&gpu, &a)?
    };
    trainer.data = Some(DataSource {
        name: a.data.clone(),
        limit: a.limit,
    });
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
    // Fault injection for tests: destroy the device, as a driver reset would, before the
    // first epoch (or part) that starts after this many steps.
    let lose_device_after: Option<u64> = std::env::var("NNLAB_LOSE_DEVICE_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    while trainer.progress.epoch < epochs {
        let e = trainer.progress.epoch;
        let t0 = std::time::Instant::now();
        let pb = bar(0, format!("{}/{epochs}", e + 1));
        let mut run = EpochRun::default();
        loop {
            if lose_device_after.is_some_and(|n| trainer.progress.step >= n) {
                gpu.device().destroy();
            }
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
        // The weights are read back before evaluating, so a failing evaluation loses no
        // training; they are written only once the evaluation shows they did not diverge.
        let snapshot = match &last {
            Some(_) => Some(trainer.start_checkpoint()?),
            None => None,
        };
        let eval = evaluate(&gpu, trainer.net.as_ref(), &d.val, EVAL_BATCH);
        let (val_loss, val_acc) = match &eval {
            Ok(r) => (r.loss, r.acc),
            Err(_) => (f64::NAN, f64::NAN),
        };
        ensure!(
            d.val.is_empty() || eval.is_err() || val_loss.is_finite(),
            "the validation loss became {val_loss} after epoch {}: training diverged (try a \
             lower learning rate); {} kept",
            e + 1,
            last.as_ref()
                .map_or("no checkpoint is".into(), |p| format!("{} is", p.display()))
        );
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
        let val = match &eval {
            Err(err) => format!("validation failed: {err:#}"),
            Ok(_) if d.val.is_empty() => "no validation images".to_string(),
            Ok(_) => format!("val loss {val_loss:.4}  val acc {:.2}%", 100.0 * val_acc),
        };
        println!(
            "epoch {}: loss {:.4}  train acc {:.2}%  {val}  {:.0} img/s",
            e + 1,
            run.loss,
            100.0 * run.acc,
            run.img_s
        );
        if let (Some(p), Some(s)) = (&last, snapshot) {
            let mut c = s.wait_blocking()?;
            // The metrics row belongs in this checkpoint's history too.
            c.meta["history"] = json!(trainer.history);
            c.save(p)?;
            println!("saved {}", p.display());
        }
        if let Some(m) = &a.metrics {
            write_metrics(m, &trainer.history)?;
        }
        eval?;
    }
    Ok(())
}
