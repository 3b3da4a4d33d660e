//! Asynchronous readback of GPU tensors. Nothing here blocks except the explicitly native
//! `wait_blocking`.

use futures_channel::oneshot;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, lock};
use crate::pool::BufferPool;
use crate::tensor::Tensor;

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
    rx: oneshot::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

impl Readback {
    pub(crate) fn start(t: &Tensor) -> Result<Self> {
        let gpu = t.gpu().clone();
        let bytes = t.numel() as u64 * 4;
        let staging = BufferPool::take_staging(&gpu, bytes);
        gpu.copy(t.buf(), &staging, bytes);
        gpu.flush()?;
        let (tx, rx) = oneshot::channel();
        let waker = lock(&gpu.0.waker).clone();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            // The receiver may be gone if the caller dropped the readback; nothing to do then.
            let _ = tx.send(r);
            if let Some(wake) = waker {
                wake();
            }
        });
        Ok(Self {
            gpu,
            staging: Some(staging),
            bytes,
            done: false,
            len: t.numel(),
            rx,
        })
    }

    fn finish(&mut self, r: std::result::Result<(), wgpu::BufferAsyncError>) -> Result<Vec<f32>> {
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

    /// Non-blocking: `Ok(Some(data))` once the GPU is done, `Ok(None)` while it is not.
    pub fn try_take(&mut self) -> Result<Option<Vec<f32>>> {
        self.gpu.poll();
        match self.rx.try_recv() {
            Ok(Some(r)) => self.finish(r).map(Some),
            Ok(None) => Ok(None),
            Err(_) => Err(Error::Readback("the device dropped the mapping".into())),
        }
    }

    /// Waits for the data. In the browser this yields to the event loop; natively the device
    /// must be polled by someone (see [`Readback::wait_blocking`]).
    pub async fn wait(mut self) -> Result<Vec<f32>> {
        let r = (&mut self.rx)
            .await
            .map_err(|_| Error::Readback("the device dropped the mapping".into()))?;
        self.finish(r)
    }

    /// Blocks until the data is there. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(mut self) -> Result<Vec<f32>> {
        self.gpu
            .device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        self.gpu.take_error()?;
        // With the device shared between threads, another thread's poll may have collected
        // our map callback and not run it yet when ours returns: wait on the channel itself.
        let r = pollster::block_on(&mut self.rx)
            .map_err(|_| Error::Readback("the device dropped the mapping".into()))?;
        self.finish(r)
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
