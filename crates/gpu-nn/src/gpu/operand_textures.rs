//! Operand textures, lavapipe's path only (native, `cpu-drivers`): a kernel's texel
//! operands are copied into rgba32float textures before it runs, since lavapipe gathers
//! texels where it loops over the lanes for a storage load with per-lane addresses.

use super::operands::{OPERAND_W, texel_count};
use super::*;

impl Gpu {
    /// Records the dispatch of `k` with each tensor of `texels` copied into an operand
    /// texture first, then `buffers` in binding order. Value `e` of an operand lands in
    /// texel `t = e / 4` at `(t % OPERAND_W, t / OPERAND_W)`, component `e % 4` (`texel` in
    /// the WGSL). Copies and dispatch are recorded under one lock, so threads sharing the
    /// device cannot refill a texture in between; a later op may refill it, since commands
    /// run in order.
    pub(super) fn dispatch_with_textures(
        &self,
        k: &Kernel,
        params: &[u32],
        texels: &[&Tensor],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
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
            self.record(&mut rec, k, params, resources, groups, true);
        });
    }

    /// Copies `texels` whole texels of `buf` into operand texture `slot` (created or grown
    /// as needed) and returns its view.
    fn fill_operand(
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
