//! A buffer pool keyed by exact byte size, so that steady-state training allocates nothing.
//!
//! Buffers released while commands are recorded but not yet submitted are quarantined until
//! the submission: a buffer handed out again within the same command buffer could be
//! overwritten by `queue.write_buffer`, which the queue runs before the whole command buffer.
//! Buffers released when nothing is pending go straight back to the free lists, so one
//! step's buffers serve the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::gpu::{Gpu, GpuInner, lock};

/// Byte counts of the pool, for memory tests and the app's status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of all buffers the pool created that still exist (live + free + quarantined),
    /// plus the operand textures.
    pub allocated_bytes: u64,
    /// Bytes currently held by tensors.
    pub live_bytes: u64,
    /// Bytes of mappable readback buffers (in flight + free), part of `allocated_bytes`;
    /// bounded by how many readbacks are in flight at once.
    pub staging_bytes: u64,
    /// Bytes of the operand textures CPU drivers read kernels' inputs from, part of
    /// `allocated_bytes`; they grow to the largest operand and then stay.
    pub texture_bytes: u64,
    /// Number of buffers ever created.
    pub buffers_created: u64,
}

#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    quarantined: Vec<(u64, wgpu::Buffer)>,
    /// Unmapped MAP_READ buffers of finished readbacks, by size.
    staging: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: PoolStats,
}

/// A storage buffer on loan from the pool; goes back when dropped.
pub(crate) struct PooledBuffer {
    buf: Option<wgpu::Buffer>,
    bytes: u64,
    gpu: Arc<GpuInner>,
}

impl PooledBuffer {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        // Only `Drop` takes the buffer out.
        self.buf.as_ref().expect("pooled buffer present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            // Read before locking the pool: flush clears the flag before it frees quarantine.
            let recording = self.gpu.recording.load(Ordering::Acquire);
            let mut pool = lock(&self.gpu.pool);
            pool.stats.live_bytes -= self.bytes;
            if recording {
                pool.quarantined.push((self.bytes, buf));
            } else {
                pool.free.entry(self.bytes).or_default().push(buf);
            }
        }
    }
}

impl BufferPool {
    pub(crate) fn take(gpu: &Gpu, bytes: u64) -> PooledBuffer {
        // Storage bindings must be a multiple of 4 bytes and non-empty; whole 16-byte texels
        // let any tensor be copied into an operand texture (`Gpu::dispatch_texels`).
        let bytes = bytes.max(16).next_multiple_of(16);
        let mut pool = lock(&gpu.0.pool);
        let buf = match pool.free.get_mut(&bytes).and_then(Vec::pop) {
            Some(b) => b,
            None => {
                pool.stats.allocated_bytes += bytes;
                pool.stats.buffers_created += 1;
                gpu.0.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gpu-nn tensor"),
                    size: bytes,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }
        };
        pool.stats.live_bytes += bytes;
        PooledBuffer {
            buf: Some(buf),
            bytes,
            gpu: Arc::clone(&gpu.0),
        }
    }

    /// Accounts for an operand texture of `old` bytes replaced by one of `new` bytes.
    #[cfg(operand_textures)]
    pub(crate) fn texture_resized(&mut self, old: u64, new: u64) {
        self.stats.allocated_bytes = self.stats.allocated_bytes - old + new;
        self.stats.texture_bytes = self.stats.texture_bytes - old + new;
    }

    /// A mappable buffer for a readback of `bytes` bytes, reused when one is free.
    pub(crate) fn take_staging(gpu: &Gpu, bytes: u64) -> wgpu::Buffer {
        let mut pool = lock(&gpu.0.pool);
        if let Some(b) = pool.staging.get_mut(&bytes).and_then(Vec::pop) {
            return b;
        }
        pool.stats.allocated_bytes += bytes;
        pool.stats.staging_bytes += bytes;
        pool.stats.buffers_created += 1;
        gpu.0.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gpu-nn readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Takes back an unmapped staging buffer for reuse.
    pub(crate) fn return_staging(&mut self, bytes: u64, buf: wgpu::Buffer) {
        self.staging.entry(bytes).or_default().push(buf);
    }

    /// Forgets a staging buffer that is destroyed instead (its mapping never finished).
    pub(crate) fn discard_staging(&mut self, bytes: u64) {
        self.stats.allocated_bytes -= bytes;
        self.stats.staging_bytes -= bytes;
    }

    pub(crate) fn end_submission(&mut self) {
        for (bytes, buf) in self.quarantined.drain(..) {
            self.free.entry(bytes).or_default().push(buf);
        }
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Destroys every free buffer (after switching models, say).
    pub(crate) fn trim(&mut self) {
        for (bytes, bufs) in self.free.drain() {
            self.stats.allocated_bytes -= bytes * bufs.len() as u64;
        }
        for (bytes, bufs) in self.staging.drain() {
            let freed = bytes * bufs.len() as u64;
            self.stats.allocated_bytes -= freed;
            self.stats.staging_bytes -= freed;
        }
    }
}

impl Gpu {
    /// Releases the pool's free buffers and the operand textures back to the driver (after
    /// removing a model, say); what is still in use stays.
    pub fn trim_pool(&self) {
        #[cfg(operand_textures)]
        {
            let textures = self.drop_operand_textures();
            lock(&self.0.pool).texture_resized(textures, 0);
        }
        lock(&self.0.pool).trim();
    }
}
