//! The recorder: one open command encoder and compute pass per submission, and the
//! params arena whose 256-byte slots hold each dispatch's uniform parameters.

use super::*;

/// Size of one parameter slot in the params arena. WebGPU's
/// `minUniformBufferOffsetAlignment` is at most 256, so every slot is correctly aligned.
pub(crate) const PARAM_SLOT: u64 = 256;

/// Slots per arena chunk (64 KiB chunks).
pub(super) const SLOTS_PER_CHUNK: u64 = 256;

/// The open command encoder plus the params arena of the current submission.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) encoder: Option<wgpu::CommandEncoder>,
    pub(super) pass: Option<wgpu::ComputePass<'static>>,
    /// Uniform chunks, reused across submissions.
    pub(super) chunks: Vec<wgpu::Buffer>,
    /// CPU copy of the params written in the current submission (one Vec per used chunk).
    pub(super) staged: Vec<Vec<u8>>,
    pub(super) dispatches: u64,
}

impl Recorder {
    pub(super) fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gpu-nn step"),
            })
        })
    }

    pub(super) fn pass(&mut self, device: &wgpu::Device) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self
                .encoder(device)
                .begin_compute_pass(&wgpu::ComputePassDescriptor::default())
                .forget_lifetime();
            self.pass = Some(pass);
        }
        // Just inserted above when absent.
        self.pass.as_mut().expect("compute pass present")
    }

    /// Appends one params slot and returns (chunk index, byte offset).
    pub(super) fn push_params(&mut self, device: &wgpu::Device, params: &[u32]) -> (usize, u64) {
        // A kernel whose params outgrow a slot would overwrite its neighbour's: a bug in a
        // launcher, caught in release builds too.
        assert!(
            params.len() * 4 <= PARAM_SLOT as usize,
            "kernel params of {} bytes exceed the {PARAM_SLOT}-byte slot",
            params.len() * 4
        );
        let chunk_bytes = (PARAM_SLOT * SLOTS_PER_CHUNK) as usize;
        let idx = match self.staged.iter().position(|v| v.len() < chunk_bytes) {
            Some(i) => i,
            None => {
                self.staged.push(Vec::with_capacity(chunk_bytes));
                self.staged.len() - 1
            }
        };
        while self.chunks.len() <= idx {
            self.chunks
                .push(device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gpu-nn params"),
                    size: chunk_bytes as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }));
        }
        let v = &mut self.staged[idx];
        let offset = v.len() as u64;
        v.extend_from_slice(bytemuck::cast_slice(params));
        v.resize(offset as usize + PARAM_SLOT as usize, 0);
        (idx, offset)
    }
}

impl Gpu {
    /// Records one dispatch of `k` with uniform `params` and storage `buffers` (in binding
    /// order 1..). `groups` is the number of workgroups; more than the per-dimension limit
    /// spills into y (kernels recover the linear index from `num_workgroups`).
    pub(crate) fn dispatch(
        &self,
        k: &Kernel,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        let resources: Vec<_> = buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.dispatch_with(k, params, resources, groups);
    }

    /// [`Gpu::dispatch`] with any binding resources (texture views for `Image` bindings).
    pub(crate) fn dispatch_with(
        &self,
        k: &Kernel,
        params: &[u32],
        resources: Vec<wgpu::BindingResource<'_>>,
        groups: [u32; 3],
    ) {
        self.profiled(k.entry, || {
            let mut rec = lock(&self.0.rec);
            self.record(&mut rec, k, params, resources, groups, false);
        });
    }

    /// Records the dispatch into `rec`; `textures`: texel operands are bound as textures.
    pub(super) fn record(
        &self,
        rec: &mut Recorder,
        k: &Kernel,
        params: &[u32],
        resources: Vec<wgpu::BindingResource<'_>>,
        groups: [u32; 3],
        textures: bool,
    ) {
        debug_assert_eq!(resources.len(), k.bindings.len(), "{}", k.entry);
        let layout = self.layout(k.bindings, textures);
        let pipeline = self.pipeline(k, &layout, textures);
        self.0.recording.store(true, Ordering::Release);
        let (chunk, offset) = rec.push_params(&self.0.device, params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rec.chunks[chunk],
                offset,
                size: wgpu::BufferSize::new(PARAM_SLOT),
            }),
        }];
        for (i, resource) in resources.into_iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource,
            });
        }
        let bind = self.0.device.create_bind_group(&wgpu::BindGroupDescriptor {
            // Named, so that its errors are the engine's (see `from_device`).
            label: Some(LABEL),
            layout: &layout.bind,
            entries: &entries,
        });
        let max = self.0.limits.max_compute_workgroups_per_dimension.max(1);
        let [mut x, mut y, z] = groups;
        if x > max {
            y = y.saturating_mul(x.div_ceil(max));
            x = max;
        }
        let pass = rec.pass(&self.0.device);
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(x.max(1), y.max(1), z.max(1));
        rec.dispatches += 1;
    }

    /// Records a buffer-to-buffer copy in order with the recorded dispatches.
    pub(crate) fn copy(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer, bytes: u64) {
        let mut rec = lock(&self.0.rec);
        self.0.recording.store(true, Ordering::Release);
        rec.pass = None;
        let enc = rec.encoder(&self.0.device);
        enc.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
    }
}
