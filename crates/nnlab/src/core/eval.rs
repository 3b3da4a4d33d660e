//! Evaluation in eval mode (batch norm's running statistics, no dropout), in batches whose
//! results come back asynchronously: the app polls it, the CLI waits for it.

use anyhow::Result;
use gpu_nn::nn::{Ctx, Module};
use gpu_nn::{Gpu, Readback, argmax, cat_channels, correct_count, cross_entropy};

use crate::data::Dataset;

/// Images per evaluation batch unless the device needs fewer.
pub const EVAL_BATCH: usize = 250;

/// Loss and accuracy of a validation pass.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub acc: f64,
    /// Images evaluated.
    pub images: usize,
    /// The predicted class of each image, in the data's order.
    pub predicted: Vec<u32>,
}

impl EvalResult {
    /// The confusion matrix of these predictions against `labels` (the evaluated data's).
    pub fn confusion(&self, labels: &[u8], classes: usize) -> Confusion {
        Confusion::new(labels, &self.predicted, classes)
    }
}

/// A confusion matrix: `counts[t * classes + p]` images of true class t predicted as p.
#[derive(Clone, Debug, PartialEq)]
pub struct Confusion {
    /// Number of classes (rows and columns).
    pub classes: usize,
    /// Row-major counts, rows the true class.
    pub counts: Vec<u64>,
}

impl Confusion {
    /// Counts (label, prediction) pairs; out-of-range ones are left out.
    pub fn new(labels: &[u8], predicted: &[u32], classes: usize) -> Confusion {
        let mut counts = vec![0u64; classes * classes];
        for (&t, &p) in labels.iter().zip(predicted) {
            let (t, p) = (usize::from(t), p as usize);
            if t < classes && p < classes {
                counts[t * classes + p] += 1;
            }
        }
        Confusion { classes, counts }
    }

    /// Images counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Correct predictions over all counted.
    pub fn accuracy(&self) -> f64 {
        let trace: u64 = (0..self.classes)
            .map(|i| self.counts[i * self.classes + i])
            .sum();
        trace as f64 / self.total().max(1) as f64
    }

    /// Images of true class `t`.
    pub fn row_total(&self, t: usize) -> u64 {
        self.counts[t * self.classes..(t + 1) * self.classes]
            .iter()
            .sum()
    }

    /// Recall of each class (NaN for a class with no images).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        (0..self.classes)
            .map(|t| {
                let n = self.row_total(t);
                if n == 0 {
                    f64::NAN
                } else {
                    self.counts[t * self.classes + t] as f64 / n as f64
                }
            })
            .collect()
    }
}

/// A validation pass in flight: one readback of (loss sum, correct count, predictions) per
/// batch: a few bytes per image, never the logits.
pub struct Evaluation {
    reads: Vec<(Readback, Option<Vec<f32>>)>,
    images: usize,
    /// Optimizer steps of the weights being evaluated.
    pub step: u64,
}

impl Evaluation {
    /// Records and submits the pass over `data`, in batches of at most `batch`; a batch the
    /// device cannot hold in one binding is halved until it fits.
    pub fn start(
        gpu: &Gpu,
        net: &dyn Module,
        data: &Dataset,
        batch: usize,
        step: u64,
    ) -> Result<Evaluation> {
        Self::start_lesioned(gpu, net, data, batch, step, &[])
    }

    /// [`Evaluation::start`] with the layers at `lesions` lesioned (see
    /// `gpu_nn::nn::Ctx::lesioning`): a test-time ablation.
    pub fn start_lesioned(
        gpu: &Gpu,
        net: &dyn Module,
        data: &Dataset,
        batch: usize,
        step: u64,
        lesions: &[String],
    ) -> Result<Evaluation> {
        let mut batch = batch.max(1);
        loop {
            match Self::record(gpu, net, data, batch, lesions) {
                Ok(reads) => {
                    return Ok(Evaluation {
                        reads,
                        images: data.len(),
                        step,
                    });
                }
                Err(e)
                    if batch > 1
                        && matches!(
                            e.downcast_ref::<gpu_nn::Error>(),
                            Some(gpu_nn::Error::TooLarge { .. })
                        ) =>
                {
                    // What was recorded of the failed try is submitted and discarded.
                    gpu.flush()?;
                    batch /= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn record(
        gpu: &Gpu,
        net: &dyn Module,
        data: &Dataset,
        batch: usize,
        lesions: &[String],
    ) -> Result<Vec<(Readback, Option<Vec<f32>>)>> {
        let _g = gpu_nn::no_grad();
        let mut reads = Vec::new();
        for idx in data.batches(batch, None) {
            let (x, y) = data.batch(gpu, &idx)?;
            let mut ctx = Ctx::eval().lesioning(lesions.iter().cloned());
            let logits = net.forward(&x, &mut ctx)?;
            // Mean loss times the batch size: batches of different sizes sum correctly.
            let loss = cross_entropy(&logits, &y)?.scale(idx.len() as f32)?;
            let count = correct_count(&logits, &y)?;
            let pred = argmax(&logits)?.reshape(&[1, idx.len()])?;
            let all = cat_channels(&[&loss.reshape(&[1, 1])?, &count.reshape(&[1, 1])?, &pred])?;
            reads.push((all.read()?, None));
        }
        Ok(reads)
    }

    fn result(&self) -> EvalResult {
        let (mut loss, mut correct) = (0.0f64, 0.0f64);
        let mut predicted = Vec::with_capacity(self.images);
        for v in self.reads.iter().filter_map(|(_, o)| o.as_ref()) {
            loss += f64::from(v[0]);
            correct += f64::from(v[1]);
            // Class indices are exact in f32 (far below 2^24).
            predicted.extend(v.iter().skip(2).map(|&p| p as u32));
        }
        let n = self.images.max(1) as f64;
        EvalResult {
            loss: if self.images == 0 { f64::NAN } else { loss / n },
            acc: if self.images == 0 {
                f64::NAN
            } else {
                correct / n
            },
            images: self.images,
            predicted,
        }
    }

    /// Non-blocking: the result once every batch is back.
    pub fn try_take(&mut self) -> Result<Option<EvalResult>> {
        for (r, out) in &mut self.reads {
            if out.is_none() {
                *out = r.try_take()?;
            }
        }
        Ok(self
            .reads
            .iter()
            .all(|(_, o)| o.is_some())
            .then(|| self.result()))
    }

    /// Waits for every batch. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(mut self) -> Result<EvalResult> {
        for (r, out) in &mut self.reads {
            if out.is_none() {
                *out = Some(r.take_blocking()?);
            }
        }
        Ok(self.result())
    }
}

/// Evaluates `net` on `data`, waiting for the result. Native only.
#[cfg(not(target_arch = "wasm32"))]
pub fn evaluate(gpu: &Gpu, net: &dyn Module, data: &Dataset, batch: usize) -> Result<EvalResult> {
    Evaluation::start(gpu, net, data, batch, 0)?.wait_blocking()
}
