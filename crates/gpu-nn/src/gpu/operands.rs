//! Dispatches of kernels with texel operands (`Access::Texels`): bound as buffers of vec4
//! (the buffer variant of the kernel's WGSL), or copied into operand textures on devices that
//! use them (`operand_textures.rs`).

use super::*;

/// Texels per row of the operand textures ([`Gpu::dispatch_texels`]): 16 KiB rows, a
/// multiple of the 256 bytes a buffer-to-texture copy needs per row. `OPERAND_W` in WGSL.
pub(crate) const OPERAND_W: u32 = 1024;

/// Whole texels holding `floats` values (at least one).
pub(super) fn texel_count(floats: usize) -> u64 {
    floats.div_ceil(4).max(1) as u64
}

/// Whether every operand's buffer holds whole texels (pool buffers always do).
fn whole_texels(operands: &[&Tensor]) -> bool {
    operands
        .iter()
        .all(|t| t.buf().size() >= texel_count(t.numel()) * 16)
}

impl Gpu {
    /// Whether tensors are [`Access::Texels`] operands the way this device reads them best:
    /// each buffer holds whole texels and, where the device copies operands into textures,
    /// each fits the texture height limit. The CPU-driver kernels run only then.
    pub(crate) fn texels_fit(&self, operands: &[&Tensor]) -> bool {
        whole_texels(operands) && (!self.0.kernels.textures() || self.textures_fit(operands))
    }

    /// Whether every operand fits an operand texture (the device's texture height limit).
    pub(super) fn textures_fit(&self, operands: &[&Tensor]) -> bool {
        let max = u64::from(self.0.limits.max_texture_dimension_2d);
        operands
            .iter()
            .all(|t| texel_count(t.numel()).div_ceil(u64::from(OPERAND_W)) <= max)
    }

    /// Dispatches one of two kernels: with `texels`, `kernels.1` on `grids.1` reading
    /// `inputs` as texel operands, else `kernels.0` on `grids.0` reading them as plain
    /// storage buffers (a shape the texel kernel does not cover); `rest` follow either way.
    /// Callers decide `texels` with the shape and [`Gpu::texels_fit`].
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

    /// Records a dispatch of `k` whose first bindings are [`Access::Texels`] operands, the
    /// tensors of `texels`, then `buffers` in binding order. The operands' buffers are bound
    /// as arrays of vec4, or copied into operand textures where the device uses them and
    /// they fit.
    pub(crate) fn dispatch_texels(
        &self,
        k: &Kernel,
        params: &[u32],
        texels: &[&Tensor],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        if !whole_texels(texels) {
            return Err(Error::Gpu(format!(
                "{}: an operand's buffer is not whole texels",
                k.entry
            )));
        }
        // Operands too large for a texture are read from their buffers instead.
        #[cfg(operand_textures)]
        if self.0.kernels.textures() && self.textures_fit(texels) {
            self.dispatch_with_textures(k, params, texels, buffers, groups);
            return Ok(());
        }
        let resources = texels
            .iter()
            .map(|t| t.buf().as_entire_binding())
            .chain(buffers.iter().map(|b| b.as_entire_binding()))
            .collect();
        self.dispatch_with(k, params, resources, groups);
        Ok(())
    }
}
