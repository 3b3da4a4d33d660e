//! Layers with PyTorch's initialisations and torchvision's parameter names.
//!
//! A [`Module`] maps a tensor to a tensor under a [`Ctx`] (train/eval mode, dropout seeds,
//! optional capture of every layer's activations for the app's feature-map view) and
//! lists its parameters and buffers by name (`layer1.0.conv1.weight`, `bn1.running_mean`).

mod layers;
mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use layers::*;
#[cfg(not(target_arch = "wasm32"))]
pub use state::read_state_blocking;
pub use state::{HostState, HostTensor, LoadReport, PendingState, load_state, read_state};

use crate::error::Result;
use crate::tensor::Tensor;

/// What a forward pass needs besides its input.
pub struct Ctx {
    /// Training mode: batch statistics in batch norm, dropout active.
    pub training: bool,
    seed: u64,
    path: Vec<String>,
    captures: Option<Vec<(String, Tensor)>>,
    /// Captures stay in the autodiff graph (their gradients can be retained).
    tracked_captures: bool,
    /// Layer paths that are lesioned: residual blocks pass their shortcut on, Inception
    /// branches output zeros (test-time ablation studies).
    lesions: Option<std::sync::Arc<std::collections::BTreeSet<String>>>,
}

impl Ctx {
    /// Training mode; `seed` drives dropout (advance it every step for fresh masks).
    pub fn train(seed: u64) -> Self {
        Self {
            training: true,
            seed,
            path: Vec::new(),
            captures: None,
            tracked_captures: false,
            lesions: None,
        }
    }

    /// Evaluation mode: running statistics, no dropout.
    pub fn eval() -> Self {
        Self {
            training: false,
            ..Self::train(0)
        }
    }

    /// Also keep every named layer's output (feature maps).
    pub fn capturing(mut self) -> Self {
        self.captures = Some(Vec::new());
        self
    }

    /// [`Ctx::capturing`], keeping the captured outputs in the autodiff graph, so that
    /// `Tensor::backward_retaining` can give their gradients (Grad-CAM).
    pub fn capturing_tracked(mut self) -> Self {
        self.captures = Some(Vec::new());
        self.tracked_captures = true;
        self
    }

    /// Lesions the layers at `paths` (`layer2.1`, `inception3a.branch2`): a residual block
    /// outputs its shortcut, an Inception branch zeros.
    pub fn lesioning(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.lesions = Some(std::sync::Arc::new(paths.into_iter().collect()));
        self
    }

    /// The dotted path of the layer being run (`layer2.1`).
    pub fn path(&self) -> String {
        self.path.join(".")
    }

    /// Whether the layer being run, or its child `name` (if not empty), is lesioned.
    pub fn is_lesioned(&self, name: &str) -> bool {
        let Some(l) = &self.lesions else {
            return false;
        };
        let p = self.path();
        let full = match (p.is_empty(), name.is_empty()) {
            (_, true) => p,
            (true, false) => name.to_string(),
            (false, false) => format!("{p}.{name}"),
        };
        l.contains(&full)
    }

    /// A fresh seed for one random op; deterministic given the starting seed.
    pub fn next_seed(&mut self) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.seed
    }

    /// Runs `f` with `name` appended to the layer path, recording its output if capturing.
    pub fn scope(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<Tensor>,
    ) -> Result<Tensor> {
        self.path.push(name.to_string());
        let tracing = crate::trace::is_tracing();
        if tracing {
            crate::trace::set_scope(self.path.join("."));
        }
        let out = f(self);
        if let (Ok(t), Some(c)) = (&out, self.captures.as_mut()) {
            let kept = if self.tracked_captures {
                t.clone()
            } else {
                t.detach()
            };
            c.push((self.path.join("."), kept));
        }
        self.path.pop();
        if tracing {
            crate::trace::set_scope(self.path.join("."));
        }
        out
    }

    /// The captured activations, in execution order, with their layer paths.
    pub fn take_captures(&mut self) -> Vec<(String, Tensor)> {
        self.captures
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

/// A trainable tensor that can be frozen (transfer learning).
pub struct Param {
    tensor: Tensor,
    trainable: AtomicBool,
}

impl Param {
    /// Wraps data as a trainable parameter.
    pub fn new(t: Tensor) -> Self {
        Self {
            tensor: t.requires_grad(),
            trainable: AtomicBool::new(true),
        }
    }

    /// The tensor as the forward pass should use it: tracked when trainable, detached when
    /// frozen (so no gradient is computed for it at all).
    pub fn get(&self) -> Tensor {
        if self.is_trainable() {
            self.tensor.clone()
        } else {
            self.tensor.detach()
        }
    }

    /// The underlying tracked tensor (the key of its gradient, and the optimizer's target).
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// Whether the optimizer updates it.
    pub fn is_trainable(&self) -> bool {
        self.trainable.load(Ordering::Relaxed)
    }

    /// Freezes or unfreezes it.
    pub fn set_trainable(&self, on: bool) {
        self.trainable.store(on, Ordering::Relaxed);
    }
}

/// One named piece of module state.
pub enum Entry<'a> {
    /// A parameter (`weight`, `bias`).
    Param(&'a Param),
    /// A buffer updated without gradients (`running_mean`, `running_var`).
    Buffer(&'a Tensor),
    /// An integer counter (`num_batches_tracked`).
    Counter(&'a AtomicU64),
}

/// A layer or a network.
pub trait Module: wgpu::WasmNotSendSync {
    /// Computes the output.
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor>;

    /// Calls `f` with the full name (`prefix` + own names) of each parameter and buffer.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>));
}

/// Joins a prefix and a name with a dot, torchvision style.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The trainable parameters of `m`, in a stable order.
pub fn parameters(m: &dyn Module) -> Vec<Tensor> {
    let mut out = Vec::new();
    m.visit("", &mut |_, e| {
        if let Entry::Param(p) = e
            && p.is_trainable()
        {
            out.push(p.tensor().clone());
        }
    });
    out
}

/// Names and tensors of every parameter and buffer (counters excluded).
pub fn named_tensors(m: &dyn Module) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    m.visit("", &mut |name, e| match e {
        Entry::Param(p) => out.push((name, p.tensor().clone())),
        Entry::Buffer(t) => out.push((name, t.clone())),
        Entry::Counter(_) => {}
    });
    out
}

/// Number of scalar parameters (trainable or not).
pub fn param_count(m: &dyn Module) -> usize {
    let mut n = 0;
    m.visit("", &mut |_, e| {
        if let Entry::Param(p) = e {
            n += p.tensor().numel();
        }
    });
    n
}

/// Freezes (or unfreezes) every parameter whose name starts with `prefix` ("" = all).
pub fn set_trainable(m: &dyn Module, prefix: &str, on: bool) {
    m.visit("", &mut |name, e| {
        if let Entry::Param(p) = e
            && name.starts_with(prefix)
        {
            p.set_trainable(on);
        }
    });
}
