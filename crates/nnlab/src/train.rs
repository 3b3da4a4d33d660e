//! `nnlab train`: supervised training with progress bars and per-epoch validation.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Result, bail};
use gpu_nn::models::{GoogLeNet, MnistCnn, ResNet, ResNetConfig, Vgg};
use gpu_nn::nn::{self, Ctx, Module};
use gpu_nn::{
    Adam, AdamConfig, Gpu, Optimizer, Readback, Sgd, SgdConfig, Tensor, cat_channels,
    correct_count, cross_entropy,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::Dataset;

/// Classifier names `train` and `eval` accept.
pub const MODELS: &[&str] = &[
    "mnist-cnn",
    "resnet20",
    "resnet14",
    "googlenet-small",
    "vgg11-small",
];

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
            if shape != [1, 28, 28] {
                bail!("mnist-cnn takes 1x28x28 images, the data has {shape:?}");
            }
            Box::new(MnistCnn::new(gpu, seed)?)
        }
        "resnet20" => Box::new(ResNet::new(
            gpu,
            ResNetConfig::cifar(20, c, classes)?,
            seed,
        )?),
        "resnet14" => Box::new(ResNet::new(
            gpu,
            ResNetConfig::cifar(14, c, classes)?,
            seed,
        )?),
        "googlenet-small" => Box::new(GoogLeNet::small(gpu, c, classes, seed)?),
        "vgg11-small" => Box::new(Vgg::vgg11_small(gpu, c, classes, seed)?),
        other => bail!("unknown model '{other}' (known: {})", MODELS.join(", ")),
    })
}

/// Optimizer choice and hyper-parameters.
pub struct OptSettings {
    /// "sgd" or "adam"
    pub kind: String,
    /// Learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
}

fn optimizer(params: Vec<Tensor>, s: &OptSettings) -> Result<Box<dyn Optimizer>> {
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

/// Accuracy of `net` on `data`, evaluated in batches; the counts come back asynchronously
/// and are summed at the end.
pub fn evaluate(gpu: &Gpu, net: &dyn Module, data: &Dataset, batch: usize) -> Result<f64> {
    let _g = gpu_nn::no_grad();
    let mut reads = Vec::new();
    for idx in data.batches(batch, None) {
        let (x, y) = data.batch(gpu, &idx)?;
        let logits = net.forward(&x, &mut Ctx::eval())?;
        reads.push(correct_count(&logits, &y)?.read()?);
    }
    gpu.sync()?;
    let mut correct = 0.0;
    for r in reads {
        correct += f64::from(r.wait_blocking()?[0]);
    }
    Ok(correct / data.len() as f64)
}

/// One epoch's results.
pub struct EpochStats {
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy (dropout active).
    pub train_acc: f64,
    /// Test accuracy.
    pub test_acc: f64,
    /// Training images per second.
    pub img_s: f64,
}

/// Running sums of one epoch, fed by readbacks as they arrive.
#[derive(Default)]
struct Acc {
    seen: usize,
    loss_sum: f64,
    correct: f64,
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
        pending.pop_front();
    }
    Ok(())
}

/// Trains `net` for `epochs` epochs, validating after each.
#[allow(clippy::too_many_arguments)]
pub fn train(
    gpu: &Gpu,
    net: &dyn Module,
    train: &Dataset,
    test: &Dataset,
    epochs: usize,
    batch: usize,
    opt: &OptSettings,
    seed: u64,
    mut on_epoch: impl FnMut(usize, &EpochStats),
) -> Result<()> {
    let mut opt = optimizer(nn::parameters(net), opt)?;
    let mut step = 0u64;
    for epoch in 0..epochs {
        let batches = train.batches(batch, Some(seed.wrapping_add(epoch as u64)));
        let pb = ProgressBar::new(batches.len() as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_prefix(format!("{}/{epochs}", epoch + 1));
        let t0 = Instant::now();
        let mut acc = Acc::default();
        let mut pending: VecDeque<(Readback, usize)> = VecDeque::new();
        for idx in &batches {
            let (x, y) = train.batch(gpu, idx)?;
            let logits = net.forward(&x, &mut Ctx::train(seed ^ step))?;
            let loss = cross_entropy(&logits, &y)?;
            let grads = loss.backward()?;
            opt.step(&grads)?;
            // Loss and correct count in one readback: one submission per step.
            let count = correct_count(&logits.detach(), &y)?;
            let both = cat_channels(&[&loss.detach().reshape(&[1, 1])?, &count.reshape(&[1, 1])?])?;
            pending.push_back((both.read()?, idx.len()));
            drain(gpu, &mut pending, &mut acc, false, epoch)?;
            step += 1;
            pb.inc(1);
            if acc.seen > 0 {
                pb.set_message(format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s",
                    acc.loss_sum / acc.seen as f64,
                    100.0 * acc.correct / acc.seen as f64,
                    acc.seen as f64 / t0.elapsed().as_secs_f64()
                ));
            }
        }
        drain(gpu, &mut pending, &mut acc, true, epoch)?;
        let (seen, loss_sum, correct) = (acc.seen, acc.loss_sum, acc.correct);
        let img_s = seen as f64 / t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        let test_acc = evaluate(gpu, net, test, 500)?;
        on_epoch(
            epoch,
            &EpochStats {
                loss: loss_sum / seen.max(1) as f64,
                train_acc: correct / seen.max(1) as f64,
                test_acc,
                img_s,
            },
        );
    }
    Ok(())
}
