//! A classifier in training: model, optimizer, settings and where it stands, stepping
//! through epochs of a dataset. `nnlab train` drives it with blocking waits, the app with
//! non-blocking polls; both record the same steps.
//!
//! Resuming is exact because everything random derives from (seed, position): the shuffle
//! of epoch `e` from `seed + e`, dropout masks and augmentation from `seed ^ step`.

use anyhow::{Context, Result, ensure};
use gpu_nn::nn::{self, Module};
use gpu_nn::{Gpu, Tensor, cat_channels};
use serde_json::json;

use super::inflight::InFlight;
#[cfg(not(target_arch = "wasm32"))]
use super::inflight::StepResult;
use super::probe::GradProbe;
use super::snapshot::PendingCheckpoint;
use super::spec::{DataSource, ModelSpec, Opt, Progress, TrainConfig};
use super::step::classifier_step_probed;
use crate::checkpoint::{self, Checkpoint};
use crate::data::{Augment, Dataset};

/// A classifier, its optimizer and where training stands.
pub struct Classifier {
    /// The network.
    pub net: Box<dyn Module>,
    /// What it is.
    pub spec: ModelSpec,
    /// How it trains (the learning rate and momentum may change between steps).
    pub config: TrainConfig,
    /// Where training stands.
    pub progress: Progress,
    /// Per-epoch metrics so far (kept in checkpoints so a resumed run's metrics are
    /// complete).
    pub history: Vec<serde_json::Value>,
    /// The data it trains on, as the CLI names it (stored in checkpoints).
    pub data: Option<DataSource>,
    /// Read back gradient and weight norms every this many steps (0: never; see
    /// [`Classifier::take_probes`]).
    pub probe_every: u64,
    probes: Vec<GradProbe>,
    /// Norms recorded but not yet read back: read with the step's results, one submission.
    unread_probes: Vec<(u64, Vec<String>, Tensor)>,
    opt: Opt,
    gpu: Gpu,
    /// The batches of one epoch (epoch, set size, batches), computed once per epoch.
    order: Option<(usize, usize, Vec<Vec<usize>>)>,
}

impl Classifier {
    /// A fresh model (initialised from `config.seed`) and optimizer.
    pub fn new(gpu: &Gpu, spec: ModelSpec, config: TrainConfig) -> Result<Classifier> {
        let net = spec.build(gpu, config.seed)?;
        Self::with_net(gpu, net, spec, config)
    }

    /// A model starting from torchvision-named weights (the bytes of a `.safetensors` state
    /// dict; `name` names them in errors). With `spec.finetune` the head stays fresh, sized
    /// for the spec's classes, and everything else is frozen; without, every key must fit.
    /// Weights that do not fit are an error listing every problem, and nothing trains.
    pub fn from_weights(
        gpu: &Gpu,
        spec: ModelSpec,
        config: TrainConfig,
        bytes: &[u8],
        name: &str,
    ) -> Result<Classifier> {
        let info = spec.info()?;
        let net = info.build_variant(gpu, spec.input, spec.classes(), config.seed, spec.variant)?;
        let head = spec.finetune.then(|| info.head());
        crate::weights::load_bytes(net.as_ref(), bytes, name, head)?;
        if spec.finetune {
            crate::core::spec::freeze_backbone(net.as_ref(), info.head())?;
        }
        Self::with_net(gpu, net, spec, config)
    }

    /// Wraps an already built (e.g. pretrained) model; builds the optimizer over its
    /// trainable parameters.
    pub fn with_net(
        gpu: &Gpu,
        net: Box<dyn Module>,
        spec: ModelSpec,
        config: TrainConfig,
    ) -> Result<Classifier> {
        ensure!(config.batch > 0, "the batch size must be positive");
        let opt = Opt::new(nn::parameters(net.as_ref()), &config.opt)?;
        Ok(Classifier {
            net,
            spec,
            config,
            progress: Progress::default(),
            history: Vec::new(),
            data: None,
            probe_every: 0,
            probes: Vec::new(),
            unread_probes: Vec::new(),
            opt,
            gpu: gpu.clone(),
            order: None,
        })
    }

    /// The device it trains on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The learning rate the next step uses (before the schedule).
    pub fn lr(&self) -> f32 {
        self.config.opt.lr
    }

    /// Sets the learning rate of the next step (the schedule, if any, scales from it).
    pub fn set_lr(&mut self, lr: f32) -> Result<()> {
        ensure!(lr.is_finite() && lr >= 0.0, "invalid learning rate {lr}");
        self.config.opt.lr = lr;
        Ok(())
    }

    /// SGD's momentum (None for Adam).
    pub fn momentum(&self) -> Option<f32> {
        self.opt.momentum()
    }

    /// Sets SGD's momentum for the next step (Adam has none: an error).
    pub fn set_momentum(&mut self, m: f32) -> Result<()> {
        self.opt.set_momentum(m)?;
        self.config.opt.momentum = m;
        Ok(())
    }

    /// The first conv layer's weight (the filters the feature view shows).
    pub fn first_conv_weight(&self) -> Option<Tensor> {
        nn::named_tensors(self.net.as_ref())
            .into_iter()
            .find(|(_, t)| t.shape().len() == 4)
            .map(|(_, t)| t)
    }

    /// Batches per epoch of `data` at this run's batch size.
    pub fn epoch_len(&self, data: &Dataset) -> usize {
        data.len().div_ceil(self.config.batch)
    }

    /// The indices of the next batch: the shuffle depends only on the seed and the epoch.
    fn next_batch(&mut self, data: &Dataset) -> Result<Vec<usize>> {
        let epoch = self.progress.epoch;
        let fresh = matches!(&self.order, Some((e, n, _)) if *e == epoch && *n == data.len());
        if !fresh {
            let b = data.batches(
                self.config.batch,
                Some(self.config.seed.wrapping_add(epoch as u64)),
            );
            self.order = Some((epoch, data.len(), b));
        }
        let batches = self
            .order
            .as_ref()
            .map(|(_, _, b)| b.as_slice())
            .unwrap_or(&[]);
        batches.get(self.progress.batch).cloned().with_context(|| {
            format!(
                "the run is at batch {} of epoch {}, which has only {} batches here \
                 (different data or --limit than the run that saved it?)",
                self.progress.batch,
                epoch + 1,
                batches.len()
            )
        })
    }

    /// Records one step on the next batch of `data` without submitting it; returns its
    /// (loss, correct) pair on the GPU and (step number, images). Advances the progress,
    /// into the next epoch after the last batch.
    pub fn record_step(&mut self, data: &Dataset) -> Result<(Tensor, (u64, usize))> {
        ensure!(!data.is_empty(), "no training images");
        let idx = self.next_batch(data)?;
        // The schedule is a closed form of the epoch, so a resumed run gets the same rate.
        let lr = self.config.opt.lr_at(self.progress.epoch);
        self.opt.as_dyn().set_lr(lr);
        let step = self.progress.step;
        let seed = self.config.seed;
        let (x, y) = match &self.config.augment {
            // Distinct streams for augmentation and dropout from the same step.
            Some(a) => data.batch_augmented(&self.gpu, &idx, a, seed ^ step ^ 0xA5A5_5A5A)?,
            None => data.batch(&self.gpu, &idx)?,
        };
        let probe = self.probe_every > 0 && step.is_multiple_of(self.probe_every);
        let (pair, norms) = classifier_step_probed(
            self.net.as_ref(),
            self.opt.as_dyn(),
            &x,
            &y,
            seed ^ step,
            probe,
        )?;
        if let Some((layers, t)) = norms {
            self.unread_probes.push((step + 1, layers, t));
        }
        self.progress.step += 1;
        self.progress.batch += 1;
        if self.progress.batch >= self.epoch_len(data) {
            self.progress.epoch += 1;
            self.progress.batch = 0;
        }
        Ok((pair, (self.progress.step, idx.len())))
    }

    /// The gradient probes submitted since the last call (see [`Classifier::probe_every`]).
    pub fn take_probes(&mut self) -> Vec<GradProbe> {
        std::mem::take(&mut self.probes)
    }

    /// Records and submits `k` steps (one submission each) whose results come back in one
    /// readback, queued in `inflight`: a burst wakes the UI once.
    pub fn submit(&mut self, data: &Dataset, inflight: &mut InFlight, k: usize) -> Result<()> {
        let mut pairs = Vec::with_capacity(k);
        let mut steps = Vec::with_capacity(k);
        for i in 0..k {
            let (pair, s) = self.record_step(data)?;
            pairs.push(pair);
            steps.push(s);
            if i + 1 < k {
                self.gpu.flush()?;
            }
        }
        if pairs.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Tensor> = pairs.iter().collect();
        let results = cat_channels(&refs)?;
        // One readback submission for the results and any gradient probes: it submits the
        // last step.
        let probes = std::mem::take(&mut self.unread_probes);
        let mut tensors = vec![&results];
        tensors.extend(probes.iter().map(|(_, _, t)| t));
        let mut reads = gpu_nn::read_all(&tensors)?.into_iter();
        let first = reads.next().context("no readback")?;
        inflight.push(first, steps);
        for ((step, layers, _), r) in probes.into_iter().zip(reads) {
            self.probes.push(GradProbe::new(step, layers, r));
        }
        Ok(())
    }

    /// The checkpoint's metadata as things stand now.
    fn meta(&self) -> serde_json::Value {
        json!({
            "format": checkpoint::FORMAT,
            "version": checkpoint::VERSION,
            "kind": "classifier",
            "model": self.spec.to_json(),
            "optimizer": self.config.opt.to_json(),
            "train": {
                "batch_size": self.config.batch,
                "seed": self.config.seed,
                "augment": self.config.augment.is_some(),
                "data": self.data.as_ref().map(|d| &d.name),
                "limit": self.data.as_ref().and_then(|d| d.limit),
            },
            "progress": self.progress.to_json(),
            "history": self.history,
        })
    }

    /// Starts a snapshot of everything needed to continue: parameters, buffers, optimizer
    /// state, progress, seed, settings and model spec. Never blocks.
    pub fn start_checkpoint(&self) -> Result<PendingCheckpoint> {
        Ok(PendingCheckpoint::new(
            self.meta(),
            vec![
                ("model", nn::read_state(self.net.as_ref())?),
                ("optim", self.opt.read_state()?),
            ],
        ))
    }

    /// [`Classifier::start_checkpoint`], waiting for it. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        self.start_checkpoint()?.wait_blocking()
    }

    /// Rebuilds model, optimizer and progress from a checkpoint. Everything is checked
    /// (names, shapes, metadata) before the new model is used; on error nothing is loaded.
    pub fn from_checkpoint(gpu: &Gpu, c: &Checkpoint) -> Result<Classifier> {
        let kind = c.meta_str(&["kind"])?;
        ensure!(
            kind == "classifier",
            "this checkpoint holds a {kind}, not a classifier"
        );
        let spec = ModelSpec::from_json(c.meta_field(&["model"])?)?;
        let augment = c
            .meta_field(&["train", "augment"])?
            .as_bool()
            .unwrap_or(false)
            .then(Augment::crop_flip);
        let config = TrainConfig {
            batch: c.meta_u64(&["train", "batch_size"])? as usize,
            seed: c.meta_u64(&["train", "seed"])?,
            opt: super::spec::OptSettings::from_json(c.meta_field(&["optimizer"])?)?,
            augment,
        };
        let mut t = Classifier::new(gpu, spec, config)?;
        nn::load_state(t.net.as_ref(), &c.section("model"), true)
            .context("checkpoint does not fit its model")?;
        t.opt
            .load_state(&c.section("optim"))
            .context("checkpoint's optimizer state")?;
        t.progress = Progress::from_checkpoint(c)?;
        t.data = DataSource::from_checkpoint(c);
        t.history = c
            .meta
            .get("history")
            .and_then(|h| h.as_array())
            .cloned()
            .unwrap_or_default();
        Ok(t)
    }

    /// Trains on the rest of the current epoch (or at most `max_steps` batches of it),
    /// calling `on_step` as results come back. Waits for the oldest step when three are in
    /// flight. Native only (the CLI).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_epoch(
        &mut self,
        data: &Dataset,
        max_steps: Option<usize>,
        mut on_step: impl FnMut(&Running),
    ) -> Result<EpochRun> {
        ensure!(!data.is_empty(), "no training images");
        let total = self.epoch_len(data);
        ensure!(
            self.progress.batch < total,
            "the checkpoint is at batch {} of epoch {}, which has only {total} batches here \
             (different data or --limit than the run that saved it?)",
            self.progress.batch,
            self.progress.epoch + 1,
        );
        let epoch = self.progress.epoch;
        let t0 = web_time::Instant::now();
        let mut acc = EpochRun::default();
        let mut inflight = InFlight::new(super::inflight::GPU_IN_FLIGHT, "loss");
        let mut taken = 0;
        while self.progress.epoch == epoch && max_steps.is_none_or(|m| taken < m) {
            let back = inflight.make_room()?;
            acc.add(&back);
            self.submit(data, &mut inflight, 1)?;
            taken += 1;
            if acc.images > 0 {
                let done = if self.progress.epoch == epoch {
                    self.progress.batch
                } else {
                    total
                };
                on_step(&Running {
                    done,
                    total,
                    loss: acc.loss,
                    acc: acc.acc,
                    img_s: acc.images as f64 / t0.elapsed().as_secs_f64(),
                });
            }
        }
        acc.add(&inflight.drain_blocking()?);
        acc.finished = self.progress.epoch != epoch;
        acc.seconds = t0.elapsed().as_secs_f64();
        acc.img_s = acc.images as f64 / acc.seconds.max(1e-9);
        Ok(acc)
    }
}

/// Running numbers of the epoch in progress, for progress bars.
#[cfg(not(target_arch = "wasm32"))]
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

/// What one call of [`Classifier::run_epoch`] did.
#[cfg(not(target_arch = "wasm32"))]
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

#[cfg(not(target_arch = "wasm32"))]
impl EpochRun {
    /// Adds results that came back.
    fn add(&mut self, back: &[StepResult]) {
        for r in back {
            let n = self.images as f64;
            let m = r.images as f64;
            self.loss = (self.loss * n + f64::from(r.values[0]) * m) / (n + m);
            self.acc = (self.acc * n + f64::from(r.values[1])) / (n + m);
            self.images += r.images;
            self.losses.push(r.values[0]);
        }
    }

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
