//! The GPU context: device acquisition, pipeline cache, buffer pool and the command recorder.
//!
//! Every op records its dispatch into one open command encoder. Nothing is submitted until
//! [`Gpu::flush`] (or a readback) is called, so a whole training step is one submission.
//!
//! Here: the `Gpu` handle, its accessors, submission and errors. Beside it: `acquire`
//! (adapters, devices), `kernel_set` (which kernels a device runs), `pipeline` (layout and
//! pipeline caches, the WGSL variant a device gets), `recorder` (encoder and params arena),
//! `profile` (timed dispatches), `operands` (dispatches with texel operands) and
//! `operand_textures` (copying operands into textures: lavapipe only).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::buffer_pool::{BufferPool, PoolStats, PooledBuffer};
use crate::error::{Error, Result};
use crate::kernel::{Access, Kernel};
use crate::tensor::Tensor;

mod acquire;
mod kernel_set;
#[cfg(operand_textures)]
mod operand_textures;
mod operands;
mod pipeline;
mod profile;
mod recorder;

use acquire::binding_cap;
pub use acquire::{GpuOptions, check_adapter};
#[cfg(feature = "cpu-drivers")]
pub use kernel_set::CpuSubgroup;
pub use kernel_set::KernelSet;
pub(crate) use pipeline::Layout;
pub use profile::KernelTime;
use recorder::Recorder;

/// What every label of gpu-nn's wgpu objects starts with.
pub(crate) const LABEL: &str = "gpu-nn";

/// The longest a native blocking wait waits for the GPU. Generous: one training step of a
/// 224x224 network on a CPU driver takes minutes.
#[cfg(not(target_arch = "wasm32"))]
pub const WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// A callback run when readback data arrives, e.g. an egui `request_repaint`.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A layout's cache key: the bindings, and whether texel operands are textures.
type LayoutKey = (Vec<Access>, bool);

/// A pipeline's cache key: (file, kernel name, texture variant).
type PipelineKey = (&'static str, &'static str, bool);

/// A handle on one wgpu device and queue plus everything `gpu-nn` keeps per device.
/// Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub struct Gpu(pub(crate) Arc<GpuInner>);

pub(crate) struct GpuInner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// The kernels this device runs, decided once (`kernel_set.rs`).
    kernels: KernelSet,
    layouts: Mutex<HashMap<LayoutKey, Arc<Layout>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    pub(crate) pool: Mutex<BufferPool>,
    rec: Mutex<Recorder>,
    /// Operand textures by slot (see [`Gpu::dispatch_texels`]); each grows to the largest
    /// operand it has held, so steady-state training allocates none.
    #[cfg(operand_textures)]
    operands: Mutex<Vec<Option<wgpu::Texture>>>,
    /// First uncaptured wgpu error since the last flush; reported by [`Gpu::flush`].
    error: Arc<Mutex<Option<String>>>,
    /// Why the device was lost, once it was: every later flush and readback reports it.
    lost: Arc<Mutex<Option<String>>>,
    /// True while commands are recorded but not submitted: buffers released then must wait
    /// for the submission before they are reused (see `buffer_pool.rs`).
    pub(crate) recording: AtomicBool,
    submissions: AtomicU64,
    /// The last submission, so a readback can wait for its own work and nothing after it.
    pub(crate) last_submission: Mutex<Option<wgpu::SubmissionIndex>>,
    /// Called whenever a readback's data has arrived (see [`Gpu::set_readback_waker`]).
    pub(crate) waker: Mutex<Option<Waker>>,
    /// Calls and seconds per kernel entry point; `Some` only on a profiling device.
    profile: Option<Mutex<HashMap<&'static str, (u64, f64)>>>,
    /// The longest a blocking wait waits ([`WAIT_TIMEOUT`] unless
    /// [`Gpu::with_wait_timeout`] says otherwise).
    #[cfg(not(target_arch = "wasm32"))]
    wait_timeout: std::time::Duration,
}

/// Lock a mutex, recovering from poisoning: our state stays consistent across panics in
/// user callbacks because every critical section is short and does not call out.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.0.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.0.queue
    }

    /// What the driver says about the adapter.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.0.info
    }

    /// The kernels this device runs.
    pub fn kernel_set(&self) -> KernelSet {
        self.0.kernels
    }

    /// The CPU-driver kernels' settings where this device runs them.
    #[cfg(feature = "cpu-drivers")]
    pub(crate) fn cpu_subgroup(&self) -> Option<CpuSubgroup> {
        match self.0.kernels {
            KernelSet::CpuSubgroup(s) => Some(s),
            KernelSet::Portable => None,
        }
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.limits
    }

    /// Largest tensor, in bytes, that one storage binding can hold on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        let device = self
            .0
            .limits
            .max_storage_buffer_binding_size
            .min(self.0.limits.max_buffer_size);
        binding_cap().map_or(device, |cap| cap.min(device))
    }

    /// Buffer pool statistics (bytes allocated, live, free).
    pub fn pool_stats(&self) -> PoolStats {
        lock(&self.0.pool).stats()
    }

    /// Runs `waker` each time a readback's data arrives. In the browser that happens in a
    /// promise callback, with no polling, so a UI can sleep until results are there instead
    /// of redrawing to poll (natively the callbacks run inside [`Gpu::poll`]).
    pub fn set_readback_waker(&self, waker: Waker) {
        *lock(&self.0.waker) = Some(waker);
    }

    /// Number of command buffers submitted since the device was created.
    pub fn submission_count(&self) -> u64 {
        self.0.submissions.load(Ordering::Relaxed)
    }

    /// Number of dispatches recorded since the device was created.
    pub fn dispatch_count(&self) -> u64 {
        lock(&self.0.rec).dispatches
    }

    /// Takes a buffer of `bytes` bytes from the pool. Never returns a buffer that commands
    /// of the still-open recording use, so writing it with `queue.write_buffer` is safe.
    pub(crate) fn alloc(&self, bytes: u64) -> PooledBuffer {
        BufferPool::take(self, bytes)
    }

    /// Submits everything recorded so far as one command buffer. Cheap when nothing was
    /// recorded. Never waits for the GPU.
    pub fn flush(&self) -> Result<()> {
        let mut rec = lock(&self.0.rec);
        rec.pass = None;
        if let Some(enc) = rec.encoder.take() {
            // Params first: queue writes land before the command buffer submitted after them.
            let staged = std::mem::take(&mut rec.staged);
            for (i, data) in staged.iter().enumerate() {
                if !data.is_empty() {
                    self.0.queue.write_buffer(&rec.chunks[i], 0, data);
                }
            }
            rec.staged = staged
                .into_iter()
                .map(|mut v| {
                    v.clear();
                    v
                })
                .collect();
            let index = self.0.queue.submit([enc.finish()]);
            *lock(&self.0.last_submission) = Some(index);
            self.0.submissions.fetch_add(1, Ordering::Relaxed);
        }
        self.0.recording.store(false, Ordering::Release);
        drop(rec);
        // Buffers released while their commands were being recorded may be reused now.
        lock(&self.0.pool).end_submission();
        self.take_error()
    }

    /// Returns (and clears) a wgpu error reported since the last check. A lost device is
    /// reported every time, not cleared.
    pub fn take_error(&self) -> Result<()> {
        if lock(&self.0.error).is_some() {
            // An error may come from a device that was lost just now: a poll runs the
            // device-lost callback, so the error says what really happened.
            let _ = self.0.device.poll(wgpu::PollType::Poll);
        }
        if let Some(why) = lock(&self.0.lost).clone() {
            return Err(Error::DeviceLost(why));
        }
        match lock(&self.0.error).take() {
            Some(e) => {
                // A pipeline named in the error may be invalid: make it anew at next use
                // rather than keep a broken one.
                lock(&self.0.pipelines).retain(|(file, _, _), _| !e.contains(file));
                Err(Error::Gpu(e))
            }
            None => Ok(()),
        }
    }

    /// True once the device was lost (nothing submitted to it runs any more).
    pub fn is_lost(&self) -> bool {
        lock(&self.0.lost).is_some()
    }

    /// Why the device was lost (wgpu's reason and message), once it was.
    pub fn lost_reason(&self) -> Option<String> {
        lock(&self.0.lost).clone()
    }

    /// Non-blocking: lets wgpu run completed callbacks (readbacks). Call once per frame.
    pub fn poll(&self) {
        // A poll error means the device is lost; the uncaptured-error handler records it.
        let _ = self.0.device.poll(wgpu::PollType::Poll);
    }

    /// Sets the longest a native blocking wait waits (default [`WAIT_TIMEOUT`]). Call before
    /// the `Gpu` is cloned.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_wait_timeout(mut self, timeout: std::time::Duration) -> Result<Self> {
        Self::unshared(&mut self, "with_wait_timeout")?.wait_timeout = timeout;
        Ok(self)
    }

    /// Blocks until the GPU is idle, at most [`WAIT_TIMEOUT`]. Native only: the browser
    /// must never block.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait_for(None)
    }

    /// Blocks until submission `index` (`None`: the latest) has finished and its callbacks
    /// ran, at most [`WAIT_TIMEOUT`]; a hung driver is an error, not a hang.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wait_for(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let poll = wgpu::PollType::Wait {
            submission_index: index,
            timeout: Some(self.0.wait_timeout),
        };
        match self.0.device.poll(poll) {
            Ok(_) => self.take_error(),
            Err(wgpu::PollError::Timeout) => Err(Error::Timeout(self.0.wait_timeout)),
            Err(e) => {
                // A lost device also reports through the error handler; prefer its words.
                self.take_error()?;
                Err(Error::Gpu(e.to_string()))
            }
        }
    }
}
