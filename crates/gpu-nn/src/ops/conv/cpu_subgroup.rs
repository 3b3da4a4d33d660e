//! The conv kernels of the CPU-driver kernel set (`shaders/conv_subgroup.wgsl`): subgroup
//! GEMMs whose lanes share a block of rows, the row operand packed step-major first. Each
//! launcher returns `None` where its operands do not fit operand textures; the portable
//! kernel runs then.

use super::{Geom, grid, split_k};
use crate::error::Result;
use crate::gpu::CpuSubgroup;
use crate::kernel::{Kernel, groups, kernels};
use crate::tensor::Tensor;

kernels!("conv_subgroup.wgsl";
    CONV_FWD_SG8 = "conv_fwd_sg" [T, T, R, W],
    CONV_FWD_SG16 = "conv_fwd_sg" [T, T, R, W] (NB = 2),
    CONV_FWD_SG24 = "conv_fwd_sg" [T, T, R, W] (NB = 3),
    CONV_FWD_SG32 = "conv_fwd_sg" [T, T, R, W] (NB = 4),
    CONV_FWD_SG8_ROW = "conv_fwd_sg" [T, T, R, W] (ROW = 1),
    CONV_FWD_SG16_ROW = "conv_fwd_sg" [T, T, R, W] (NB = 2, ROW = 1),
    CONV_FWD_SG24_ROW = "conv_fwd_sg" [T, T, R, W] (NB = 3, ROW = 1),
    CONV_FWD_SG32_ROW = "conv_fwd_sg" [T, T, R, W] (NB = 4, ROW = 1),
    CONV_DGRAD_SG8 = "conv_dgrad_sg" [T, T, R, W],
    CONV_DGRAD_SG16 = "conv_dgrad_sg" [T, T, R, W] (NB = 2),
    CONV_DGRAD_SG24 = "conv_dgrad_sg" [T, T, R, W] (NB = 3),
    CONV_DGRAD_SG32 = "conv_dgrad_sg" [T, T, R, W] (NB = 4),
    CONV_DGRAD_SG8_ROW = "conv_dgrad_sg" [T, T, R, W] (ROW = 1),
    CONV_DGRAD_SG16_ROW = "conv_dgrad_sg" [T, T, R, W] (NB = 2, ROW = 1),
    CONV_DGRAD_SG24_ROW = "conv_dgrad_sg" [T, T, R, W] (NB = 3, ROW = 1),
    CONV_DGRAD_SG32_ROW = "conv_dgrad_sg" [T, T, R, W] (NB = 4, ROW = 1),
    CONV_WGRAD_SG8 = "conv_wgrad_sg" [T, T, W],
    CONV_WGRAD_SG16 = "conv_wgrad_sg" [T, T, W] (NB = 2),
    CONV_WGRAD_SG24 = "conv_wgrad_sg" [T, T, W] (NB = 3),
    CONV_WGRAD_SG32 = "conv_wgrad_sg" [T, T, W] (NB = 4),
    CONV_WGRAD_SG8_NARROW = "conv_wgrad_sg" [T, T, W] (WGW = 8),
    CONV_WGRAD_SG16_NARROW = "conv_wgrad_sg" [T, T, W] (NB = 2, WGW = 8),
    CONV_WGRAD_SG24_NARROW = "conv_wgrad_sg" [T, T, W] (NB = 3, WGW = 8),
    CONV_WGRAD_SG32_NARROW = "conv_wgrad_sg" [T, T, W] (NB = 4, WGW = 8),
    CONV_WGRAD_SG8_ROW = "conv_wgrad_sg_row" [T, T, W],
    CONV_WGRAD_SG16_ROW = "conv_wgrad_sg_row" [T, T, W] (NB = 2),
    CONV_WGRAD_SG24_ROW = "conv_wgrad_sg_row" [T, T, W] (NB = 3),
    CONV_WGRAD_SG32_ROW = "conv_wgrad_sg_row" [T, T, W] (NB = 4),
    CONV_PACK_W = "conv_pack_w" [R, W],
    CONV_PACK_W_DGRAD = "conv_pack_w" [R, W] (MODE = 1),
    CONV_PACK_GY = "conv_pack_w" [R, W] (MODE = 2),
    CONV_PACK_GY4 = "conv_pack_gy4" [R, W],
);

/// Output columns per workgroup of the subgroup kernels (the weight gradient's kernel has
/// fewer invocations).
const SG_COLS: usize = 256;
const SG_WGRAD_COLS: usize = 64; // 16 invocations x 4
/// Columns per workgroup of its narrow twin, for weights of at most that many columns.
const SG_WGRAD_NARROW_COLS: usize = 32; // 8 invocations x 4
/// (ci, ki) pairs per workgroup of the row-window weight gradient (one per invocation).
const SG_WGRAD_PAIRS: usize = 16;

/// Rows per workgroup (1 to 4 blocks of `lanes` rows) for a GEMM with `m` rows, and
/// the matching kernel: as few workgroups along m as 4 blocks allow (each loads its
/// columns once), then the fewest blocks that still cover m with that many. 20 channels
/// take 24 rows on 8 lanes (3 blocks) and on 4 lanes (2 workgroups of 3), not 32.
fn rows(m: usize, lanes: u32, kernels: [&'static Kernel; 4]) -> (usize, &'static Kernel) {
    let lanes = lanes as usize;
    let groups = m.div_ceil(4 * lanes).max(1);
    let blocks = m.div_ceil(groups * lanes).clamp(1, 4);
    (blocks * lanes, kernels[blocks - 1])
}

/// Which operand `conv_pack_w` packs, and for which subgroup kernel (its `MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pack {
    /// The weights for `conv_fwd_sg`: rows are output channels.
    Weights,
    /// The weights for `conv_dgrad_sg`: rows are input channels.
    WeightsForInputGrad,
    /// The output gradient for the `conv_wgrad_sg` kernels: rows are output channels.
    OutputGrad,
}

/// The row operand of a subgroup kernel laid out step-major (`conv_pack_w`): at each step
/// (a weight tap, or a pixel of gy) the rows of a workgroup's tile are neighbours, so one
/// lane fetches four of them in one texel where it fetched one.
struct Packed {
    t: Tensor,
    /// Rows per step, padded with zeros to whole tiles.
    rows: usize,
    what: Pack,
}

impl Packed {
    /// Room for `what` of `g` with rows padded to a multiple of `tile` (the kernel's
    /// LANES NB).
    fn new(src: &Tensor, g: &Geom, what: Pack, tile: usize) -> Result<Self> {
        let (blocks, rows, steps) = Self::dims(g, what);
        let rows = rows.div_ceil(tile) * tile;
        let t = Tensor::uninit(src.gpu(), "conv2d", &[blocks * steps * rows])?;
        Ok(Self { t, rows, what })
    }

    /// The operand as (blocks, rows, steps per row), as `conv_pack_w` reads it.
    fn dims(g: &Geom, what: Pack) -> (usize, usize, usize) {
        let taps = g.kh * g.kw;
        match what {
            Pack::Weights => (g.groups, g.cout / g.groups, g.cin / g.groups * taps),
            Pack::WeightsForInputGrad => (g.cout, g.cin / g.groups, taps),
            Pack::OutputGrad => (g.n * g.groups, g.cout / g.groups, g.ho * g.wo),
        }
    }

    /// Records the packing of `src`.
    fn pack(&self, src: &Tensor, g: &Geom) {
        // gy in 4x4 blocks where its pixels come in fours (the rows always do).
        let (kernel, invocations) = match self.what {
            Pack::Weights => (&CONV_PACK_W, self.t.numel()),
            Pack::WeightsForInputGrad => (&CONV_PACK_W_DGRAD, self.t.numel()),
            Pack::OutputGrad if (g.ho * g.wo).is_multiple_of(4) => {
                (&CONV_PACK_GY4, self.t.numel() / 16)
            }
            Pack::OutputGrad => (&CONV_PACK_GY, self.t.numel()),
        };
        src.gpu().dispatch(
            kernel,
            &g.params(false, 1, 0, self.rows).0,
            &[src.buf(), self.t.buf()],
            groups(invocations, 256),
        );
    }
}

/// y = conv(x, w) + b for geometry `g`, or `None` where the operands do not fit.
pub(super) fn fwd(
    s: CpuSubgroup,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    g: &Geom,
) -> Result<Option<Tensor>> {
    let m = g.cout / g.groups;
    let n = g.n * g.ho * g.wo;
    // Neighbouring columns in one output row share inputs (see ROW in the shader).
    let row = g.stride.1 == 1 && g.dilation.1 == 1 && g.wo.is_multiple_of(4);
    let kernels = if row {
        [
            &CONV_FWD_SG8_ROW,
            &CONV_FWD_SG16_ROW,
            &CONV_FWD_SG24_ROW,
            &CONV_FWD_SG32_ROW,
        ]
    } else {
        [
            &CONV_FWD_SG8,
            &CONV_FWD_SG16,
            &CONV_FWD_SG24,
            &CONV_FWD_SG32,
        ]
    };
    let (rows, kernel) = rows(m, s.lanes, kernels);
    let wp = Packed::new(w, g, Pack::Weights, rows)?;
    if !x.gpu().texels_fit(&[x, &wp.t]) {
        return Ok(None);
    }
    let y = Tensor::uninit(x.gpu(), "conv2d", &g.y_shape())?;
    // Without a bias the kernel never reads the binding; any read-only buffer fills it.
    let bias = b.unwrap_or(w);
    wp.pack(w, g);
    let dims = grid("conv2d", m, rows, n, SG_COLS, g.groups, g)?;
    x.gpu().dispatch_texels(
        kernel,
        &g.params(b.is_some(), 1, 0, wp.rows).0,
        &[x, &wp.t],
        &[bias.buf(), y.buf()],
        dims,
    )?;
    Ok(Some(y))
}

/// dx = conv2d input gradient of `gy` by the gather (see `portable::dgrad`), or `None`
/// where the operands do not fit.
pub(super) fn dgrad(
    s: CpuSubgroup,
    gy: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    g: &Geom,
) -> Result<Option<Tensor>> {
    const OP: &str = "conv2d backward (input)";
    let m = g.cin / g.groups;
    let n = g.n * g.h * g.w;
    // Neighbouring columns in one input row share gy values (see ROW in the shader).
    let row = g.stride == (1, 1) && g.dilation.1 == 1 && g.w.is_multiple_of(4);
    let kernels = if row {
        [
            &CONV_DGRAD_SG8_ROW,
            &CONV_DGRAD_SG16_ROW,
            &CONV_DGRAD_SG24_ROW,
            &CONV_DGRAD_SG32_ROW,
        ]
    } else {
        [
            &CONV_DGRAD_SG8,
            &CONV_DGRAD_SG16,
            &CONV_DGRAD_SG24,
            &CONV_DGRAD_SG32,
        ]
    };
    let (rows, kernel) = rows(m, s.lanes, kernels);
    let wp = Packed::new(w, g, Pack::WeightsForInputGrad, rows)?;
    if !gy.gpu().texels_fit(&[gy, &wp.t]) {
        return Ok(None);
    }
    let dx = Tensor::uninit(gy.gpu(), OP, &g.x_shape())?;
    let bias = b.unwrap_or(w);
    wp.pack(w, g);
    // ROW: one input row of every image per z slice (see the shader).
    let (cols, z) = if row {
        (g.n * g.w, g.groups * g.h)
    } else {
        (n, g.groups)
    };
    let dims = grid(OP, m, rows, cols, SG_COLS, z, g)?;
    gy.gpu().dispatch_texels(
        kernel,
        &g.params(b.is_some(), 1, 0, wp.rows).0,
        &[gy, &wp.t],
        &[bias.buf(), dx.buf()],
        dims,
    )?;
    Ok(Some(dx))
}

/// dw = conv2d weight gradient, or `None` where the operands do not fit. gy is read
/// packed pixel-major (see `Packed`).
pub(super) fn wgrad(s: CpuSubgroup, x: &Tensor, gy: &Tensor, g: &Geom) -> Result<Option<Tensor>> {
    const OP: &str = "conv2d backward (weight)";
    let m = g.cout / g.groups;
    let ncols = g.cin / g.groups * g.kh * g.kw;
    // Kernels at most 4 wide with stride and dilation 1 along w slide a window along rows;
    // their grid columns are (ci, ki) pairs, 16 per workgroup.
    let row = g.kw <= 4 && g.stride.1 == 1 && g.dilation.1 == 1;
    // (kernels by row blocks, grid columns to cover, columns per workgroup)
    let (kernels, gcols, bn) = if row {
        (
            [
                &CONV_WGRAD_SG8_ROW,
                &CONV_WGRAD_SG16_ROW,
                &CONV_WGRAD_SG24_ROW,
                &CONV_WGRAD_SG32_ROW,
            ],
            g.cin / g.groups * g.kh,
            SG_WGRAD_PAIRS,
        )
    } else if ncols <= SG_WGRAD_NARROW_COLS {
        (
            [
                &CONV_WGRAD_SG8_NARROW,
                &CONV_WGRAD_SG16_NARROW,
                &CONV_WGRAD_SG24_NARROW,
                &CONV_WGRAD_SG32_NARROW,
            ],
            ncols,
            SG_WGRAD_NARROW_COLS,
        )
    } else {
        (
            [
                &CONV_WGRAD_SG8,
                &CONV_WGRAD_SG16,
                &CONV_WGRAD_SG24,
                &CONV_WGRAD_SG32,
            ],
            ncols,
            SG_WGRAD_COLS,
        )
    };
    let (rows, kernel) = rows(m, s.lanes, kernels);
    let gp = Packed::new(gy, g, Pack::OutputGrad, rows)?;
    if !x.gpu().texels_fit(&[x, &gp.t]) {
        return Ok(None);
    }
    let tiles = m.div_ceil(rows) * gcols.div_ceil(bn) * g.groups;
    let dw = split_k(x, g, tiles, |out, splits, kchunk| {
        gp.pack(gy, g);
        let dims = grid(OP, m, rows, gcols, bn, g.groups * splits, g)?;
        // `total` carries the packed rows; the kernels size partial slices themselves.
        let params = g.params(false, splits, kchunk, gp.rows);
        x.gpu()
            .dispatch_texels(kernel, &params.0, &[x, &gp.t], &[out], dims)
    })?;
    Ok(Some(dw))
}

#[cfg(test)]
mod tests {
    use super::super::{Geom, cpu};
    use super::*;
    use crate::Gpu;

    #[test]
    fn packed_operands_match_the_cpu_layout() {
        let gpu = match pollster::block_on(Gpu::new()) {
            Ok(g) => g,
            Err(e) => panic!("tests need a GPU adapter (lavapipe in CI): {e}"),
        };
        // 2 groups of 6 output and 3 input channels, 3x2 taps, 3x4 outputs: a tile of 8 pads
        // every mode's rows (6, 3, 6).
        let g = Geom {
            n: 2,
            cin: 6,
            h: 5,
            w: 5,
            cout: 12,
            ho: 3,
            wo: 4,
            kh: 3,
            kw: 2,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 2,
        };
        // gy of 3x3 pixels takes the scalar kernel, 3x4 the 4x4 blocks.
        let g9 = Geom { wo: 3, w: 4, ..g };
        for (what, g, shape) in [
            (Pack::Weights, g, g.w_shape()),
            (Pack::WeightsForInputGrad, g, g.w_shape()),
            (Pack::OutputGrad, g, g.y_shape()),
            (Pack::OutputGrad, g9, g9.y_shape()),
        ] {
            let numel = shape.iter().product::<usize>();
            let src: Vec<f32> = (0..numel).map(|i| i as f32 + 1.0).collect();
            let st = Tensor::from_slice(&gpu, &src, &shape).expect("upload");
            let packed = Packed::new(&st, &g, what, 8).expect("alloc");
            assert_eq!(packed.rows, 8);
            packed.pack(&st, &g);
            let (blocks, rows, steps) = Packed::dims(&g, what);
            assert_eq!(blocks * rows * steps, numel, "{what:?}");
            let want = cpu::pack_weights(&src, blocks, rows, steps, packed.rows);
            assert_eq!(
                packed.t.to_vec_blocking().expect("readback"),
                want,
                "{what:?}"
            );
        }
    }

    #[test]
    fn subgroup_row_tiles_take_few_workgroups_then_few_rows() {
        let k = [
            &CONV_FWD_SG8,
            &CONV_FWD_SG16,
            &CONV_FWD_SG24,
            &CONV_FWD_SG32,
        ];
        let rows = |m, lanes| rows(m, lanes, k).0;
        // (channels, lanes) -> rows per workgroup
        for (m, lanes, want) in [
            (1, 8, 8),
            (10, 8, 16),
            (16, 8, 16),
            (20, 8, 24),
            (64, 8, 32),
            (10, 4, 12),
            (20, 4, 12),
            (32, 4, 16),
        ] {
            assert_eq!(rows(m, lanes), want, "{m} channels on {lanes} lanes");
        }
        assert_eq!(super::rows(20, 8, k).1.name, "CONV_FWD_SG24");
    }
}
