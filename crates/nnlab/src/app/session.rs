//! The classifier training driver the app advances a little every frame. Nothing here blocks:
//! every result (loss, accuracy, validation, predictions, feature maps) comes back through a
//! [`Readback`] polled with `try_take`, a step or two after the work was submitted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use gpu_nn::models::{GoogLeNet, MnistCnn, ResNet, ResNetConfig};
use gpu_nn::nn::{self, Ctx, Module};
use gpu_nn::{
    Adam, AdamConfig, Gpu, Optimizer, Readback, Sgd, SgdConfig, Tensor, TileImage, TileLayout,
    cat_channels, correct_count, cross_entropy,
};

use crate::data::{Bundled, Dataset};

/// Loss readbacks allowed in flight: the host never runs more than this many steps ahead of
/// the GPU, so queued work (and memory) stays bounded.
pub const MAX_IN_FLIGHT: usize = 3;
/// Training time (seconds) one burst of steps aims at on a CPU adapter (see
/// [`Session::burst`]): the loss curve there moves every few seconds.
pub const CPU_BURST_S: f64 = 4.0;

/// Steps allowed in flight on `gpu`. A CPU driver (lavapipe, SwiftShader) runs the UI's
/// drawing on the same cores and the same queue, behind every queued step: one step ahead
/// keeps frames coming at about the pace of one step instead of three.
pub fn max_in_flight(gpu: &Gpu) -> usize {
    if gpu.adapter_info().device_type == gpu_nn::wgpu::DeviceType::Cpu {
        1
    } else {
        MAX_IN_FLIGHT
    }
}

/// The classifiers the app offers (all take 1x28x28 grey images).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// PyTorch's example MNIST CNN.
    MnistCnn,
    /// CIFAR-style ResNet-14 (three stages of BasicBlocks).
    ResNet14,
    /// A small GoogLeNet (Inception modules).
    GoogLeNetSmall,
}

impl ModelKind {
    /// Every model, in menu order.
    pub const ALL: [ModelKind; 3] = [
        ModelKind::MnistCnn,
        ModelKind::ResNet14,
        ModelKind::GoogLeNetSmall,
    ];

    /// Name shown in the UI and accepted in the page URL (`?model=`).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::MnistCnn => "mnist-cnn",
            ModelKind::ResNet14 => "resnet14",
            ModelKind::GoogLeNetSmall => "googlenet-small",
        }
    }

    /// Looks a model up by name.
    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|m| m.name() == name)
    }

    fn build(
        self,
        gpu: &Gpu,
        shape: [usize; 3],
        classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Module>> {
        Ok(match self {
            ModelKind::MnistCnn => {
                if shape != [1, 28, 28] {
                    bail!("mnist-cnn takes 1x28x28 images, the data has {shape:?}");
                }
                Box::new(MnistCnn::new(gpu, seed)?)
            }
            ModelKind::ResNet14 => Box::new(ResNet::new(
                gpu,
                ResNetConfig::cifar(14, shape[0], classes)?,
                seed,
            )?),
            ModelKind::GoogLeNetSmall => Box::new(GoogLeNet::small(gpu, shape[0], classes, seed)?),
        })
    }
}

/// Optimizer choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    /// SGD with momentum.
    Sgd,
    /// Adam.
    Adam,
}

impl OptKind {
    /// Parses `sgd` or `adam` (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sgd" => Some(Self::Sgd),
            "adam" => Some(Self::Adam),
            _ => None,
        }
    }
}

/// What a session is built from; lr and momentum may change while it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The classifier.
    pub model: ModelKind,
    /// Images per step.
    pub batch: usize,
    /// SGD or Adam.
    pub opt: OptKind,
    /// Learning rate.
    pub lr: f32,
    /// SGD momentum (ignored by Adam).
    pub momentum: f32,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Validate every this many steps (0 = never).
    pub val_every: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: ModelKind::MnistCnn,
            batch: 64,
            opt: OptKind::Sgd,
            lr: 0.01,
            momentum: 0.5,
            seed: 1,
            val_every: 50,
        }
    }
}

/// A training and a validation set with what the UI needs to describe them.
pub struct Data {
    /// Shown in the UI.
    pub name: String,
    /// Training images.
    pub train: Dataset,
    /// Validation images.
    pub val: Dataset,
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// (mean, std) the images were normalised with; dropped images get the same.
    pub norm: (f32, f32),
}

impl Data {
    /// A bundled 10k test set split into 9k training and 1k validation images.
    pub fn bundled(b: Bundled) -> Result<Self> {
        let all = b.load()?;
        let (train, val) = split(all, 9000);
        Ok(Self {
            name: format!("{} (bundled, 9k train / 1k val)", b.name()),
            train,
            val,
            class_names: b.class_names().iter().map(|s| s.to_string()).collect(),
            norm: b.normalisation(),
        })
    }

    /// A directory with the four MNIST-format IDX files (native only: it reads files).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        let (train, val) = crate::data::load_mnist_dir(dir)?;
        let class_names = (0..train.classes).map(|c| c.to_string()).collect();
        Ok(Self {
            name: format!(
                "{} ({} train / {} val)",
                dir.display(),
                train.len(),
                val.len()
            ),
            train,
            val,
            class_names,
            // load_mnist_dir normalises with MNIST's statistics.
            norm: Bundled::Mnist.normalisation(),
        })
    }
}

/// Splits off the last `len - first` images as a second set.
fn split(mut all: Dataset, first: usize) -> (Dataset, Dataset) {
    let per: usize = all.shape.iter().product();
    let first = first.min(all.len());
    let val = Dataset {
        images: all.images.split_off(first * per),
        labels: all.labels.split_off(first),
        shape: all.shape,
        classes: all.classes,
    };
    (all, val)
}

/// Learning curves as (step, value) points for egui_plot.
#[derive(Default, Clone)]
pub struct History {
    /// Training loss per step.
    pub train_loss: Vec<[f64; 2]>,
    /// Training accuracy per step (dropout active).
    pub train_acc: Vec<[f64; 2]>,
    /// Validation loss per validation run.
    pub val_loss: Vec<[f64; 2]>,
    /// Validation accuracy per validation run.
    pub val_acc: Vec<[f64; 2]>,
}

enum Opt {
    Sgd(Sgd),
    Adam(Adam),
}

impl Opt {
    fn as_dyn(&mut self) -> &mut dyn Optimizer {
        match self {
            Opt::Sgd(o) => o,
            Opt::Adam(o) => o,
        }
    }
}

/// A step whose loss and correct count are on their way back.
/// Steps submitted together, whose (loss, correct) pairs come back in one readback.
struct PendingStep {
    read: Readback,
    /// (step number, images) of each step, in order.
    steps: Vec<(u64, usize)>,
}

/// A validation pass in flight: one readback of (loss sum, correct) per batch.
struct PendingVal {
    step: u64,
    reads: Vec<(Readback, Option<Vec<f32>>)>,
    images: usize,
}

/// Class probabilities and feature maps of one image, from an eval-mode forward pass.
/// The maps are pictures on the GPU, drawn there by the engine's kernel: the UI samples
/// those textures directly, and only the probabilities come back to the CPU.
pub struct Inspection {
    /// Softmax over the classes.
    pub probs: Vec<f32>,
    /// Every named layer's output for the image: (layer path, shape, picture).
    pub layers: Vec<(String, Vec<usize>, TileImage)>,
    /// The first conv layer's weights: (shape [out, in, kh, kw], picture).
    pub filters: Option<(Vec<usize>, TileImage)>,
    /// Step count of the weights that produced it.
    pub step: u64,
}

/// A readback and, once it is back, its data.
struct Slot {
    read: Readback,
    data: Option<Vec<f32>>,
}

impl Slot {
    fn new(read: Readback) -> Self {
        Self { read, data: None }
    }
    fn poll(&mut self) -> Result<()> {
        if self.data.is_none() {
            self.data = self.read.try_take()?;
        }
        Ok(())
    }
    fn is_done(&self) -> bool {
        self.data.is_some()
    }
    fn into_data(self) -> Vec<f32> {
        self.data.unwrap_or_default()
    }
}

struct PendingInspect {
    probs: Slot,
    layers: Vec<(String, Vec<usize>, TileImage)>,
    filters: Option<(Vec<usize>, TileImage)>,
    step: u64,
    tag: u64,
}

/// Throughput over a sliding window of (time, images) marks.
#[derive(Default)]
struct Rate {
    marks: VecDeque<(f64, u64)>,
}

impl Rate {
    fn mark(&mut self, t: f64, images: u64) {
        self.marks.push_back((t, images));
        // Keep at least a 3 s span: marks taken in the same frame must not be the window.
        while self.marks.len() > 2 && t - self.marks[1].0 > 3.0 {
            self.marks.pop_front();
        }
    }
    fn per_s(&self) -> Option<f64> {
        let (t0, n0) = *self.marks.front()?;
        let (t1, n1) = *self.marks.back()?;
        (t1 - t0 > 0.2).then(|| (n1 - n0) as f64 / (t1 - t0))
    }
}

/// One classifier being trained.
pub struct Session {
    gpu: Gpu,
    net: Box<dyn Module>,
    opt: Opt,
    data: Arc<Data>,
    settings: Settings,
    order: Vec<usize>,
    cursor: usize,
    epoch: u64,
    steps: u64,
    pending: VecDeque<PendingStep>,
    val: Option<PendingVal>,
    inspect: Option<PendingInspect>,
    /// Feature-map pictures by layer, reused by every inspection with the same layout.
    pictures: HashMap<String, TileImage>,
    /// Images whose loss came back.
    images_done: u64,
    rate: Rate,
    /// Curves for the plots.
    pub history: History,
    /// Latest training loss that came back.
    pub last_loss: Option<f32>,
    /// Step whose loss came back last.
    pub last_step_done: u64,
}

impl Session {
    /// Builds the model and optimizer for `settings` on `data`.
    pub fn new(gpu: &Gpu, data: Arc<Data>, settings: Settings) -> Result<Self> {
        anyhow::ensure!(settings.batch > 0, "the batch size must be at least 1");
        anyhow::ensure!(!data.train.is_empty(), "the training set is empty");
        let net = settings
            .model
            .build(gpu, data.train.shape, data.train.classes, settings.seed)?;
        let params = nn::parameters(net.as_ref());
        let opt = match settings.opt {
            OptKind::Sgd => Opt::Sgd(Sgd::new(
                params,
                SgdConfig {
                    lr: settings.lr,
                    momentum: settings.momentum,
                    ..SgdConfig::default()
                },
            )?),
            OptKind::Adam => Opt::Adam(Adam::new(
                params,
                AdamConfig {
                    lr: settings.lr,
                    ..AdamConfig::default()
                },
            )?),
        };
        let order = data
            .train
            .batches(data.train.len(), Some(settings.seed))
            .concat();
        Ok(Self {
            gpu: gpu.clone(),
            net,
            opt,
            data,
            settings,
            order,
            cursor: 0,
            epoch: 0,
            steps: 0,
            pending: VecDeque::new(),
            val: None,
            inspect: None,
            pictures: HashMap::new(),
            images_done: 0,
            rate: Rate::default(),
            history: History::default(),
            last_loss: None,
            last_step_done: 0,
        })
    }

    /// The settings the session was built with (lr and momentum as currently set).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The data it trains on.
    pub fn data(&self) -> &Arc<Data> {
        &self.data
    }

    /// Steps submitted so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Passes over the training set started so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Training images per second over the last seconds (counted when their loss is back).
    pub fn img_per_s(&self) -> Option<f64> {
        self.rate.per_s()
    }

    /// Loss readbacks in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether another step may be submitted now without running too far ahead of the GPU.
    pub fn can_step(&self) -> bool {
        self.pending.len() < max_in_flight(&self.gpu)
    }

    /// Steps to submit in this frame. On a GPU: as many as [`Session::can_step`] allows
    /// (the caller also bounds them by time). On a CPU adapter, where every frame is drawn
    /// by the cores that train, a burst once the last one is back: enough steps for about
    /// [`CPU_BURST_S`] (1 to 8). In headless Chromium on SwiftShader each wake-up (frame,
    /// readback) costs about 0.9 s besides the steps, so MnistCnn at batch 64 trained at 48
    /// img/s one step at a time and at 100-108 img/s in bursts of 5-6 (130-144 in bursts of
    /// 8 once its kernels got faster).
    pub fn burst(&self) -> usize {
        if max_in_flight(&self.gpu) > 1 {
            return MAX_IN_FLIGHT.saturating_sub(self.pending.len());
        }
        if !self.pending.is_empty() {
            return 0;
        }
        let step_s = self
            .img_per_s()
            .filter(|r| *r > 0.0)
            .map_or(CPU_BURST_S, |r| self.settings.batch as f64 / r);
        ((CPU_BURST_S / step_s).round() as usize).clamp(1, 8)
    }

    /// The learning rate the next step uses.
    pub fn lr(&mut self) -> f32 {
        self.opt.as_dyn().lr()
    }

    /// Sets the learning rate of the next step.
    pub fn set_lr(&mut self, lr: f32) -> Result<()> {
        anyhow::ensure!(lr.is_finite() && lr >= 0.0, "invalid learning rate {lr}");
        self.opt.as_dyn().set_lr(lr);
        self.settings.lr = lr;
        Ok(())
    }

    /// Sets SGD's momentum for the next step (Adam has none: an error).
    pub fn set_momentum(&mut self, m: f32) -> Result<()> {
        match &mut self.opt {
            Opt::Sgd(s) => s.set_momentum(m)?,
            Opt::Adam(_) => bail!("Adam has no momentum setting"),
        }
        self.settings.momentum = m;
        Ok(())
    }

    /// Momentum the next SGD step uses (None for Adam).
    pub fn momentum(&self) -> Option<f32> {
        match &self.opt {
            Opt::Sgd(s) => Some(s.config().momentum),
            Opt::Adam(_) => None,
        }
    }

    /// Records and submits one training step (one submission, ending in the loss readback).
    pub fn step(&mut self, now: f64) -> Result<()> {
        self.step_many(now, 1)
    }

    /// `k` training steps whose losses come back in one readback (one wake-up of the UI
    /// for all of them; see [`Session::burst`]). Each step is submitted on its own.
    pub fn step_many(&mut self, now: f64, k: usize) -> Result<()> {
        let mut parts = Vec::with_capacity(k);
        let mut steps = Vec::with_capacity(k);
        for i in 0..k {
            parts.push(self.record_step()?);
            steps.push((self.steps, self.settings.batch.min(self.order.len())));
            if i + 1 < k {
                self.gpu.flush()?;
            }
        }
        if parts.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        // Loss and correct count of every step in one readback, which also submits the last.
        let read = cat_channels(&refs)?.read()?;
        self.pending.push_back(PendingStep { read, steps });
        if self.rate.marks.is_empty() {
            self.rate.mark(now, self.images_done);
        }
        Ok(())
    }

    /// Records one step; returns its [1, 2] (loss, correct count).
    fn record_step(&mut self) -> Result<Tensor> {
        let n = self.settings.batch.min(self.order.len());
        if self.cursor + n > self.order.len() {
            // Next epoch: reshuffle.
            self.epoch += 1;
            self.order = self
                .data
                .train
                .batches(
                    self.order.len(),
                    Some(self.settings.seed.wrapping_add(self.epoch)),
                )
                .concat();
            self.cursor = 0;
        }
        let idx = &self.order[self.cursor..self.cursor + n];
        self.cursor += n;
        let (x, y) = self.data.train.batch(&self.gpu, idx)?;
        let logits = self
            .net
            .forward(&x, &mut Ctx::train(self.settings.seed ^ self.steps))?;
        let loss = cross_entropy(&logits, &y)?;
        let grads = loss.backward()?;
        self.opt.as_dyn().step(&grads)?;
        let count = correct_count(&logits.detach(), &y)?;
        let both = cat_channels(&[&loss.detach().reshape(&[1, 1])?, &count.reshape(&[1, 1])?])?;
        self.steps += 1;
        if self.settings.val_every > 0
            && self.steps.is_multiple_of(self.settings.val_every)
            && self.val.is_none()
        {
            self.start_validation()?;
        }
        Ok(both)
    }

    /// Submits a validation pass over the whole validation set (results come back later).
    pub fn start_validation(&mut self) -> Result<()> {
        let _g = gpu_nn::no_grad();
        let val = &self.data.val;
        let mut reads = Vec::new();
        for idx in val.batches(250, None) {
            let (x, y) = val.batch(&self.gpu, &idx)?;
            let logits = self.net.forward(&x, &mut Ctx::eval())?;
            // Mean loss times the batch size: batches of different sizes sum correctly.
            let loss = cross_entropy(&logits, &y)?.scale(idx.len() as f32)?;
            let count = correct_count(&logits, &y)?;
            let both = cat_channels(&[&loss.reshape(&[1, 1])?, &count.reshape(&[1, 1])?])?;
            reads.push((both.read()?, None));
        }
        self.val = Some(PendingVal {
            step: self.steps,
            reads,
            images: val.len(),
        });
        Ok(())
    }

    /// Submits an eval-mode forward pass of one image (C*H*W normalised values) that keeps
    /// every layer's output, plus a readback of the first conv layer's filters. `tag`
    /// comes back with the result so callers can tell requests apart.
    pub fn inspect(&mut self, image: &[f32], tag: u64) -> Result<()> {
        let [c, h, w] = self.data.train.shape;
        anyhow::ensure!(
            image.len() == c * h * w,
            "the image has {} values, the model takes {c}x{h}x{w}",
            image.len()
        );
        let _g = gpu_nn::no_grad();
        let x = Tensor::from_slice(&self.gpu, image, &[1, c, h, w])?;
        let mut ctx = Ctx::eval().capturing();
        let logits = self.net.forward(&x, &mut ctx)?;
        let mut layers = Vec::new();
        for (name, t) in ctx.take_captures() {
            if let Some(l) = TileLayout::activation(t.shape()) {
                let pic = self.picture(&name, l)?;
                pic.draw(&t)?;
                layers.push((name, t.shape().to_vec(), pic));
            }
        }
        let filters = match self.first_conv_weight() {
            Some(t) => match TileLayout::filters(t.shape()) {
                Some(l) => {
                    let pic = self.picture("filters", l)?;
                    pic.draw(&t)?;
                    Some((t.shape().to_vec(), pic))
                }
                None => None,
            },
            None => None,
        };
        // Submitted after the drawing: once the probabilities are back, so are the pictures.
        let probs = Slot::new(logits.softmax()?.read()?);
        self.inspect = Some(PendingInspect {
            probs,
            layers,
            filters,
            step: self.steps,
            tag,
        });
        Ok(())
    }

    /// The picture for `name`, made anew only when its layout changed.
    fn picture(&mut self, name: &str, layout: TileLayout) -> Result<TileImage> {
        if let Some(p) = self.pictures.get(name).filter(|p| p.layout() == layout) {
            return Ok(p.clone());
        }
        let p = TileImage::new(&self.gpu, layout)?;
        self.pictures.insert(name.to_string(), p.clone());
        Ok(p)
    }

    /// The first conv layer's weight (the filters the Features tab shows).
    pub fn first_conv_weight(&self) -> Option<Tensor> {
        nn::named_tensors(self.net.as_ref())
            .into_iter()
            .find(|(_, t)| t.shape().len() == 4)
            .map(|(_, t)| t)
    }

    /// True while an inspection is on its way back.
    pub fn inspecting(&self) -> bool {
        self.inspect.is_some()
    }

    /// Collects whatever came back since the last call (never waits). Returns a finished
    /// inspection with its tag.
    pub fn poll(&mut self, now: f64) -> Result<Option<(u64, Inspection)>> {
        self.gpu.poll();
        while let Some(p) = self.pending.front_mut() {
            let Some(v) = p.read.try_take()? else { break };
            let steps = std::mem::take(&mut p.steps);
            self.pending.pop_front();
            for (&(step, images), pair) in steps.iter().zip(v.chunks_exact(2)) {
                let (loss, correct) = (pair[0], pair[1]);
                if !loss.is_finite() {
                    bail!(
                        "the loss became {loss} at step {step}: training diverged (lower the learning rate and press Reset)"
                    );
                }
                self.history.train_loss.push([step as f64, f64::from(loss)]);
                self.history
                    .train_acc
                    .push([step as f64, f64::from(correct) / images as f64]);
                self.last_loss = Some(loss);
                self.last_step_done = step;
                self.images_done += images as u64;
            }
            self.rate.mark(now, self.images_done);
        }
        if let Some(val) = &mut self.val {
            for (r, out) in &mut val.reads {
                if out.is_none() {
                    *out = r.try_take()?;
                }
            }
            if val.reads.iter().all(|(_, o)| o.is_some()) {
                let (mut loss, mut correct) = (0.0f64, 0.0f64);
                for v in val.reads.iter().filter_map(|(_, o)| o.as_ref()) {
                    loss += f64::from(v[0]);
                    correct += f64::from(v[1]);
                }
                let n = val.images.max(1) as f64;
                let s = val.step as f64;
                self.history.val_loss.push([s, loss / n]);
                self.history.val_acc.push([s, correct / n]);
                self.val = None;
            }
        }
        let mut done = None;
        if let Some(p) = &mut self.inspect {
            p.probs.poll()?;
            if p.probs.is_done() {
                let p = self.inspect.take().context("inspection vanished")?;
                done = Some((
                    p.tag,
                    Inspection {
                        probs: p.probs.into_data(),
                        layers: p.layers,
                        filters: p.filters,
                        step: p.step,
                    },
                ));
            }
        }
        Ok(done)
    }
}
