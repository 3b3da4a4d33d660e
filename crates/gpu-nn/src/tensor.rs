//! GPU tensors: f32, contiguous, NCHW by convention.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::autograd::{self, BackwardOp};
use crate::buffer_pool::PooledBuffer;
use crate::error::{Error, Result, ensure_shape};
use crate::gpu::Gpu;
use crate::readback::Readback;

/// Unique id of a tensor node (views and detached copies get new ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// An f32 tensor in GPU memory. Cloning is cheap and shares the data.
///
/// Ops on tensors record GPU work without submitting it; results come back with
/// [`Tensor::read`] (async, browser-safe) or `to_vec_blocking` (native only).
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorInner>);

pub(crate) struct TensorInner {
    pub(crate) id: TensorId,
    pub(crate) gpu: Gpu,
    pub(crate) shape: Vec<usize>,
    pub(crate) storage: Arc<PooledBuffer>,
    pub(crate) op: Option<Arc<dyn BackwardOp>>,
    pub(crate) requires_grad: bool,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("id", &self.0.id)
            .field("shape", &self.0.shape)
            .field("requires_grad", &self.0.requires_grad)
            .field("op", &self.0.op.as_ref().map(|o| o.name()))
            .finish()
    }
}

/// Checks a shape for an op's output: no zero dimension, fits one storage binding.
pub(crate) fn check_shape(gpu: &Gpu, op: &'static str, shape: &[usize]) -> Result<usize> {
    ensure_shape!(
        !shape.is_empty() && shape.iter().all(|&d| d > 0),
        op,
        "shape {shape:?} has a zero-sized or missing dimension"
    );
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| crate::error::shape_err(op, format!("shape {shape:?} overflows")))?;
    let bytes = numel as u64 * 4;
    if bytes > gpu.max_binding_bytes() || numel > u32::MAX as usize {
        return Err(Error::TooLarge {
            op,
            shape: shape.to_vec(),
            bytes,
            max: gpu.max_binding_bytes(),
        });
    }
    Ok(numel)
}

impl Tensor {
    /// Uploads `data` as a tensor of `shape`.
    pub fn from_slice(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Self> {
        let numel = check_shape(gpu, "from_slice", shape)?;
        ensure_shape!(
            data.len() == numel,
            "from_slice",
            "{} values do not fill shape {shape:?} ({numel} elements)",
            data.len()
        );
        let storage = gpu.alloc(numel as u64 * 4);
        // Fresh from the pool: not used by the open recording, so the queue write is ordered.
        gpu.queue()
            .write_buffer(storage.buffer(), 0, bytemuck::cast_slice(data));
        Ok(Self::leaf(gpu, shape.to_vec(), Arc::new(storage), false))
    }

    /// A tensor of zeros.
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Self> {
        Self::full(gpu, shape, 0.0)
    }

    /// A tensor filled with `value` (one GPU dispatch, no upload).
    pub fn full(gpu: &Gpu, shape: &[usize], value: f32) -> Result<Self> {
        let t = Self::uninit(gpu, "full", shape)?;
        crate::ops::elementwise::fill(&t, value);
        Ok(t)
    }

    /// A trainable leaf: gradients are computed for it by [`Tensor::backward`].
    pub fn parameter(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Self> {
        Ok(Self::from_slice(gpu, data, shape)?.requires_grad())
    }

    /// The same data as a leaf that requires gradients.
    pub fn requires_grad(&self) -> Self {
        Self::leaf(
            &self.0.gpu,
            self.0.shape.clone(),
            Arc::clone(&self.0.storage),
            true,
        )
    }

    /// An output buffer for an op, contents undefined until a kernel writes it.
    pub(crate) fn uninit(gpu: &Gpu, op: &'static str, shape: &[usize]) -> Result<Self> {
        let numel = check_shape(gpu, op, shape)?;
        let storage = gpu.alloc(numel as u64 * 4);
        Ok(Self::leaf(gpu, shape.to_vec(), Arc::new(storage), false))
    }

    fn leaf(gpu: &Gpu, shape: Vec<usize>, storage: Arc<PooledBuffer>, requires_grad: bool) -> Self {
        Self(Arc::new(TensorInner {
            id: TensorId::fresh(),
            gpu: gpu.clone(),
            shape,
            storage,
            op: None,
            requires_grad,
        }))
    }

    /// Attaches a backward op to a freshly computed output if autodiff wants it.
    pub(crate) fn with_op(self, op: impl BackwardOp + 'static) -> Self {
        if !autograd::is_grad_enabled() || !op.inputs().iter().any(|t| t.0.requires_grad) {
            return self;
        }
        let inner = Arc::try_unwrap(self.0).unwrap_or_else(|arc| TensorInner {
            id: TensorId::fresh(),
            gpu: arc.gpu.clone(),
            shape: arc.shape.clone(),
            storage: Arc::clone(&arc.storage),
            op: None,
            requires_grad: false,
        });
        Self(Arc::new(TensorInner {
            op: Some(Arc::new(op)),
            requires_grad: true,
            ..inner
        }))
    }

    /// Node id, the key of [`crate::Grads`].
    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// The device this tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.0.gpu
    }

    /// Dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.shape.iter().product()
    }

    /// Whether gradients flow to or through this tensor.
    pub fn is_tracked(&self) -> bool {
        self.0.requires_grad
    }

    /// Name of the op that produced this tensor, if it is recorded for autodiff.
    pub fn op_name(&self) -> Option<&'static str> {
        self.0.op.as_ref().map(|o| o.name())
    }

    /// The underlying buffer (for showing a tensor as a texture, say). Read-only use.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.0.storage.buffer()
    }

    pub(crate) fn buf(&self) -> &wgpu::Buffer {
        self.0.storage.buffer()
    }

    /// True when both tensors share one GPU buffer.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// Same data, cut off from the autodiff graph.
    pub fn detach(&self) -> Self {
        Self::leaf(
            &self.0.gpu,
            self.0.shape.clone(),
            Arc::clone(&self.0.storage),
            false,
        )
    }

    /// A view with another shape of the same number of elements; no copy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let numel = check_shape(&self.0.gpu, "reshape", shape)?;
        ensure_shape!(
            numel == self.numel(),
            "reshape",
            "cannot view {:?} ({} elements) as {shape:?} ({numel})",
            self.shape(),
            self.numel()
        );
        let t = Self::leaf(
            &self.0.gpu,
            shape.to_vec(),
            Arc::clone(&self.0.storage),
            false,
        );
        Ok(t.with_op(ReshapeOp {
            input: self.clone(),
        })
        .traced(|| crate::trace::Op::Reshape, &[self]))
    }

    /// Flattens all dimensions after the first: [N, ...] -> [N, rest].
    pub fn flatten(&self) -> Result<Self> {
        let n = self.shape()[0];
        self.reshape(&[n, self.numel() / n])
    }

    /// Overwrites the contents from the CPU (loading weights). Submits recorded work first so
    /// the write lands after it.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        ensure_shape!(
            data.len() == self.numel(),
            "write",
            "{} values for a tensor of shape {:?}",
            data.len(),
            self.shape()
        );
        self.0.gpu.flush()?;
        self.0
            .gpu
            .queue()
            .write_buffer(self.buf(), 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Copies another tensor's contents into this one, in order with recorded work.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        ensure_shape!(
            src.numel() == self.numel(),
            "copy_from",
            "source {:?} and destination {:?} differ in size",
            src.shape(),
            self.shape()
        );
        self.0
            .gpu
            .copy(src.buf(), self.buf(), self.numel() as u64 * 4);
        Ok(())
    }

    /// A new tensor with a copy of the data (not tracked).
    pub fn deep_clone(&self) -> Result<Self> {
        let t = Self::uninit(&self.0.gpu, "deep_clone", self.shape())?;
        t.copy_from(self)?;
        Ok(t)
    }

    /// Starts an asynchronous readback: submits recorded work and maps a staging copy.
    /// Poll the result each frame with [`Readback::try_take`] or `.await` it.
    pub fn read(&self) -> Result<Readback> {
        Readback::start(self)
    }

    /// Reads the data back, blocking until the GPU is done. Native only (tests, CLI).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_blocking(&self) -> Result<Vec<f32>> {
        self.read()?.wait_blocking()
    }

    /// Reads back a one-element tensor. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn item_blocking(&self) -> Result<f32> {
        let v = self.to_vec_blocking()?;
        v.first()
            .copied()
            .ok_or_else(|| Error::Readback("empty tensor".into()))
    }
}

struct ReshapeOp {
    input: Tensor,
}

impl BackwardOp for ReshapeOp {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.input.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.reshape(self.input.shape())?)])
    }
}
