//! One run of the lab: a model, its data, optimizer settings and seed, with its history,
//! advanced a little every frame through the training core. Nothing here blocks: every
//! result (losses, validation, inspections, samples, checkpoints) comes back through a
//! readback polled with `try_take`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use gpu_nn::nn::Ctx;
use gpu_nn::{Gpu, Tensor, TileImage, TileLayout};

use super::data::{Data, DataCache, DataChoice};
use super::history::{History, Point};
use crate::checkpoint::Checkpoint;
use crate::core::inflight::{InFlight, StepResult, limit_for};
use crate::core::{
    Classifier, Confusion, DataSource, EVAL_BATCH, Evaluation, Gan, ModelSpec, OptSettings,
    PendingCheckpoint, TrainConfig,
};
use crate::core::{GradNorms, GradProbe};
use crate::registry;
use crate::registry::Variant;

/// Training time (seconds) one burst of steps aims at on a CPU adapter (see
/// [`Run::burst`]): the curves there move every few seconds.
pub const CPU_BURST_S: f64 = 4.0;
/// Samples a GAN run shows from fixed noise.
pub const GAN_SAMPLES: usize = 16;

/// What a run is built from. The learning rate and momentum may change while it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSettings {
    /// Registry name of the model.
    pub model: String,
    /// The data.
    pub data: DataChoice,
    /// Images per step.
    pub batch: usize,
    /// `sgd` or `adam`.
    pub opt: String,
    /// Learning rate.
    pub lr: f32,
    /// SGD momentum (Adam ignores it).
    pub momentum: f32,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Validate every this many steps (0 = never).
    pub val_every: u64,
    /// The DCGAN's width multiplier (1 = the paper's).
    pub width: f32,
    /// Batch norm, initialisation and width of the CIFAR-style ResNets.
    pub variant: Variant,
    /// torchvision-named weights to start from (classifiers).
    pub weights: Option<crate::weights::Pretrained>,
    /// With weights: a fresh head for the data's classes, everything else frozen.
    pub finetune: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self::for_model("mnist-cnn")
    }
}

impl RunSettings {
    /// Settings under which `model` learns visibly within its first hundred steps on the
    /// bundled MNIST: Adam at 1e-3 (PyTorch's MNIST recipe, SGD 0.01 with momentum 0.5,
    /// barely moves the loss in a hundred steps), the DCGAN's Adam 2e-4.
    pub fn for_model(model: &str) -> Self {
        let (lr, batch) = match model {
            "dcgan" => (2e-4, 32),
            _ => (1e-3, 64),
        };
        let opt = "adam";
        Self {
            model: model.to_string(),
            data: DataChoice::bundled(crate::data::Bundled::Mnist),
            batch,
            opt: opt.to_string(),
            lr,
            momentum: 0.5,
            seed: 1,
            val_every: 50,
            width: 0.25,
            variant: Variant::default(),
            weights: None,
            finetune: false,
        }
    }

    /// True for the DCGAN.
    pub fn is_gan(&self) -> bool {
        self.model == "dcgan"
    }

    /// What differs from `other`, as "lr 0.01", for naming a duplicate.
    pub fn difference(&self, other: &RunSettings) -> Vec<String> {
        let mut d = Vec::new();
        if self.model != other.model {
            d.push(self.model.clone());
        }
        if self.data != other.data {
            d.push(self.data.label());
        }
        if self.batch != other.batch {
            d.push(format!("batch {}", self.batch));
        }
        if self.opt != other.opt {
            d.push(self.opt.clone());
        }
        if self.lr != other.lr {
            d.push(format!("lr {}", self.lr));
        }
        if self.momentum != other.momentum && self.opt == "sgd" {
            d.push(format!("momentum {}", self.momentum));
        }
        if self.seed != other.seed {
            d.push(format!("seed {}", self.seed));
        }
        if self.width != other.width && self.is_gan() {
            d.push(format!("width {}", self.width));
        }
        if self.variant != other.variant {
            d.push(self.variant.describe());
        }
        if self.weights != other.weights {
            d.push(
                self.weights
                    .as_ref()
                    .map_or("fresh weights".into(), |w| w.name.clone()),
            );
        }
        if self.finetune != other.finetune {
            d.push(
                if self.finetune {
                    "fine-tuned"
                } else {
                    "all layers train"
                }
                .into(),
            );
        }
        d
    }
}

/// What a run trains.
pub enum Trainee {
    /// A classifier.
    Classifier(Box<Classifier>),
    /// The DCGAN.
    Gan(Box<Gan>),
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
    /// Steps done by the weights that produced it.
    pub step: u64,
}

/// An inspection on its way back: the pictures are drawn, the probabilities not yet read.
pub struct PendingInspect {
    probs: gpu_nn::Readback,
    inspection: Inspection,
}

impl PendingInspect {
    /// Non-blocking: the inspection once its probabilities are back.
    pub fn try_take(&mut self) -> Result<Option<Inspection>> {
        Ok(self.probs.try_take()?.map(|p| Inspection {
            probs: p,
            layers: std::mem::take(&mut self.inspection.layers),
            filters: self.inspection.filters.take(),
            step: self.inspection.step,
        }))
    }
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

/// The GAN's samples from fixed noise, drawn on the GPU.
struct Samples {
    noise: Tensor,
    picture: TileImage,
    step: Option<u64>,
}

/// One run of the lab.
pub struct Run {
    /// Stable identity (names its textures, its row in the UI and in `#nnlab-state`).
    pub id: u64,
    /// Shown in the legend.
    pub name: String,
    /// What it was built from; `lr` and `momentum` apply at the next step when changed.
    pub settings: RunSettings,
    /// Advances every frame while true.
    pub running: bool,
    /// Why it stopped (divergence, a failed step), shown with the run.
    pub error: Option<String>,
    /// It was running when the device failed under it (not its own numbers): on a new
    /// device it runs again.
    pub interrupted: bool,
    /// Its curves.
    pub history: History,
    /// Its data, shared with runs that chose the same.
    pub data: Arc<Data>,
    trainee: Trainee,
    gpu: Gpu,
    inflight: InFlight,
    val: Option<Evaluation>,
    /// Feature-map pictures by layer, reused by every inspection with the same layout.
    pictures: HashMap<String, TileImage>,
    samples: Option<Samples>,
    rate: Rate,
    /// (time, steps) of a burst submitted while nothing else of this run was out.
    burst_timer: Option<(f64, usize)>,
    /// Seconds one step takes on the device alone (measured on such bursts).
    step_s: Option<f64>,
    images_done: u64,
    last_step_back: u64,
    last_loss: Option<f32>,
    probes: Vec<GradProbe>,
    /// Per-layer gradient norms, oldest first (see [`Run::set_probe_every`]).
    pub grad_flow: VecDeque<GradNorms>,
    /// What the latest validation predicted, image by image.
    pub last_val: Option<Validated>,
}

/// A finished validation's predictions.
#[derive(Clone, Debug)]
pub struct Validated {
    /// Optimizer steps of the weights validated.
    pub step: u64,
    /// The predicted class of each validation image.
    pub predicted: Vec<u32>,
    /// Their confusion matrix against the labels.
    pub confusion: Confusion,
}

/// Class probabilities of some validation images, on their way back.
pub struct PendingProbs {
    /// The validation images, in the order of the rows.
    pub images: Vec<usize>,
    classes: usize,
    read: gpu_nn::Readback,
}

impl PendingProbs {
    /// Non-blocking: one row of probabilities per image once back.
    pub fn try_take(&mut self) -> Result<Option<Vec<Vec<f32>>>> {
        let c = self.classes.max(1);
        Ok(self
            .read
            .try_take()?
            .map(|v| v.chunks(c).map(<[f32]>::to_vec).collect()))
    }
}

/// Steps between gradient probes of a new classifier run (for the gradient-flow view).
pub const GRAD_PROBE_EVERY: u64 = 10;

/// Gradient probes a run keeps (older ones are dropped).
pub const MAX_PROBES: usize = 500;

impl Run {
    /// A fresh run of `settings` on `data`.
    pub fn new(gpu: &Gpu, id: u64, settings: RunSettings, data: Arc<Data>) -> Result<Run> {
        ensure!(settings.batch > 0, "the batch size must be at least 1");
        let source = DataSource {
            name: settings.data.cli_name(),
            limit: settings.data.limit(),
        };
        let trainee = if settings.is_gan() {
            data.gan_train()?;
            let mut g = Gan::new(gpu, settings.width, settings.batch, settings.seed)?;
            g.data = Some(source);
            Trainee::Gan(Box::new(g))
        } else {
            let info = registry::find(&settings.model)?;
            let spec = ModelSpec {
                name: settings.model.clone(),
                input: data.train.shape,
                class_names: data.class_names.clone(),
                mean: data.mean.clone(),
                std: data.std.clone(),
                finetune: settings.finetune && settings.weights.is_some(),
                variant: settings.variant,
            };
            ensure!(
                info.accepts(spec.input),
                "{} takes {} images, {} has {:?}",
                info.name,
                info.input.describe(),
                data.name,
                spec.input
            );
            let config = TrainConfig {
                batch: settings.batch,
                seed: settings.seed,
                opt: OptSettings {
                    kind: settings.opt.clone(),
                    lr: settings.lr,
                    momentum: settings.momentum,
                    weight_decay: 0.0,
                    cosine_epochs: None,
                },
                augment: None,
            };
            let mut c = match &settings.weights {
                Some(w) => Classifier::from_weights(gpu, spec, config, &w.bytes, &w.name)?,
                None => Classifier::new(gpu, spec, config)?,
            };
            c.data = Some(source);
            c.probe_every = GRAD_PROBE_EVERY;
            Trainee::Classifier(Box::new(c))
        };
        Ok(Self::wrap(gpu, id, settings, data, trainee))
    }

    fn wrap(gpu: &Gpu, id: u64, settings: RunSettings, data: Arc<Data>, trainee: Trainee) -> Run {
        let what = match trainee {
            Trainee::Classifier(_) => "loss",
            Trainee::Gan(_) => "GAN losses",
        };
        Run {
            id,
            name: match settings.variant.describe().as_str() {
                "" => format!("{id}: {}", settings.model),
                v => format!("{id}: {} ({v})", settings.model),
            },
            settings,
            running: false,
            error: None,
            interrupted: false,
            history: History::default(),
            data,
            trainee,
            gpu: gpu.clone(),
            inflight: InFlight::new(limit_for(gpu), what),
            val: None,
            pictures: HashMap::new(),
            samples: None,
            rate: Rate::default(),
            burst_timer: None,
            step_s: None,
            images_done: 0,
            last_step_back: 0,
            last_loss: None,
            probes: Vec::new(),
            grad_flow: VecDeque::new(),
            last_val: None,
        }
    }

    /// A run continuing from a checkpoint (of `nnlab train`, `nnlab gan` or the app),
    /// exactly where it stopped, with the data it names.
    pub fn from_checkpoint(
        gpu: &Gpu,
        id: u64,
        c: &Checkpoint,
        cache: &mut DataCache,
    ) -> Result<Run> {
        let (trainee, source) = Self::trainee_from(gpu, c)?;
        let source = source.unwrap_or_else(|| DataSource {
            name: "mnist".into(),
            limit: None,
        });
        let input = match &trainee {
            Trainee::Classifier(t) => t.spec.input,
            Trainee::Gan(_) => [1, 28, 28],
        };
        let choice =
            DataChoice::from_meta(&source.name, source.limit, input).with_context(|| {
                format!(
                    "the checkpoint was trained on '{}', which the app cannot open here",
                    source.name
                )
            })?;
        let data = cache.get(&choice)?;
        let settings = match &trainee {
            Trainee::Classifier(t) => {
                ensure!(
                    t.spec.input == data.train.shape && t.spec.class_names == data.class_names,
                    "the checkpoint's model takes {:?} images of classes {:?}; {} does not fit",
                    t.spec.input,
                    t.spec.class_names,
                    data.name
                );
                RunSettings {
                    model: t.spec.name.clone(),
                    data: choice,
                    batch: t.config.batch,
                    opt: t.config.opt.kind.clone(),
                    lr: t.config.opt.lr,
                    momentum: t.config.opt.momentum,
                    seed: t.config.seed,
                    variant: t.spec.variant,
                    finetune: t.spec.finetune,
                    ..RunSettings::default()
                }
            }
            Trainee::Gan(g) => {
                data.gan_train()?;
                RunSettings {
                    batch: g.batch,
                    seed: g.seed,
                    width: g.width,
                    data: choice,
                    ..RunSettings::for_model("dcgan")
                }
            }
        };
        Ok(Self::wrap(gpu, id, settings, data, trainee))
    }

    /// What a checkpoint trains (a classifier or the DCGAN), and the data it names.
    fn trainee_from(gpu: &Gpu, c: &Checkpoint) -> Result<(Trainee, Option<DataSource>)> {
        let kind = c.meta_str(&["kind"])?;
        Ok(match kind {
            "gan" => {
                let g = Gan::from_checkpoint(gpu, c)?;
                let s = g.data.clone();
                (Trainee::Gan(Box::new(g)), s)
            }
            _ => {
                let t = Classifier::from_checkpoint(gpu, c)?;
                let s = t.data.clone();
                (Trainee::Classifier(Box::new(t)), s)
            }
        })
    }

    /// Run `id` continuing from `c`, its recovery point, on `gpu` (a new device after the
    /// old one was lost), with the settings, data, name and curves it had; the curves lose
    /// what came after the point.
    pub(super) fn resume(
        gpu: &Gpu,
        id: u64,
        c: &Checkpoint,
        settings: RunSettings,
        data: Arc<Data>,
        mut history: History,
    ) -> Result<Run> {
        let (trainee, _) = Self::trainee_from(gpu, c)?;
        let mut run = Self::wrap(gpu, id, settings, data, trainee);
        let step = run.steps();
        history.truncate_after(step);
        run.images_done = history.train_loss.points().last().map_or(0, |p| p.images);
        run.last_step_back = step;
        run.last_loss = history.train_loss.last();
        run.history = history;
        Ok(run)
    }

    /// What it trains.
    pub fn trainee(&self) -> &Trainee {
        &self.trainee
    }

    /// The classifier, if the run trains one.
    pub fn classifier(&self) -> Option<&Classifier> {
        match &self.trainee {
            Trainee::Classifier(c) => Some(c),
            Trainee::Gan(_) => None,
        }
    }

    /// True for a DCGAN run.
    pub fn is_gan(&self) -> bool {
        matches!(self.trainee, Trainee::Gan(_))
    }

    /// Steps submitted so far (what a checkpoint would record).
    pub fn steps(&self) -> u64 {
        match &self.trainee {
            Trainee::Classifier(c) => c.progress.step,
            Trainee::Gan(g) => g.progress.step,
        }
    }

    /// Epochs started (0-based epoch of the next step).
    pub fn epoch(&self) -> usize {
        match &self.trainee {
            Trainee::Classifier(c) => c.progress.epoch,
            Trainee::Gan(g) => g.progress.epoch,
        }
    }

    /// Steps whose results came back.
    pub fn steps_back(&self) -> u64 {
        self.last_step_back
    }

    /// The latest training loss that came back (the GAN: D's).
    pub fn last_loss(&self) -> Option<f32> {
        self.last_loss
    }

    /// Training images per second over the last seconds (counted when their loss is back).
    pub fn img_per_s(&self) -> Option<f64> {
        self.rate.per_s()
    }

    /// Readbacks of steps in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// True while any of its work is on the GPU (steps, probes or a validation pass).
    pub fn busy(&self) -> bool {
        !self.inflight.is_empty() || self.val.is_some() || !self.probes.is_empty()
    }

    /// True when another step may be submitted now.
    pub fn can_step(&self) -> bool {
        !self.inflight.is_full()
    }

    /// Steps to submit in one go: one on a GPU; on a CPU adapter, where every frame is
    /// drawn by the cores that train, enough for about [`CPU_BURST_S`] of this run's own
    /// step time (1 to 64) in one readback, so the UI wakes once per burst. The step time is
    /// measured on the device alone, not from the run's rate, which other runs' turns slow.
    pub fn burst(&self) -> usize {
        if self.inflight.limit() > 1 {
            return 1;
        }
        let step_s = self.step_s.unwrap_or(CPU_BURST_S);
        ((CPU_BURST_S / step_s.max(1e-4)).round() as usize).clamp(1, 64)
    }

    /// Reads back per-layer gradient norms every `every` steps (0: never), into
    /// [`Run::grad_flow`].
    pub fn set_probe_every(&mut self, every: u64) {
        if let Trainee::Classifier(c) = &mut self.trainee {
            c.probe_every = every;
        }
    }

    /// Every how many steps gradients are probed (0: never).
    pub fn probe_every(&self) -> u64 {
        self.classifier().map_or(0, |c| c.probe_every)
    }

    /// Pushes changed live settings (learning rate, momentum) to the optimizer.
    fn apply_live_settings(&mut self) -> Result<()> {
        if let Trainee::Classifier(c) = &mut self.trainee {
            if c.lr() != self.settings.lr {
                c.set_lr(self.settings.lr)?;
            }
            if c.momentum().is_some_and(|m| m != self.settings.momentum) {
                c.set_momentum(self.settings.momentum)?;
            }
        }
        Ok(())
    }

    /// Records and submits `k` steps (see [`Run::burst`]); starts a validation pass when
    /// one is due.
    pub fn submit(&mut self, now: f64, k: usize) -> Result<()> {
        self.apply_live_settings()?;
        let before = self.steps();
        if self.inflight.is_empty() {
            self.burst_timer = Some((now, k));
        }
        match &mut self.trainee {
            Trainee::Classifier(c) => {
                c.submit(&self.data.train, &mut self.inflight, k)?;
                self.probes.extend(c.take_probes());
            }
            Trainee::Gan(g) => g.submit(self.data.gan_train()?, &mut self.inflight, k)?,
        }
        if self.rate.marks.is_empty() {
            self.rate.mark(now, self.images_done);
        }
        let every = self.settings.val_every;
        let due = every > 0 && (before / every) != (self.steps() / every);
        if due && self.val.is_none() && !self.is_gan() {
            self.start_validation()?;
        }
        Ok(())
    }

    /// Submits a validation pass over the whole validation set (results come back later).
    pub fn start_validation(&mut self) -> Result<()> {
        let step = self.steps();
        if let Trainee::Classifier(c) = &self.trainee
            && !self.data.val.is_empty()
        {
            self.val = Some(Evaluation::start(
                &self.gpu,
                c.net.as_ref(),
                &self.data.val,
                EVAL_BATCH,
                step,
            )?);
        }
        Ok(())
    }

    /// True while a validation pass is out.
    pub fn validating(&self) -> bool {
        self.val.is_some()
    }

    fn record(&mut self, r: StepResult) {
        let images = self.images_done + r.images as u64;
        let (a, b) = match self.trainee {
            // (loss, correct count) -> (loss, accuracy)
            Trainee::Classifier(_) => (r.values[0], r.values[1] / r.images.max(1) as f32),
            Trainee::Gan(_) => (r.values[0], r.values[1]),
        };
        let p = |value| Point {
            step: r.step,
            images,
            value,
        };
        self.history.train_loss.push(p(a));
        self.history.train_acc.push(p(b));
        self.images_done = images;
        self.last_step_back = r.step;
        self.last_loss = Some(a);
    }

    /// Collects whatever came back since the last call (never waits). A diverged run stops
    /// with the message as its error.
    pub fn poll(&mut self, now: f64) -> Result<()> {
        let back = match self.inflight.poll() {
            Ok(b) => b,
            Err(e) => {
                self.inflight.clear();
                self.running = false;
                return Err(e);
            }
        };
        if !back.is_empty() {
            for r in back {
                self.record(r);
            }
            self.rate.mark(now, self.images_done);
            if self.inflight.is_empty()
                && let Some((t0, k)) = self.burst_timer.take()
            {
                let s = (now - t0) / k.max(1) as f64;
                self.step_s = Some(self.step_s.map_or(s, |old| 0.5 * old + 0.5 * s));
            }
        }
        let mut i = 0;
        while i < self.probes.len() {
            match self.probes[i].try_take()? {
                Some(n) => {
                    self.probes.remove(i);
                    if self.grad_flow.len() >= MAX_PROBES {
                        self.grad_flow.pop_front();
                    }
                    self.grad_flow.push_back(n);
                }
                None => i += 1,
            }
        }
        if let Some(v) = &mut self.val
            && let Some(r) = v.try_take()?
        {
            let step = v.step;
            self.val = None;
            ensure!(
                r.loss.is_finite(),
                "the validation loss became {} at step {step}: training diverged (try a lower \
                 learning rate)",
                r.loss
            );
            let p = |value: f64| Point {
                step,
                images: self.images_done,
                value: value as f32,
            };
            self.history.val_loss.push(p(r.loss));
            self.history.val_acc.push(p(r.acc));
            self.last_val = Some(Validated {
                step,
                confusion: r.confusion(&self.data.val.labels, self.data.val.classes),
                predicted: r.predicted,
            });
        }
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

    /// Submits an eval-mode forward pass of one image (C*H*W normalised values) that draws
    /// every layer's output, and the first conv layer's filters, into pictures.
    pub fn inspect(&mut self, image: &[f32]) -> Result<PendingInspect> {
        self.inspect_where(image, &|_| true, true)
    }

    /// Submits an eval-mode forward pass of validation images `images` whose class
    /// probabilities come back later.
    pub fn probabilities(&self, images: &[usize]) -> Result<PendingProbs> {
        let Trainee::Classifier(c) = &self.trainee else {
            anyhow::bail!("a GAN run has no classes");
        };
        ensure!(!images.is_empty(), "no images to classify");
        let _g = gpu_nn::no_grad();
        let (x, _) = self.data.val.batch(&self.gpu, images)?;
        let probs = c.net.forward(&x, &mut Ctx::eval())?.softmax()?;
        Ok(PendingProbs {
            images: images.to_vec(),
            classes: self.data.val.classes,
            read: probs.read()?,
        })
    }

    /// [`Run::inspect`], keeping only the layers whose path `keep` accepts, and the
    /// first-layer filters if `filters`.
    pub fn inspect_where(
        &mut self,
        image: &[f32],
        keep: &dyn Fn(&str) -> bool,
        filters: bool,
    ) -> Result<PendingInspect> {
        let Trainee::Classifier(c) = &self.trainee else {
            anyhow::bail!("a GAN run has no classifier to inspect");
        };
        let [ch, h, w] = self.data.train.shape;
        ensure!(
            image.len() == ch * h * w,
            "the image has {} values, the model takes {ch}x{h}x{w}",
            image.len()
        );
        let _g = gpu_nn::no_grad();
        let x = Tensor::from_slice(&self.gpu, image, &[1, ch, h, w])?;
        let mut ctx = Ctx::eval().capturing();
        let logits = c.net.forward(&x, &mut ctx)?;
        let filters_w = if filters { c.first_conv_weight() } else { None };
        let step = c.progress.step;
        let mut layers = Vec::new();
        for (name, t) in ctx.take_captures() {
            if !keep(&name) {
                continue;
            }
            if let Some(l) = TileLayout::activation(t.shape()) {
                let pic = self.picture(&name, l)?;
                pic.draw(&t)?;
                layers.push((name, t.shape().to_vec(), pic));
            }
        }
        let filters = match filters_w.and_then(|t| TileLayout::filters(t.shape()).map(|l| (t, l))) {
            Some((t, l)) => {
                let pic = self.picture("filters", l)?;
                pic.draw(&t)?;
                Some((t.shape().to_vec(), pic))
            }
            None => None,
        };
        // Submitted after the drawing: once the probabilities are back, so are the pictures.
        let probs = logits.softmax()?.read()?;
        Ok(PendingInspect {
            probs,
            inspection: Inspection {
                probs: Vec::new(),
                layers,
                filters,
                step,
            },
        })
    }

    /// Draws the GAN's samples from fixed noise (eval mode) into its picture and submits:
    /// frames drawn after this call show them.
    pub fn request_samples(&mut self) -> Result<()> {
        let Trainee::Gan(g) = &self.trainee else {
            return Ok(());
        };
        if self.samples.is_none() {
            let layout = TileLayout::batch(&[GAN_SAMPLES, 1, 28, 28], 4)
                .context("no picture layout for the samples")?;
            self.samples = Some(Samples {
                noise: crate::core::gan::noise(&self.gpu, GAN_SAMPLES, self.settings.seed ^ 7)?,
                picture: TileImage::new(&self.gpu, layout)?,
                step: None,
            });
        }
        if let Some(s) = &mut self.samples {
            let img = g.sample(&s.noise)?;
            s.picture.draw(&img)?;
            self.gpu.flush()?;
            s.step = Some(g.progress.step);
        }
        Ok(())
    }

    /// The GAN's samples picture and the step it shows, once drawn.
    pub fn samples(&self) -> Option<(u64, &TileImage)> {
        let s = self.samples.as_ref()?;
        Some((s.step?, &s.picture))
    }

    /// Starts a checkpoint of the run in `nnlab train`'s format (never blocks).
    pub fn start_checkpoint(&self) -> Result<PendingCheckpoint> {
        match &self.trainee {
            Trainee::Classifier(c) => c.start_checkpoint(),
            Trainee::Gan(g) => g.start_checkpoint(),
        }
    }

    /// A file name for its checkpoint: `3-resnet20-step1200.safetensors`.
    pub fn file_stem(&self) -> String {
        format!("{}-{}-step{}", self.id, self.settings.model, self.steps())
    }
}
