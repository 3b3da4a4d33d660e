//! Moving named parameters and buffers between modules and host memory (checkpoints,
//! torchvision weights).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::{Entry, Module};
use crate::error::{Error, Result};
use crate::readback::{Readback, read_all};
use crate::tensor::Tensor;

/// An array in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Named host arrays, sorted by name.
pub type HostState = BTreeMap<String, HostTensor>;

/// What [`load_state`] found wrong; empty when everything matched.
#[derive(Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Names the module has but the source lacks.
    pub missing: Vec<String>,
    /// Names the source has but the module lacks.
    pub unexpected: Vec<String>,
    /// (name, module shape, source shape)
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl LoadReport {
    /// True when nothing is missing, unexpected or mismatched.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.missing.is_empty() {
            writeln!(f, "missing keys: {}", self.missing.join(", "))?;
        }
        if !self.unexpected.is_empty() {
            writeln!(f, "unexpected keys: {}", self.unexpected.join(", "))?;
        }
        for (n, want, got) in &self.mismatched {
            writeln!(f, "shape mismatch for {n}: model {want:?}, file {got:?}")?;
        }
        Ok(())
    }
}

/// Loads `source` into `m`. Everything is checked before anything is written, so a failed
/// load leaves the module untouched. With `strict`, any missing or unexpected key is an
/// error; shape mismatches always are. Without `strict`, matching entries are loaded and
/// the report lists the rest (e.g. a new classifier head for transfer learning).
pub fn load_state(m: &dyn Module, source: &HostState, strict: bool) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    let mut seen = std::collections::BTreeSet::new();
    m.visit("", &mut |name, e| {
        let shape = match &e {
            Entry::Param(p) => p.tensor().shape().to_vec(),
            Entry::Buffer(t) => t.shape().to_vec(),
            // torch stores num_batches_tracked as a 0-d tensor.
            Entry::Counter(_) => vec![],
        };
        match source.get(&name) {
            None => {
                // Older checkpoints lack num_batches_tracked; torch tolerates that too.
                if !matches!(e, Entry::Counter(_)) {
                    report.missing.push(name.clone());
                }
            }
            Some(h) => {
                let numel_ok = h.data.len() == h.shape.iter().product::<usize>();
                let counter_ok = matches!(e, Entry::Counter(_)) && h.data.len() == 1;
                if !(counter_ok || (h.shape == shape && numel_ok)) {
                    report
                        .mismatched
                        .push((name.clone(), shape, h.shape.clone()));
                }
            }
        }
        seen.insert(name);
    });
    report.unexpected = source
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    if !report.mismatched.is_empty()
        || (strict && !(report.missing.is_empty() && report.unexpected.is_empty()))
    {
        return Err(Error::State(format!(
            "state does not fit the model:\n{report}"
        )));
    }
    let mut result = Ok(());
    m.visit("", &mut |name, e| {
        let Some(h) = source.get(&name) else { return };
        if result.is_err() {
            return;
        }
        result = match e {
            Entry::Param(p) => p.tensor().write(&h.data),
            Entry::Buffer(t) => t.write(&h.data),
            Entry::Counter(c) => {
                c.store(h.data[0].max(0.0) as u64, Ordering::Relaxed);
                Ok(())
            }
        };
    });
    result.map(|()| report)
}

/// Named tensors on their way to host memory: started with one submission, collected
/// without blocking ([`PendingState::try_take`]) or, natively, by waiting.
pub struct PendingState {
    done: HostState,
    reads: Vec<PendingTensor>,
}

/// (name, shape, readback, data once back)
type PendingTensor = (String, Vec<usize>, Readback, Option<Vec<f32>>);

impl PendingState {
    /// Starts reading `tensors` (one submission); `done` holds entries already on the host.
    pub fn start(tensors: Vec<(String, Tensor)>, done: HostState) -> Result<Self> {
        let refs: Vec<&Tensor> = tensors.iter().map(|(_, t)| t).collect();
        let reads = read_all(&refs)?;
        Ok(Self {
            done,
            reads: tensors
                .into_iter()
                .zip(reads)
                .map(|((name, t), r)| (name, t.shape().to_vec(), r, None))
                .collect(),
        })
    }

    /// Non-blocking: the state once every tensor is back.
    pub fn try_take(&mut self) -> Result<Option<HostState>> {
        for (_, _, r, out) in &mut self.reads {
            if out.is_none() {
                *out = r.try_take()?;
            }
        }
        if self.reads.iter().any(|(_, _, _, o)| o.is_none()) {
            return Ok(None);
        }
        Ok(Some(self.collect()))
    }

    fn collect(&mut self) -> HostState {
        let mut out = std::mem::take(&mut self.done);
        for (name, shape, _, data) in self.reads.drain(..) {
            let data = data.unwrap_or_default();
            out.insert(name, HostTensor { shape, data });
        }
        out
    }

    /// Waits for every tensor. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(&mut self) -> Result<HostState> {
        for (_, _, r, out) in &mut self.reads {
            if out.is_none() {
                *out = Some(r.take_blocking()?);
            }
        }
        Ok(self.collect())
    }
}

/// Starts reading every parameter, buffer and counter of `m` into host memory.
pub fn read_state(m: &dyn Module) -> Result<PendingState> {
    let mut tensors = Vec::new();
    let mut done = HostState::new();
    m.visit("", &mut |name, e| match e {
        Entry::Param(p) => tensors.push((name, p.tensor().clone())),
        Entry::Buffer(t) => tensors.push((name, t.clone())),
        Entry::Counter(c) => {
            done.insert(
                name,
                HostTensor {
                    shape: vec![],
                    data: vec![c.load(Ordering::Relaxed) as f32],
                },
            );
        }
    });
    PendingState::start(tensors, done)
}

/// Reads every parameter, buffer and counter of `m` into host memory. Blocks; native only.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_state_blocking(m: &dyn Module) -> Result<HostState> {
    read_state(m)?.wait_blocking()
}
