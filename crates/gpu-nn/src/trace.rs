//! Op-level tracing, for exporters (ONNX). While [`trace`] runs a closure on this thread,
//! every op appends a [`Node`]: what it computed with its attributes, its input tensors and
//! its output tensor. Tracing changes nothing about what runs on the GPU; when no trace is
//! active an op pays one thread-local check.
//!
//! A tensor that reaches a traced op without being the output of a traced node is either an
//! input of the traced function, a parameter or buffer of the model (exporters match these by
//! storage, [`Tensor::same_storage`], so detached copies of frozen parameters are found), or
//! the output of an op that records nothing ([`Tensor::op_name`] names it when it is tracked).

use std::cell::RefCell;

use crate::ops::conv::{Conv2dOpts, ConvTranspose2dOpts};
use crate::ops::elementwise::Unary;
use crate::ops::pool::{AvgPool2dOpts, MaxPool2dOpts};
use crate::tensor::Tensor;

/// What one traced op computed.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// [`crate::conv2d`]; inputs x, weight[, bias].
    Conv2d(Conv2dOpts),
    /// [`crate::conv_transpose2d`]; inputs x, weight[, bias].
    ConvTranspose2d(ConvTranspose2dOpts),
    /// [`crate::linear`]: x Wᵀ + b; inputs x, weight[, bias].
    Linear,
    /// [`Tensor::matmul_t`]; inputs a, b.
    MatMul {
        /// `a` is used transposed.
        trans_a: bool,
        /// `b` is used transposed.
        trans_b: bool,
    },
    /// [`crate::batch_norm`]; inputs x, running_mean, running_var[, weight][, bias].
    BatchNorm {
        /// Batch statistics (training mode) rather than the running ones.
        training: bool,
        /// Added to the variance.
        eps: f32,
        /// Running-statistics momentum.
        momentum: f32,
        /// A weight (scale) input is present.
        weight: bool,
        /// A bias (shift) input is present.
        bias: bool,
    },
    /// [`crate::max_pool2d`]; input x.
    MaxPool2d(MaxPool2dOpts),
    /// [`crate::avg_pool2d`]; input x.
    AvgPool2d(AvgPool2dOpts),
    /// [`crate::adaptive_avg_pool2d`] to (oh, ow); input x.
    AdaptiveAvgPool2d((usize, usize)),
    /// Training-mode [`crate::dropout`] (`channels`: [`crate::dropout2d`]); evaluation-mode
    /// dropout is the identity and records nothing.
    Dropout {
        /// Drop probability.
        p: f32,
        /// Whole channels are dropped.
        channels: bool,
    },
    /// [`Tensor::unary`]; input x.
    Unary(Unary),
    /// [`Tensor::add`]; inputs a, b.
    Add,
    /// [`Tensor::sub`]; inputs a, b.
    Sub,
    /// [`Tensor::mul`]; inputs a, b.
    Mul,
    /// [`Tensor::axpby`]: alpha a + beta b; inputs a, b.
    Axpby(f32, f32),
    /// [`crate::cat_channels`]; the inputs in order.
    CatChannels,
    /// [`Tensor::narrow_channels`]; input x.
    NarrowChannels {
        /// First channel kept.
        start: usize,
        /// Channels kept.
        len: usize,
    },
    /// [`Tensor::reshape`] to the output's shape; input x.
    Reshape,
    /// [`Tensor::log_softmax`] over the last dimension; input x.
    LogSoftmax,
    /// [`Tensor::softmax`] over the last dimension; input x.
    Softmax,
    /// An op exporters do not map (reductions, losses), by name.
    Other(&'static str),
}

/// One traced op.
#[derive(Clone, Debug)]
pub struct Node {
    /// What it computed.
    pub op: Op,
    /// The dotted path of the layer that ran it (`layer1.0.conv1`; empty at the top), from
    /// [`crate::nn::Ctx::scope`].
    pub scope: String,
    /// Its inputs, in the order [`Op`] documents.
    pub inputs: Vec<Tensor>,
    /// Its output.
    pub output: Tensor,
}

thread_local! {
    static TRACE: RefCell<Option<Vec<Node>>> = const { RefCell::new(None) };
    static SCOPE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Sets the layer path recorded with the next nodes (called by `Ctx::scope` while tracing).
pub(crate) fn set_scope(path: String) {
    SCOPE.with(|s| *s.borrow_mut() = path);
}

/// Runs `f`, returning its result and the ops it ran, in order. Traces nest: an inner trace
/// takes the ops of its closure and the outer one resumes after it.
pub fn trace<R>(f: impl FnOnce() -> R) -> (R, Vec<Node>) {
    let outer = TRACE.with(|t| t.borrow_mut().replace(Vec::new()));
    set_scope(String::new());
    // Restores the outer trace even if `f` panics.
    struct Restore(Option<Option<Vec<Node>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                TRACE.with(|t| *t.borrow_mut() = outer);
            }
        }
    }
    let mut restore = Restore(Some(outer));
    let r = f();
    let nodes = TRACE.with(|t| t.borrow_mut().take()).unwrap_or_default();
    if let Some(outer) = restore.0.take() {
        TRACE.with(|t| *t.borrow_mut() = outer);
    }
    (r, nodes)
}

/// Whether a trace is active on this thread.
pub fn is_tracing() -> bool {
    TRACE.with(|t| t.borrow().is_some())
}

/// Appends a node to the active trace, if any. `op` is only evaluated while tracing.
pub(crate) fn record(op: impl FnOnce() -> Op, inputs: &[&Tensor], output: &Tensor) {
    TRACE.with(|t| {
        if let Some(nodes) = t.borrow_mut().as_mut() {
            nodes.push(Node {
                op: op(),
                scope: SCOPE.with(|s| s.borrow().clone()),
                inputs: inputs.iter().map(|&x| x.clone()).collect(),
                output: output.clone(),
            });
        }
    });
}

/// The traced inputs of an op with a weight and an optional bias.
pub(crate) fn with_bias<'a>(
    x: &'a Tensor,
    w: &'a Tensor,
    b: Option<&'a Tensor>,
) -> Vec<&'a Tensor> {
    let mut v = vec![x, w];
    v.extend(b);
    v
}

impl Tensor {
    /// Records this freshly computed output in the active trace and returns it. Call after
    /// `with_op`, which may give the output a new id.
    pub(crate) fn traced(self, op: impl FnOnce() -> Op, inputs: &[&Tensor]) -> Self {
        record(op, inputs, &self);
        self
    }
}
