//! A checkpoint on its way from the GPU: every tensor read back with one submission and
//! collected without blocking, so the browser can save too.

use anyhow::{Context, Result};
use gpu_nn::nn::PendingState;

use crate::checkpoint::Checkpoint;

/// Metadata now, tensors once they are back.
pub struct PendingCheckpoint {
    meta: serde_json::Value,
    sections: Vec<(&'static str, PendingState, Option<gpu_nn::nn::HostState>)>,
}

impl PendingCheckpoint {
    /// Starts collecting `sections` (prefix, tensors being read) under `meta`.
    pub fn new(meta: serde_json::Value, sections: Vec<(&'static str, PendingState)>) -> Self {
        Self {
            meta,
            sections: sections.into_iter().map(|(p, s)| (p, s, None)).collect(),
        }
    }

    fn assemble(&mut self) -> Result<Checkpoint> {
        let mut c = Checkpoint {
            meta: std::mem::take(&mut self.meta),
            tensors: Default::default(),
        };
        for (prefix, _, state) in &mut self.sections {
            c.insert_section(prefix, state.take().unwrap_or_default());
        }
        c.ensure_finite().context(
            "training diverged (try a lower learning rate); nothing was saved, so the last \
             good checkpoint stays",
        )?;
        Ok(c)
    }

    /// Non-blocking: the checkpoint once every tensor is back. Errors if a weight is not
    /// finite (a diverged run is never saved).
    pub fn try_take(&mut self) -> Result<Option<Checkpoint>> {
        for (_, pending, state) in &mut self.sections {
            if state.is_none() {
                *state = pending.try_take()?;
            }
        }
        if self.sections.iter().any(|(_, _, s)| s.is_none()) {
            return Ok(None);
        }
        self.assemble().map(Some)
    }

    /// Waits for every tensor. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(mut self) -> Result<Checkpoint> {
        for (_, pending, state) in &mut self.sections {
            if state.is_none() {
                *state = Some(pending.wait_blocking()?);
            }
        }
        self.assemble()
    }
}
