//! Asynchronous readback of GPU tensors. Nothing here blocks except the explicitly native
//! `*_blocking` methods, which wait for their own submission only, with a timeout.

use futures_channel::oneshot;

use crate::buffer_pool::BufferPool;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, lock};
use crate::tensor::Tensor;

type MapResult = std::result::Result<(), wgpu::BufferAsyncError>;

/// A readback in flight. Poll it once per frame with [`Readback::try_take`], or `.await`
/// [`Readback::wait`].
pub struct Readback {
    gpu: Gpu,
    /// Pooled MAP_READ buffer; goes back to the pool once read and unmapped.
    staging: Option<wgpu::Buffer>,
    bytes: u64,
    /// True once the data was copied out and the buffer unmapped.
    done: bool,
    len: usize,
    /// The submission that copies the data: blocking waits wait for it, not for the device.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    submission: Option<wgpu::SubmissionIndex>,
    rx: oneshot::Receiver<MapResult>,
}

/// Starts readbacks of several tensors with one submission (a checkpoint's tensors, say).
pub fn read_all(tensors: &[&Tensor]) -> Result<Vec<Readback>> {
    let Some(first) = tensors.first() else {
        return Ok(Vec::new());
    };
    let gpu = first.gpu().clone();
    let staged: Vec<(wgpu::Buffer, u64, usize)> = tensors
        .iter()
        .map(|t| {
            let bytes = t.numel() as u64 * 4;
            let staging = BufferPool::take_staging(&gpu, bytes);
            gpu.copy(t.buf(), &staging, bytes);
            (staging, bytes, t.numel())
        })
        .collect();
    gpu.flush()?;
    let submission = lock(&gpu.0.last_submission).clone();
    Ok(staged
        .into_iter()
        .map(|(staging, bytes, len)| Readback::map(&gpu, staging, bytes, len, submission.clone()))
        .collect())
}

impl Readback {
    pub(crate) fn start(t: &Tensor) -> Result<Self> {
        let mut v = read_all(&[t])?;
        v.pop()
            .ok_or_else(|| Error::Readback("no readback started".into()))
    }

    fn map(
        gpu: &Gpu,
        staging: wgpu::Buffer,
        bytes: u64,
        len: usize,
        submission: Option<wgpu::SubmissionIndex>,
    ) -> Self {
        let (tx, rx) = oneshot::channel();
        let waker = lock(&gpu.0.waker).clone();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            // The receiver may be gone if the caller dropped the readback; nothing to do then.
            let _ = tx.send(r);
            if let Some(wake) = waker {
                wake();
            }
        });
        Self {
            gpu: gpu.clone(),
            staging: Some(staging),
            bytes,
            done: false,
            len,
            submission,
            rx,
        }
    }

    fn finish(&mut self, r: MapResult) -> Result<Vec<f32>> {
        if r.is_err() {
            // A lost device fails its mappings: say that, not that a mapping failed.
            self.gpu.take_error()?;
        }
        r.map_err(|e| Error::Readback(e.to_string()))?;
        let staging = self
            .staging
            .as_ref()
            .ok_or_else(|| Error::Readback("readback already taken".into()))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Readback(e.to_string()))?;
        let mut out = vec![0f32; self.len];
        bytemuck::cast_slice_mut::<f32, u8>(&mut out).copy_from_slice(&view);
        drop(view);
        staging.unmap();
        self.done = true;
        Ok(out)
    }

    /// Why a mapping never arrives: the device's own error when it reported one (a lost
    /// device says so), else a dropped mapping.
    fn dropped(&self) -> Error {
        match self.gpu.take_error() {
            Err(e) => e,
            Ok(()) => Error::Readback("the device dropped the mapping".into()),
        }
    }

    /// Non-blocking: `Ok(Some(data))` once the GPU is done, `Ok(None)` while it is not.
    pub fn try_take(&mut self) -> Result<Option<Vec<f32>>> {
        self.gpu.poll();
        match self.rx.try_recv() {
            Ok(Some(r)) => self.finish(r).map(Some),
            Ok(None) => Ok(None),
            Err(_) => Err(self.dropped()),
        }
    }

    /// Waits for the data. In the browser this yields to the event loop; natively the device
    /// must be polled by someone (see [`Readback::wait_blocking`]).
    pub async fn wait(mut self) -> Result<Vec<f32>> {
        match (&mut self.rx).await {
            Ok(r) => self.finish(r),
            Err(_) => Err(self.dropped()),
        }
    }

    /// Blocks until this readback's submission is done (not the whole device's work), at
    /// most [`crate::WAIT_TIMEOUT`], and takes the data. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn take_blocking(&mut self) -> Result<Vec<f32>> {
        if let Some(v) = self.try_take()? {
            return Ok(v);
        }
        self.gpu.wait_for(self.submission.clone())?;
        // With the device shared between threads, another thread's poll may have collected
        // our map callback and not run it yet when ours returns: wait on the channel itself.
        match pollster::block_on(&mut self.rx) {
            Ok(r) => self.finish(r),
            Err(_) => Err(self.dropped()),
        }
    }

    /// [`Readback::take_blocking`], consuming the readback. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(mut self) -> Result<Vec<f32>> {
        self.take_blocking()
    }
}

impl Drop for Readback {
    fn drop(&mut self) {
        if let Some(buf) = self.staging.take() {
            let mut pool = lock(&self.gpu.0.pool);
            if self.done {
                pool.return_staging(self.bytes, buf);
            } else {
                // A mapping may still be pending: such a buffer cannot be reused.
                pool.discard_staging(self.bytes);
            }
        }
    }
}
