//! Which kernels a device runs, decided once when its [`Gpu`] is made.
//!
//! GPUs run the portable kernels: workgroup-tiled GEMMs, operands read from their buffers.
//! CPU drivers (lavapipe, SwiftShader) run a second set behind the `cpu-drivers` feature,
//! kept for the test suite's speed there: subgroup GEMMs whose lanes share rows, fed from
//! operand textures on lavapipe. Everything of that set lives in the `cpu_subgroup` module
//! of an op family and in `operand_textures.rs`.

/// The kernels a device runs (see [`crate::Gpu::kernel_set`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelSet {
    /// The kernels written for GPUs; every WebGPU device runs them.
    Portable,
    /// The CPU-driver kernels: subgroup conv and matmul kernels where the adapter is a CPU
    /// driver with subgroups of 4+ lanes.
    #[cfg(feature = "cpu-drivers")]
    CpuSubgroup(CpuSubgroup),
}

/// How the CPU-driver kernels run on one device.
#[cfg(feature = "cpu-drivers")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuSubgroup {
    /// Rows per lane block: 8 where subgroups have 8+ lanes (lavapipe), else 4 (SwiftShader).
    pub lanes: u32,
    /// Operands are copied into textures (lavapipe, natively) rather than read from their
    /// buffers.
    pub textures: bool,
}

impl KernelSet {
    /// The set for a device on `info` (`subgroups`: it was created with the subgroup
    /// feature). The CPU-driver set runs where the device has subgroups of 4+ lanes and is a
    /// CPU driver (see docs/perf-notes.md for the measurements).
    pub(super) fn for_adapter(info: &wgpu::AdapterInfo, subgroups: bool) -> Self {
        #[cfg(feature = "cpu-drivers")]
        if subgroups && info.subgroup_min_size >= 4 && info.device_type == wgpu::DeviceType::Cpu {
            return KernelSet::CpuSubgroup(CpuSubgroup {
                lanes: if info.subgroup_min_size >= 8 { 8 } else { 4 },
                textures: textures_by_default(info),
            });
        }
        let _ = (info, subgroups);
        KernelSet::Portable
    }

    /// `self` narrowed to what `wanted` asks for: the portable set always; the CPU-driver
    /// set only where this device runs it, with at most its lanes.
    pub(super) fn narrowed(self, wanted: KernelSet) -> Self {
        match (self, wanted) {
            #[cfg(feature = "cpu-drivers")]
            (KernelSet::CpuSubgroup(have), KernelSet::CpuSubgroup(want)) => {
                KernelSet::CpuSubgroup(CpuSubgroup {
                    lanes: if want.lanes >= 8 { have.lanes } else { 4 },
                    textures: want.textures && cfg!(operand_textures),
                })
            }
            _ => KernelSet::Portable,
        }
    }

    /// A line for the log.
    pub(super) fn describe(self) -> String {
        match self {
            KernelSet::Portable => "portable kernels".to_string(),
            #[cfg(feature = "cpu-drivers")]
            KernelSet::CpuSubgroup(s) => format!(
                "CPU-driver kernels, {}-row blocks, operands in {}",
                s.lanes,
                if s.textures { "textures" } else { "buffers" }
            ),
        }
    }

    /// Whether operands are copied into textures.
    pub(super) fn textures(self) -> bool {
        match self {
            KernelSet::Portable => false,
            #[cfg(feature = "cpu-drivers")]
            KernelSet::CpuSubgroup(s) => s.textures,
        }
    }
}

/// Whether operands go through textures by default on this adapter: only on Mesa's lavapipe
/// (llvmpipe), where a storage load with a per-lane address runs as a loop over the lanes
/// and a texel fetch is one gather. Elsewhere they read the buffers: SwiftShader trained
/// faster that way, natively and in Chrome (whose robustness pass also clamps every texel
/// coordinate).
#[cfg(feature = "cpu-drivers")]
fn textures_by_default(info: &wgpu::AdapterInfo) -> bool {
    cfg!(operand_textures) && (info.name.contains("llvmpipe") || info.driver.contains("llvmpipe"))
}
