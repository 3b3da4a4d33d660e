//! Reverse-mode autodiff. Each op output that depends on a tracked tensor keeps a
//! [`BackwardOp`] holding its inputs, so the graph lives exactly as long as the tensors do.
//! [`Tensor::backward`] walks it from a scalar loss and records the backward kernels into the
//! same open command buffer as the forward pass.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorId};

/// The backward rule of one recorded op.
pub(crate) trait BackwardOp: wgpu::WasmNotSendSync {
    /// Op name, for errors and debugging.
    fn name(&self) -> &'static str;
    /// The inputs, in the order of the gradients `backward` returns.
    fn inputs(&self) -> Vec<Tensor>;
    /// Gradients w.r.t. each input given the output and the gradient of the output.
    /// `None` for inputs that get no gradient (indices, constants).
    fn backward(&self, out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record the graph (false inside [`no_grad`]).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// While the returned guard lives, ops on this thread record no graph (evaluation, the
/// generator pass of a discriminator step, optimizer updates).
#[must_use = "gradients are disabled only while the guard lives"]
pub fn no_grad() -> NoGradGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { prev }
}

/// Restores gradient recording when dropped.
pub struct NoGradGuard {
    prev: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Gradients of tracked leaves (and of retained intermediates), keyed by tensor id.
#[derive(Default)]
pub struct Grads(HashMap<TensorId, Tensor>);

impl Grads {
    /// The gradient of `t`, if it received one.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.0.get(&t.id())
    }

    /// Removes and returns the gradient of `t`.
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.0.remove(&t.id())
    }

    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `other`'s gradients into these (gradient accumulation over micro-batches).
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        let _g = no_grad();
        for (id, g) in other.0 {
            add_into(&mut self.0, id, g)?;
        }
        Ok(())
    }
}

fn add_into(map: &mut HashMap<TensorId, Tensor>, id: TensorId, g: Tensor) -> Result<()> {
    let sum = match map.remove(&id) {
        Some(prev) => prev.add(&g)?,
        None => g,
    };
    map.insert(id, sum);
    Ok(())
}

impl Tensor {
    /// Backpropagates from this one-element loss. Returns the gradients of every tracked
    /// leaf (parameters) it depends on.
    pub fn backward(&self) -> Result<Grads> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a one-element loss, got shape {:?}; use backward_with",
                self.shape()
            )));
        }
        let seed = Tensor::full(self.gpu(), self.shape(), 1.0)?;
        self.backward_with(&seed)
    }

    /// Backpropagates `grad` (the gradient of some scalar w.r.t. this tensor).
    pub fn backward_with(&self, grad: &Tensor) -> Result<Grads> {
        self.backward_retaining(grad, &[])
    }

    /// [`Tensor::backward_with`], also keeping the gradients of the intermediate tensors
    /// `retain` (layer activations, for Grad-CAM), as PyTorch's `retain_grad` does. A
    /// retained tensor the loss does not depend on gets no gradient.
    pub fn backward_retaining(&self, grad: &Tensor, retain: &[Tensor]) -> Result<Grads> {
        if grad.shape() != self.shape() {
            return Err(Error::Autograd(format!(
                "gradient shape {:?} does not match tensor shape {:?}",
                grad.shape(),
                self.shape()
            )));
        }
        if !self.is_tracked() {
            return Err(Error::Autograd(
                "this tensor does not depend on any parameter (was it computed under no_grad \
                 or from detached inputs?)"
                    .into(),
            ));
        }
        let _g = no_grad();
        let keep: HashSet<TensorId> = retain.iter().map(Tensor::id).collect();
        let order = topo_order(self);
        let mut pending: HashMap<TensorId, Tensor> = HashMap::new();
        pending.insert(self.id(), grad.clone());
        let mut leaves = Grads::default();
        for node in order.iter().rev() {
            let Some(g) = pending.remove(&node.id()) else {
                continue;
            };
            if node.0.op.is_some() && keep.contains(&node.id()) {
                leaves.0.insert(node.id(), g.clone());
            }
            let Some(op) = node.0.op.as_ref() else {
                add_into(&mut leaves.0, node.id(), g)?;
                continue;
            };
            let inputs = op.inputs();
            let grads = op.backward(node, &g)?;
            for (inp, gi) in inputs.iter().zip(grads) {
                if let Some(gi) = gi
                    && inp.is_tracked()
                {
                    if gi.shape() != inp.shape() {
                        return Err(Error::Autograd(format!(
                            "{}: backward produced {:?} for an input of shape {:?}",
                            op.name(),
                            gi.shape(),
                            inp.shape()
                        )));
                    }
                    add_into(&mut pending, inp.id(), gi)?;
                }
            }
        }
        Ok(leaves)
    }
}

/// Nodes reachable from `root` through tracked tensors, inputs before outputs.
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative post-order DFS: deep nets would overflow a recursive one.
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = &t.0.op {
            for inp in op.inputs() {
                if inp.is_tracked() && !seen.contains(&inp.id()) {
                    stack.push((inp, false));
                }
            }
        }
    }
    order
}
