//! The readback queue every training loop uses: results of submitted steps come back in
//! order, at most a few steps behind; a non-finite result is divergence, reported with the
//! step it happened at.

use std::collections::VecDeque;

use anyhow::Result;
use gpu_nn::{Gpu, Readback};

/// Steps in flight on a GPU: the host never runs further ahead than this, so queued work
/// (and memory) stays bounded.
pub const GPU_IN_FLIGHT: usize = 3;

/// Readbacks allowed in flight on `gpu`. A CPU driver (lavapipe, SwiftShader) runs the UI's
/// drawing on the same cores and the same queue behind every queued step: one readback out
/// keeps frames coming.
pub fn limit_for(gpu: &Gpu) -> usize {
    if gpu.adapter_info().device_type == gpu_nn::wgpu::DeviceType::Cpu {
        1
    } else {
        GPU_IN_FLIGHT
    }
}

/// Two numbers one step sends back: (loss, correct count) for a classifier, (D loss,
/// G loss) for the GAN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    /// Steps done once this one finished (1 for the first step).
    pub step: u64,
    /// Images the step trained on.
    pub images: usize,
    /// The step's two values.
    pub values: [f32; 2],
}

/// Training diverged: a loss came back NaN or infinite.
#[derive(Debug, Clone, PartialEq)]
pub struct Diverged {
    /// What became non-finite ("loss", "GAN losses").
    pub what: &'static str,
    /// The values that came back.
    pub values: [f32; 2],
    /// The step (1-based) they belong to.
    pub step: u64,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = if self.what == "loss" {
            format!("{}", self.values[0])
        } else {
            format!("{:?}", self.values)
        };
        write!(
            f,
            "the {} became {v} at step {}: training diverged (try a lower learning rate)",
            self.what, self.step
        )
    }
}

impl std::error::Error for Diverged {}

/// Readbacks of submitted steps, oldest first. Each carries one or more steps (a burst
/// shares one readback), two values per step.
pub struct InFlight {
    queue: VecDeque<(Readback, Vec<(u64, usize)>)>,
    limit: usize,
    what: &'static str,
}

impl InFlight {
    /// An empty queue of at most `limit` readbacks; `what` names the values in messages.
    pub fn new(limit: usize, what: &'static str) -> Self {
        Self {
            queue: VecDeque::new(),
            limit: limit.max(1),
            what,
        }
    }

    /// Readbacks in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// True when no further readback may be submitted before one comes back.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.limit
    }

    /// How many readbacks may be in flight.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Queues the readback of `steps` ((step, images) each, in order).
    pub fn push(&mut self, read: Readback, steps: Vec<(u64, usize)>) {
        self.queue.push_back((read, steps));
    }

    /// Drops everything in flight (their results are not wanted any more).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    fn results(&self, v: &[f32], steps: &[(u64, usize)]) -> Result<Vec<StepResult>> {
        let mut out = Vec::with_capacity(steps.len());
        for (&(step, images), pair) in steps.iter().zip(v.chunks_exact(2)) {
            let values = [pair[0], pair[1]];
            if !values.iter().all(|v| v.is_finite()) {
                return Err(Diverged {
                    what: self.what,
                    values,
                    step,
                }
                .into());
            }
            out.push(StepResult {
                step,
                images,
                values,
            });
        }
        Ok(out)
    }

    /// Collects every result that is back, in order, without waiting.
    pub fn poll(&mut self) -> Result<Vec<StepResult>> {
        let mut out = Vec::new();
        while let Some((r, _)) = self.queue.front_mut() {
            let Some(v) = r.try_take()? else { break };
            if let Some((_, steps)) = self.queue.pop_front() {
                out.extend(self.results(&v, &steps)?);
            }
        }
        Ok(out)
    }

    /// Waits for the oldest readback only (not for the whole device) and returns its
    /// results with any others already back. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_oldest(&mut self) -> Result<Vec<StepResult>> {
        let Some((mut r, steps)) = self.queue.pop_front() else {
            return Ok(Vec::new());
        };
        let v = r.take_blocking()?;
        let mut out = self.results(&v, &steps)?;
        out.extend(self.poll()?);
        Ok(out)
    }

    /// Waits until there is room for one more readback. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn make_room(&mut self) -> Result<Vec<StepResult>> {
        let mut out = self.poll()?;
        while self.is_full() {
            out.extend(self.wait_oldest()?);
        }
        Ok(out)
    }

    /// Waits for everything in flight. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn drain_blocking(&mut self) -> Result<Vec<StepResult>> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.extend(self.wait_oldest()?);
        }
        Ok(out)
    }
}
