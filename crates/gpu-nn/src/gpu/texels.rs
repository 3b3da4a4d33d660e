//! Operand textures, used only on CPU drivers (lavapipe): kernels whose operands are
//! declared `Access::Texels` read them through texture fetches; everywhere else they read
//! the buffers.

use super::*;

/// Texels per row of the operand textures ([`Gpu::dispatch_texels`]): 16 KiB rows, a
/// multiple of the 256 bytes a buffer-to-texture copy needs per row. `OPERAND_W` in WGSL.
pub(crate) const OPERAND_W: u32 = 1024;

/// Whole texels holding `floats` values (at least one).
pub(super) fn texel_count(floats: usize) -> u64 {
    floats.div_ceil(4).max(1) as u64
}

impl Gpu {
    /// Whether memory-bound kernels should use their twins that read operands a texel (four
    /// values) at a time through [`Gpu::dispatch_texels`]: on the CPU drivers the subgroup
    /// kernels serve. On lavapipe the texels come from textures, whose gathers cost less than
    /// storage loads with per-lane addresses; on SwiftShader from the buffers, still faster
    /// than the scalar kernels.
    pub(crate) fn texel_operands(&self) -> bool {
        self.uses_subgroups()
    }

    /// Whether [`Gpu::dispatch_texels`] copies operands into textures on this device (see
    /// [`GpuOptions::operand_textures`]); otherwise the kernels read the buffers.
    pub fn operand_textures(&self) -> bool {
        self.0.textures
    }

    /// Whether tensors can be [`Access::Texels`] operands of [`Gpu::dispatch_texels`]: each
    /// fits the device's texture height limit and its buffer holds whole texels.
    pub(crate) fn texels_fit(&self, operands: &[&Tensor]) -> bool {
        let max = u64::from(self.0.limits.max_texture_dimension_2d);
        operands.iter().all(|t| {
            let texels = texel_count(t.numel());
            let rows_fit = !self.0.textures || texels.div_ceil(u64::from(OPERAND_W)) <= max;
            rows_fit && t.buf().size() >= texels * 16
        })
    }

    /// Dispatches a kernel that has a texel twin: with `texels`, `kernels.1` on `grids.1`
    /// with `inputs` as operand textures, else `kernels.0` on `grids.0` with them as storage
    /// buffers; `rest` follow either way. Callers decide `texels` with
    /// [`Gpu::texel_operands`] and [`Gpu::texels_fit`].
    pub(crate) fn dispatch_either(
        &self,
        texels: bool,
        kernels: (&Kernel, &Kernel),
        params: &[u32],
        inputs: &[&Tensor],
        rest: &[&wgpu::Buffer],
        grids: ([u32; 3], [u32; 3]),
    ) -> Result<()> {
        if texels {
            return self.dispatch_texels(kernels.1, params, inputs, rest, grids.1);
        }
        let bufs: Vec<&wgpu::Buffer> = inputs
            .iter()
            .map(|t| t.buf())
            .chain(rest.iter().copied())
            .collect();
        self.dispatch(kernels.0, params, &bufs, grids.0);
        Ok(())
    }

    /// Records a dispatch of `k` whose first bindings are [`Access::Texels`] operands: each
    /// tensor of `texels` is copied into an operand texture first, then `buffers` follow in
    /// binding order. Value `e` of an operand lands in texel `t = e / 4` at
    /// `(t % OPERAND_W, t / OPERAND_W)`, component `e % 4` (`texel` in the WGSL). Copies
    /// and dispatch are recorded under one lock, so threads sharing the device cannot
    /// refill a texture in between; a later op may refill it, since commands run in order.
    /// Without operand textures ([`Gpu::operand_textures`]) the tensors' buffers are bound
    /// instead, as arrays of texels (see `operands_as_buffers`).
    /// Callers check [`Gpu::texels_fit`] first (and use a buffer kernel otherwise).
    pub(crate) fn dispatch_texels(
        &self,
        k: &Kernel,
        params: &[u32],
        texels: &[&Tensor],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        if !self.texels_fit(texels) {
            return Err(Error::Gpu(format!(
                "{}: an operand does not fit an operand texture",
                k.entry
            )));
        }
        if !self.0.textures {
            let resources = texels
                .iter()
                .map(|t| t.buf().as_entire_binding())
                .chain(buffers.iter().map(|b| b.as_entire_binding()))
                .collect();
            self.dispatch_with(k, params, resources, groups);
            return Ok(());
        }
        self.profiled(k.entry, || {
            let mut rec = lock(&self.0.rec);
            let views: Vec<wgpu::TextureView> = texels
                .iter()
                .enumerate()
                .map(|(slot, t)| self.fill_operand(&mut rec, slot, t.buf(), texel_count(t.numel())))
                .collect();
            let mut resources: Vec<wgpu::BindingResource<'_>> = views
                .iter()
                .map(wgpu::BindingResource::TextureView)
                .collect();
            resources.extend(buffers.iter().map(|b| b.as_entire_binding()));
            self.record(&mut rec, k, params, resources, groups);
        });
        Ok(())
    }

    /// Copies `texels` whole texels of `buf` into operand texture `slot` (created or grown
    /// as needed) and returns its view.
    pub(super) fn fill_operand(
        &self,
        rec: &mut Recorder,
        slot: usize,
        buf: &wgpu::Buffer,
        texels: u64,
    ) -> wgpu::TextureView {
        let w = u64::from(OPERAND_W);
        let height = texels.div_ceil(w);
        let max = u64::from(self.0.limits.max_texture_dimension_2d);
        let mut textures = lock(&self.0.operands);
        if textures.len() <= slot {
            textures.resize(slot + 1, None);
        }
        let texture = match &textures[slot] {
            Some(t) if u64::from(t.height()) >= height => t.clone(),
            old => {
                // Doubling bounds the number of re-creations while operands grow.
                let h = height.next_power_of_two().min(max) as u32;
                let bytes = |height: u32| u64::from(OPERAND_W) * u64::from(height) * 16;
                let old_bytes = old.as_ref().map_or(0, |t| bytes(t.height()));
                lock(&self.0.pool).texture_resized(old_bytes, bytes(h));
                let t = self.0.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some("gpu-nn operand"),
                    size: wgpu::Extent3d {
                        width: OPERAND_W,
                        height: h,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: wgpu::TextureFormat::Rgba32Float,
                    usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                });
                // Commands recorded with the old texture keep it alive until they ran.
                textures[slot] = Some(t.clone());
                t
            }
        };
        drop(textures);
        self.0.recording.store(true, Ordering::Release);
        rec.pass = None;
        let enc = rec.encoder(&self.0.device);
        let full = texels / w;
        let rest = texels % w;
        let copy = |enc: &mut wgpu::CommandEncoder, row: u64, width: u64, rows: u64| {
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: buf,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: row * w * 16,
                        bytes_per_row: Some(OPERAND_W * 16),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: row as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: width as u32,
                    height: rows as u32,
                    depth_or_array_layers: 1,
                },
            );
        };
        if full > 0 {
            copy(enc, 0, w, full);
        }
        if rest > 0 {
            copy(enc, full, rest, 1);
        }
        texture.create_view(&wgpu::TextureViewDescriptor::default())
    }

    /// Drops the operand textures (they are made again at the next dispatch that needs
    /// them) and returns their bytes. Commands already recorded keep theirs alive.
    pub(crate) fn drop_operand_textures(&self) -> u64 {
        let mut textures = lock(&self.0.operands);
        let bytes = textures
            .iter()
            .flatten()
            .map(|t| u64::from(OPERAND_W) * u64::from(t.height()) * 16)
            .sum();
        textures.clear();
        bytes
    }
}
