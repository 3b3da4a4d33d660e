//! 2-D convolution and transposed convolution, NCHW, with PyTorch's semantics (stride,
//! padding, dilation and groups as (h, w) pairs; non-square kernels).
//!
//! Three tiled implicit-GEMM kernels do all the work (see `shaders/conv.wgsl`): conv2d's
//! forward, its input gradient (a gather, no atomics) and its weight gradient (split over K
//! when the output is small). Where the output has a third of the input's pixels or fewer
//! (strides), the input gradient is a matmul of W^T with gy instead, folded back onto the
//! input by `col2im`. `conv_transpose2d` is composed from the same three: its forward
//! is conv2d's input gradient, its input gradient is conv2d's forward and its weight gradient
//! is conv2d's weight gradient with input and output gradient swapped.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape, shape_err};
use crate::kernel::{Kernel, Params, groups, kernels};
use crate::tensor::Tensor;
use crate::trace::{Op, with_bias};

kernels!("conv.wgsl";
    CONV_FWD_16 = "conv_fwd" [R, R, R, W] (BM = 16),
    CONV_FWD_32 = "conv_fwd" [R, R, R, W] (BM = 32),
    CONV_FWD = "conv_fwd" [R, R, R, W],
    CONV_DGRAD_16 = "conv_dgrad" [R, R, R, W] (BM = 16),
    CONV_DGRAD_32 = "conv_dgrad" [R, R, R, W] (BM = 32),
    CONV_DGRAD = "conv_dgrad" [R, R, R, W],
    CONV_WGRAD_16 = "conv_wgrad" [R, R, W] (BM = 16),
    CONV_WGRAD_32 = "conv_wgrad" [R, R, W] (BM = 32),
    CONV_WGRAD = "conv_wgrad" [R, R, W],
    SUM_SPLITS = "sum_splits" [R, W],
    COL2IM = "col2im" [R, R, W],
    CONV_BIAS_GRAD = "conv_bias_grad" [R, W],
    CONV_BIAS_GRAD4 = "conv_bias_grad4" [T, W],
    CONV2D_NAIVE = "conv2d_naive" [R, R, R, W],
    CONV_PACK_W = "conv_pack_w" [R, W],
    CONV_PACK_W_DGRAD = "conv_pack_w" [R, W] (MODE = 1),
    CONV_PACK_GY = "conv_pack_w" [R, W] (MODE = 2),
    CONV_PACK_GY4 = "conv_pack_gy4" [R, W],
);

mod sg {
    use crate::kernel::kernels;
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
    );

    /// Rows per workgroup (1 to 4 blocks of `lanes` rows) for a GEMM with `m` rows, and
    /// the matching kernel: as few workgroups along m as 4 blocks allow (each loads its
    /// columns once), then the fewest blocks that still cover m with that many. 20 channels
    /// take 24 rows on 8 lanes (3 blocks) and on 4 lanes (2 workgroups of 3), not 32.
    pub(super) fn rows(
        m: usize,
        lanes: usize,
        kernels: [&'static Kernel; 4],
    ) -> (usize, &'static Kernel) {
        let groups = m.div_ceil(4 * lanes).max(1);
        let blocks = m.div_ceil(groups * lanes).clamp(1, 4);
        (blocks * lanes, kernels[blocks - 1])
    }
    use crate::kernel::Kernel;
}

/// Output columns per workgroup of the subgroup kernels (the weight gradient's kernel has
/// fewer invocations).
const SG_COLS: usize = 256;
const SG_WGRAD_COLS: usize = 64; // 16 invocations x 4
/// Columns per workgroup of its narrow twin, for weights of at most that many columns.
const SG_WGRAD_NARROW_COLS: usize = 32; // 8 invocations x 4
/// (ci, ki) pairs per workgroup of the row-window weight gradient (one per invocation).
const SG_WGRAD_PAIRS: usize = 16;

/// Output tile columns of the GEMM kernels and their K step.
const TILE_N: usize = 64;
const TILE_K: usize = 16;

/// Tile rows for a GEMM with `m` rows (16, 32 or 64: layers with few channels would
/// otherwise spend most of the work on padding rows) and the matching kernel of the three.
fn tile_rows(m: usize, kernels: [&'static Kernel; 3]) -> (usize, &'static Kernel) {
    match m {
        0..=16 => (16, kernels[0]),
        17..=32 => (32, kernels[1]),
        _ => (64, kernels[2]),
    }
}
/// Largest workgroup count per grid dimension that WebGPU guarantees.
const MAX_GRID: usize = 65_535;

/// Options of [`conv2d`], PyTorch's `Conv2d` arguments as (height, width) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOpts {
    /// Step between output pixels, in input pixels.
    pub stride: (usize, usize),
    /// Zeros added on both sides of the input.
    pub padding: (usize, usize),
    /// Spacing between kernel taps (1 = dense kernel).
    pub dilation: (usize, usize),
    /// Number of channel groups; input and output channels must both divide by it.
    pub groups: usize,
}

impl Default for Conv2dOpts {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

/// Options of [`conv_transpose2d`], PyTorch's `ConvTranspose2d` arguments as (h, w) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dOpts {
    /// Upsampling factor: step between the output positions of neighbouring input pixels.
    pub stride: (usize, usize),
    /// Removed from both sides of the output (`dilation * (k - 1) - padding` zeros on the
    /// equivalent direct convolution).
    pub padding: (usize, usize),
    /// Extra rows/columns added at the bottom/right of the output; smaller than the stride
    /// or the dilation.
    pub output_padding: (usize, usize),
    /// Spacing between kernel taps.
    pub dilation: (usize, usize),
    /// Number of channel groups; input and output channels must both divide by it.
    pub groups: usize,
}

impl Default for ConvTranspose2dOpts {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            output_padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

/// The geometry of one direct convolution: input [n, cin, h, w], weight
/// [cout, cin/groups, kh, kw], output [n, cout, ho, wo]. A transposed convolution is described
/// by the direct convolution whose input gradient it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
}

impl Geom {
    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }
    fn y_shape(&self) -> [usize; 4] {
        [self.n, self.cout, self.ho, self.wo]
    }
    fn w_shape(&self) -> [usize; 4] {
        [self.cout, self.cin / self.groups, self.kh, self.kw]
    }

    /// Uniform params in the order of `Params` in conv.wgsl.
    fn params(&self, has_bias: bool, splits: usize, kchunk: usize, total: usize) -> Params {
        Params::new()
            .u(self.n)
            .u(self.cin)
            .u(self.h)
            .u(self.w)
            .u(self.cout)
            .u(self.ho)
            .u(self.wo)
            .u(self.groups)
            .u(self.kh)
            .u(self.kw)
            .u(self.stride.0)
            .u(self.stride.1)
            .u(self.padding.0)
            .u(self.padding.1)
            .u(self.dilation.0)
            .u(self.dilation.1)
            .u(usize::from(has_bias))
            .u(splits)
            .u(kchunk)
            .u(total)
    }
}

/// Grid of the portable kernels (`bm` rows x TILE_N columns per workgroup).
fn grid(op: &'static str, m: usize, bm: usize, n: usize, z: usize, g: &Geom) -> Result<[u32; 3]> {
    sg_grid(op, m, bm, n, TILE_N, z, g)
}

/// Grid with `rows` x `cols` outputs per workgroup, checked against WebGPU's
/// per-dimension limit.
fn sg_grid(
    op: &'static str,
    m: usize,
    rows: usize,
    n: usize,
    cols: usize,
    z: usize,
    g: &Geom,
) -> Result<[u32; 3]> {
    let (gx, gy) = (n.div_ceil(cols), m.div_ceil(rows));
    ensure_shape!(
        gx <= MAX_GRID && gy <= MAX_GRID && z <= MAX_GRID,
        op,
        "input {:?} with weight {:?} needs a grid of {gx} x {gy} x {z} workgroups, more than \
         {MAX_GRID} per dimension",
        g.x_shape(),
        g.w_shape()
    );
    Ok([gx as u32, gy as u32, z as u32])
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
/// lane fetches four of them in one texel where it fetched one (lavapipe: a gather each,
/// ~25% of the forward kernel's time).
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

/// y = conv(x, w) + b for geometry `g`.
fn fwd_raw(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    let y = Tensor::uninit(x.gpu(), "conv2d", &g.y_shape())?;
    let m = g.cout / g.groups;
    let n = g.n * g.ho * g.wo;
    // Without a bias the kernel never reads the binding; any read-only buffer fills it.
    let bias = b.unwrap_or(w);
    if x.gpu().uses_subgroups() {
        // Neighbouring columns in one output row share inputs (see ROW in the shader).
        let row = g.stride.1 == 1 && g.dilation.1 == 1 && g.wo.is_multiple_of(4);
        let kernels = if row {
            [
                &sg::CONV_FWD_SG8_ROW,
                &sg::CONV_FWD_SG16_ROW,
                &sg::CONV_FWD_SG24_ROW,
                &sg::CONV_FWD_SG32_ROW,
            ]
        } else {
            [
                &sg::CONV_FWD_SG8,
                &sg::CONV_FWD_SG16,
                &sg::CONV_FWD_SG24,
                &sg::CONV_FWD_SG32,
            ]
        };
        let (rows, kernel) = sg::rows(m, x.gpu().subgroup_lanes(), kernels);
        let wp = Packed::new(w, g, Pack::Weights, rows)?;
        if x.gpu().texels_fit(&[x, &wp.t]) {
            wp.pack(w, g);
            let dims = sg_grid("conv2d", m, rows, n, SG_COLS, g.groups, g)?;
            x.gpu().dispatch_texels(
                kernel,
                &g.params(b.is_some(), 1, 0, wp.rows).0,
                &[x, &wp.t],
                &[bias.buf(), y.buf()],
                dims,
            )?;
            return Ok(y);
        }
    }
    let (bm, kernel) = tile_rows(m, [&CONV_FWD_16, &CONV_FWD_32, &CONV_FWD]);
    let dims = grid("conv2d", m, bm, n, g.groups, g)?;
    x.gpu().dispatch(
        kernel,
        &g.params(b.is_some(), 1, 0, 0).0,
        &[x.buf(), w.buf(), bias.buf(), y.buf()],
        dims,
    );
    Ok(y)
}

/// Largest column matrix of the GEMM route of the input gradient (bytes).
const COLS_MAX_BYTES: u64 = 128 << 20;

/// Whether conv2d's input gradient for `g` goes through a GEMM and `col2im` rather than the
/// direct gather. The gather visits every tap of every input pixel, the GEMM every tap of
/// every output pixel, so where the output has far fewer pixels than the input (4x with
/// stride 2) most of the gather's taps are empty. The GEMM stores its whole column matrix
/// and `col2im` reads it back, which costs as much as it saves below a 3x ratio (measured
/// on lavapipe and SwiftShader with MnistCnn's conv2: 12x12 from 8x8, 2.25x, no gain).
/// Single-group layers whose column matrix fits one binding.
/// `max_binding` is the device's largest binding in bytes.
fn dgrad_by_gemm(g: &Geom, max_binding: u64) -> bool {
    let cols = (g.n * g.cin * g.kh * g.kw * g.ho * g.wo) as u64 * 4;
    g.groups == 1 && g.h * g.w >= 3 * g.ho * g.wo && cols <= max_binding.min(COLS_MAX_BYTES)
}

/// The input gradient as a GEMM and a gather: cols[b] = W^T gy[b] ([cin kh kw, ho wo] per
/// image, every entry a useful product), then `col2im` sums each input pixel's taps.
fn dgrad_gemm(gy: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    const OP: &str = "conv2d backward (input)";
    let khw = g.kh * g.kw;
    let w2 = w.detach().reshape(&[g.cout, g.cin * khw])?;
    let gy3 = gy.detach().reshape(&[g.n, g.cout, g.ho * g.wo])?;
    let cols = super::matmul::matmul_shared_a(&w2, &gy3, true)?;
    let dx = Tensor::uninit(gy.gpu(), OP, &g.x_shape())?;
    let bias = b.unwrap_or(w);
    gy.gpu().dispatch(
        &COL2IM,
        &g.params(b.is_some(), 1, 0, 0).0,
        &[cols.buf(), bias.buf(), dx.buf()],
        groups(dx.numel(), 256),
    );
    Ok(dx)
}

/// dx = conv2d input gradient of `gy` (shape y) for geometry `g`, plus an optional bias per
/// input channel (conv_transpose2d's forward).
fn dgrad_raw(gy: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    if dgrad_by_gemm(g, gy.gpu().max_binding_bytes()) {
        return dgrad_gemm(gy, w, b, g);
    }
    let dx = Tensor::uninit(gy.gpu(), "conv2d backward (input)", &g.x_shape())?;
    let m = g.cin / g.groups;
    let n = g.n * g.h * g.w;
    let bias = b.unwrap_or(w);
    if gy.gpu().uses_subgroups() {
        // Neighbouring columns in one input row share gy values (see ROW in the shader).
        let row = g.stride == (1, 1) && g.dilation.1 == 1 && g.w.is_multiple_of(4);
        let kernels = if row {
            [
                &sg::CONV_DGRAD_SG8_ROW,
                &sg::CONV_DGRAD_SG16_ROW,
                &sg::CONV_DGRAD_SG24_ROW,
                &sg::CONV_DGRAD_SG32_ROW,
            ]
        } else {
            [
                &sg::CONV_DGRAD_SG8,
                &sg::CONV_DGRAD_SG16,
                &sg::CONV_DGRAD_SG24,
                &sg::CONV_DGRAD_SG32,
            ]
        };
        let (rows, kernel) = sg::rows(m, gy.gpu().subgroup_lanes(), kernels);
        let wp = Packed::new(w, g, Pack::WeightsForInputGrad, rows)?;
        if gy.gpu().texels_fit(&[gy, &wp.t]) {
            wp.pack(w, g);
            // ROW: one input row of every image per z slice (see the shader).
            let (cols, z) = if row {
                (g.n * g.w, g.groups * g.h)
            } else {
                (n, g.groups)
            };
            let dims = sg_grid("conv2d backward (input)", m, rows, cols, SG_COLS, z, g)?;
            gy.gpu().dispatch_texels(
                kernel,
                &g.params(b.is_some(), 1, 0, wp.rows).0,
                &[gy, &wp.t],
                &[bias.buf(), dx.buf()],
                dims,
            )?;
            return Ok(dx);
        }
    }
    let (bm, kernel) = tile_rows(m, [&CONV_DGRAD_16, &CONV_DGRAD_32, &CONV_DGRAD]);
    let dims = grid("conv2d backward (input)", m, bm, n, g.groups, g)?;
    gy.gpu().dispatch(
        kernel,
        &g.params(b.is_some(), 1, 0, 0).0,
        &[gy.buf(), w.buf(), bias.buf(), dx.buf()],
        dims,
    );
    Ok(dx)
}

/// dw = conv2d weight gradient for input `x` (shape x) and output gradient `gy` (shape y).
fn wgrad_raw(x: &Tensor, gy: &Tensor, g: &Geom) -> Result<Tensor> {
    const OP: &str = "conv2d backward (weight)";
    let dw = Tensor::uninit(x.gpu(), OP, &g.w_shape())?;
    let m = g.cout / g.groups;
    let ncols = g.cin / g.groups * g.kh * g.kw;
    let k = g.n * g.ho * g.wo;
    let total = dw.numel();
    // Small outputs with long sums (early layers: few channels, many pixels) leave most of
    // the GPU idle; split K into slices summed by a second kernel. Aim for ~128 workgroups
    // with at least 256 terms per slice.
    // The subgroup kernels read gy packed pixel-major (see `Packed`); where x or the packed
    // gy does not fit an operand texture, the portable kernels run.
    let subgroup = if x.gpu().uses_subgroups() {
        // Kernels at most 4 wide with stride and dilation 1 along w slide a window along
        // rows; their grid columns are (ci, ki) pairs, 16 per workgroup.
        let row = g.kw <= 4 && g.stride.1 == 1 && g.dilation.1 == 1;
        // (kernels by row blocks, grid columns to cover, columns per workgroup)
        let (kernels, gcols, bn) = if row {
            (
                [
                    &sg::CONV_WGRAD_SG8_ROW,
                    &sg::CONV_WGRAD_SG16_ROW,
                    &sg::CONV_WGRAD_SG24_ROW,
                    &sg::CONV_WGRAD_SG32_ROW,
                ],
                g.cin / g.groups * g.kh,
                SG_WGRAD_PAIRS,
            )
        } else if ncols <= SG_WGRAD_NARROW_COLS {
            (
                [
                    &sg::CONV_WGRAD_SG8_NARROW,
                    &sg::CONV_WGRAD_SG16_NARROW,
                    &sg::CONV_WGRAD_SG24_NARROW,
                    &sg::CONV_WGRAD_SG32_NARROW,
                ],
                ncols,
                SG_WGRAD_NARROW_COLS,
            )
        } else {
            (
                [
                    &sg::CONV_WGRAD_SG8,
                    &sg::CONV_WGRAD_SG16,
                    &sg::CONV_WGRAD_SG24,
                    &sg::CONV_WGRAD_SG32,
                ],
                ncols,
                SG_WGRAD_COLS,
            )
        };
        let (rows, kernel) = sg::rows(m, x.gpu().subgroup_lanes(), kernels);
        let gp = Packed::new(gy, g, Pack::OutputGrad, rows)?;
        x.gpu()
            .texels_fit(&[x, &gp.t])
            .then_some((rows, gcols, bn, kernel, gp))
    } else {
        None
    };
    // (tile rows, grid columns to cover, columns per workgroup, kernel)
    let (bm, gcols, bn, kernel) = match &subgroup {
        Some((rows, gcols, bn, kernel, _)) => (*rows, *gcols, *bn, *kernel),
        None => {
            let (bm, kernel) = tile_rows(m, [&CONV_WGRAD_16, &CONV_WGRAD_32, &CONV_WGRAD]);
            (bm, ncols, TILE_N, kernel)
        }
    };
    let tiles = m.div_ceil(bm) * gcols.div_ceil(bn) * g.groups;
    let max_by_k = k.div_ceil(256).max(1);
    let splits = 128usize.div_ceil(tiles).min(max_by_k).clamp(1, 64);
    let kchunk = k.div_ceil(splits).div_ceil(TILE_K) * TILE_K;
    let splits = k.div_ceil(kchunk);
    let part = if splits == 1 {
        None
    } else {
        Some(Tensor::uninit(x.gpu(), OP, &[splits, total])?)
    };
    let out = part.as_ref().unwrap_or(&dw).buf();
    if let Some((_, _, _, _, gp)) = &subgroup {
        gp.pack(gy, g);
        let dims = sg_grid(OP, m, bm, gcols, bn, g.groups * splits, g)?;
        // `total` carries the packed rows; the kernels size partial slices themselves.
        let params = g.params(false, splits, kchunk, gp.rows);
        x.gpu()
            .dispatch_texels(kernel, &params.0, &[x, &gp.t], &[out], dims)?;
    } else {
        let dims = grid(OP, m, bm, ncols, g.groups * splits, g)?;
        let params = g.params(false, splits, kchunk, total);
        x.gpu()
            .dispatch(kernel, &params.0, &[x.buf(), gy.buf(), out], dims);
    }
    if let Some(part) = part {
        x.gpu().dispatch(
            &SUM_SPLITS,
            &g.params(false, splits, kchunk, total).0,
            &[part.buf(), dw.buf()],
            groups(total, 256),
        );
    }
    Ok(dw)
}

/// db[c] = sum of gy over batch and pixels; `gy` has shape y of `g`.
fn bias_grad_raw(gy: &Tensor, g: &Geom) -> Result<Tensor> {
    let db = Tensor::uninit(gy.gpu(), "conv2d backward (bias)", &[g.cout])?;
    let p = g.params(false, 1, 0, 0);
    let grid = [g.cout as u32, 1, 1];
    if (g.ho * g.wo).is_multiple_of(4) && gy.gpu().texels_fit(&[gy]) {
        gy.gpu()
            .dispatch_texels(&CONV_BIAS_GRAD4, &p.0, &[gy], &[db.buf()], grid)?;
    } else {
        gy.gpu()
            .dispatch(&CONV_BIAS_GRAD, &p.0, &[gy.buf(), db.buf()], grid);
    }
    Ok(db)
}

fn shape4(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 4]> {
    match *t.shape() {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(shape_err(
            op,
            format!("{what} must be 4-D, got shape {:?}", t.shape()),
        )),
    }
}

fn check_common(
    op: &'static str,
    xs: &[usize; 4],
    ws: &[usize; 4],
    stride: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Result<()> {
    ensure_shape!(
        groups >= 1 && stride.0 >= 1 && stride.1 >= 1 && dilation.0 >= 1 && dilation.1 >= 1,
        op,
        "groups {groups}, stride {stride:?} and dilation {dilation:?} must be at least 1 \
         (input {xs:?}, weight {ws:?})"
    );
    ensure_shape!(
        ws[2] >= 1 && ws[3] >= 1,
        op,
        "weight {ws:?} has an empty kernel (input {xs:?})"
    );
    Ok(())
}

fn check_bias(
    op: &'static str,
    b: Option<&Tensor>,
    cout: usize,
    xs: &[usize; 4],
    ws: &[usize; 4],
) -> Result<()> {
    if let Some(b) = b {
        ensure_shape!(
            b.shape() == [cout],
            op,
            "bias shape {:?} must be [{cout}] (input {xs:?}, weight {ws:?})",
            b.shape()
        );
    }
    Ok(())
}

/// Validates conv2d's arguments and returns its geometry.
fn conv2d_geom(x: &Tensor, w: &Tensor, b: Option<&Tensor>, o: &Conv2dOpts) -> Result<Geom> {
    const OP: &str = "conv2d";
    let xs = shape4(OP, "input", x)?;
    let ws = shape4(OP, "weight", w)?;
    check_common(OP, &xs, &ws, o.stride, o.dilation, o.groups)?;
    let [n, cin, h, wd] = xs;
    let [cout, cin_g, kh, kw] = ws;
    let gr = o.groups;
    ensure_shape!(
        cin % gr == 0 && cout % gr == 0,
        OP,
        "input channels {cin} and output channels {cout} must divide by groups {gr} \
         (input {xs:?}, weight {ws:?})"
    );
    ensure_shape!(
        cin_g * gr == cin,
        OP,
        "weight {ws:?} must have {} input channels per group for input {xs:?} with groups {gr}",
        cin / gr
    );
    check_bias(OP, b, cout, &xs, &ws)?;
    let (ekh, ekw) = (o.dilation.0 * (kh - 1) + 1, o.dilation.1 * (kw - 1) + 1);
    let (hp, wp) = (h + 2 * o.padding.0, wd + 2 * o.padding.1);
    ensure_shape!(
        ekh <= hp && ekw <= wp,
        OP,
        "dilated kernel {ekh}x{ekw} of weight {ws:?} is larger than the padded input {hp}x{wp} \
         (input {xs:?}, padding {:?}, dilation {:?})",
        o.padding,
        o.dilation
    );
    Ok(Geom {
        n,
        cin,
        h,
        w: wd,
        cout,
        ho: (hp - ekh) / o.stride.0 + 1,
        wo: (wp - ekw) / o.stride.1 + 1,
        kh,
        kw,
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
        groups: gr,
    })
}

/// Validates conv_transpose2d's arguments and returns the geometry of the direct convolution
/// whose input gradient it is (its input is that convolution's output).
fn conv_transpose2d_geom(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    o: &ConvTranspose2dOpts,
) -> Result<Geom> {
    const OP: &str = "conv_transpose2d";
    let xs = shape4(OP, "input", x)?;
    let ws = shape4(OP, "weight", w)?;
    check_common(OP, &xs, &ws, o.stride, o.dilation, o.groups)?;
    let [n, cin, h, wd] = xs;
    let [w_cin, cout_g, kh, kw] = ws;
    let gr = o.groups;
    ensure_shape!(
        cin % gr == 0,
        OP,
        "input channels {cin} must divide by groups {gr} (input {xs:?}, weight {ws:?})"
    );
    ensure_shape!(
        w_cin == cin,
        OP,
        "weight {ws:?} must have {cin} input channels (its first dimension) for input {xs:?}"
    );
    let cout = cout_g * gr;
    check_bias(OP, b, cout, &xs, &ws)?;
    let (op_h, op_w) = o.output_padding;
    ensure_shape!(
        (op_h < o.stride.0 || op_h < o.dilation.0) && (op_w < o.stride.1 || op_w < o.dilation.1),
        OP,
        "output_padding {:?} must be smaller than either stride {:?} or dilation {:?} \
         (input {xs:?}, weight {ws:?})",
        o.output_padding,
        o.stride,
        o.dilation
    );
    let size = |i: usize, s: usize, p: usize, d: usize, k: usize, op: usize| -> isize {
        (i as isize - 1) * s as isize - 2 * p as isize + (d * (k - 1)) as isize + op as isize + 1
    };
    let ho = size(h, o.stride.0, o.padding.0, o.dilation.0, kh, op_h);
    let wo = size(wd, o.stride.1, o.padding.1, o.dilation.1, kw, op_w);
    ensure_shape!(
        ho > 0 && wo > 0,
        OP,
        "output size {ho}x{wo} is not positive (input {xs:?}, weight {ws:?}, stride {:?}, \
         padding {:?}, dilation {:?}, output_padding {:?})",
        o.stride,
        o.padding,
        o.dilation,
        o.output_padding
    );
    Ok(Geom {
        n,
        cin: cout,
        h: ho as usize,
        w: wo as usize,
        cout: cin,
        ho: h,
        wo: wd,
        kh,
        kw,
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
        groups: gr,
    })
}

/// 2-D convolution: x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw], optional bias b [Cout]
/// -> [N, Cout, Ho, Wo] with Ho = (H + 2 pad - dil (kh - 1) - 1) / stride + 1 (floor).
/// Records gradients for x, w and b.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, opts: Conv2dOpts) -> Result<Tensor> {
    let g = conv2d_geom(x, w, b, &opts)?;
    let y = fwd_raw(x, w, b, &g)?.with_op(ConvOp {
        x: x.clone(),
        w: w.clone(),
        b: b.cloned(),
        g,
        transposed: false,
    });
    Ok(y.traced(|| Op::Conv2d(opts), &with_bias(x, w, b)))
}

/// The direct, one-output-per-invocation conv2d forward: the benchmark's reference for the
/// tiled kernel. Same arguments and result as [`conv2d`], but records no gradient.
pub fn conv2d_naive(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    opts: Conv2dOpts,
) -> Result<Tensor> {
    let g = conv2d_geom(x, w, b, &opts)?;
    let y = Tensor::uninit(x.gpu(), "conv2d_naive", &g.y_shape())?;
    let bias = b.unwrap_or(w);
    x.gpu().dispatch(
        &CONV2D_NAIVE,
        &g.params(b.is_some(), 1, 0, 0).0,
        &[x.buf(), w.buf(), bias.buf(), y.buf()],
        groups(y.numel(), 256),
    );
    Ok(y)
}

/// Transposed 2-D convolution (PyTorch's `ConvTranspose2d`): x [N, Cin, H, W],
/// w [Cin, Cout/groups, kh, kw], optional bias b [Cout] -> [N, Cout, Ho, Wo] with
/// Ho = (H - 1) stride - 2 pad + dil (kh - 1) + output_padding + 1.
/// Records gradients for x, w and b.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    opts: ConvTranspose2dOpts,
) -> Result<Tensor> {
    let g = conv_transpose2d_geom(x, w, b, &opts)?;
    let y = dgrad_raw(x, w, b, &g)?.with_op(ConvOp {
        x: x.clone(),
        w: w.clone(),
        b: b.cloned(),
        g,
        transposed: true,
    });
    Ok(y.traced(|| Op::ConvTranspose2d(opts), &with_bias(x, w, b)))
}

/// Backward of both conv2d and conv_transpose2d (which swap the roles of forward and input
/// gradient).
struct ConvOp {
    x: Tensor,
    w: Tensor,
    b: Option<Tensor>,
    g: Geom,
    transposed: bool,
}

impl BackwardOp for ConvOp {
    fn name(&self) -> &'static str {
        if self.transposed {
            "conv_transpose2d"
        } else {
            "conv2d"
        }
    }
    fn inputs(&self) -> Vec<Tensor> {
        let mut v = vec![self.x.clone(), self.w.clone()];
        v.extend(self.b.clone());
        v
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = &self.g;
        // Only what autodiff will use: a frozen input or weight costs nothing.
        let gx = if !self.x.is_tracked() {
            None
        } else if self.transposed {
            Some(fwd_raw(grad, &self.w, None, g)?)
        } else {
            Some(dgrad_raw(grad, &self.w, None, g)?)
        };
        let gw = if !self.w.is_tracked() {
            None
        } else if self.transposed {
            // The direct convolution's input is our output gradient, its output our input.
            Some(wgrad_raw(grad, &self.x, g)?)
        } else {
            Some(wgrad_raw(&self.x, grad, g)?)
        };
        let mut out = vec![gx, gw];
        if let Some(b) = &self.b {
            out.push(if !b.is_tracked() {
                None
            } else if self.transposed {
                // Bias over the transposed conv's output = the direct conv's input.
                let gt = Geom {
                    cout: g.cin,
                    ho: g.h,
                    wo: g.w,
                    ..*g
                };
                Some(bias_grad_raw(grad, &gt)?)
            } else {
                Some(bias_grad_raw(grad, g)?)
            });
        }
        Ok(out)
    }
}

/// CPU references: direct loops with f64 accumulation. Shapes are passed explicitly
/// (`[n, c, h, w]` for activations, PyTorch's layouts for weights).
pub mod cpu {
    use super::{Conv2dOpts, ConvTranspose2dOpts};

    /// `conv_pack_w`: `blocks` blocks of [rows][taps] to [taps][padded], rows from `rows` on
    /// zero (weights, or gy with pixels for taps).
    pub fn pack_weights(
        w: &[f32],
        blocks: usize,
        rows: usize,
        taps: usize,
        padded: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; blocks * taps * padded];
        for t in 0..blocks {
            for a in 0..rows {
                for b in 0..taps {
                    out[(t * taps + b) * padded + a] = w[(t * rows + a) * taps + b];
                }
            }
        }
        out
    }

    /// conv2d's output height and width for input `xs` and weight `ws`.
    pub fn conv2d_out_hw(xs: [usize; 4], ws: [usize; 4], o: &Conv2dOpts) -> (usize, usize) {
        let ho = (xs[2] + 2 * o.padding.0 - o.dilation.0 * (ws[2] - 1) - 1) / o.stride.0 + 1;
        let wo = (xs[3] + 2 * o.padding.1 - o.dilation.1 * (ws[3] - 1) - 1) / o.stride.1 + 1;
        (ho, wo)
    }

    /// conv_transpose2d's output height and width for input `xs` and weight `ws`.
    pub fn conv_transpose2d_out_hw(
        xs: [usize; 4],
        ws: [usize; 4],
        o: &ConvTranspose2dOpts,
    ) -> (usize, usize) {
        let ho = (xs[2] - 1) * o.stride.0 + o.dilation.0 * (ws[2] - 1) + o.output_padding.0 + 1
            - 2 * o.padding.0;
        let wo = (xs[3] - 1) * o.stride.1 + o.dilation.1 * (ws[3] - 1) + o.output_padding.1 + 1
            - 2 * o.padding.1;
        (ho, wo)
    }

    /// Visits every (input index, weight index, output index) triple of a direct convolution
    /// with input `xs`, weight `ws` and output height/width `(ho, wo)`.
    #[allow(clippy::too_many_arguments)]
    fn taps(
        xs: [usize; 4],
        ws: [usize; 4],
        (ho, wo): (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        mut f: impl FnMut(usize, usize, usize),
    ) {
        let [n, cin, h, w] = xs;
        let [cout, cg, kh, kw] = ws;
        let mg = cout / groups;
        for b in 0..n {
            for co in 0..cout {
                let g = co / mg;
                for oh in 0..ho {
                    for ow in 0..wo {
                        let yi = ((b * cout + co) * ho + oh) * wo + ow;
                        for c in 0..cg {
                            let ci = g * cg + c;
                            for ki in 0..kh {
                                let ih =
                                    (oh * stride.0 + ki * dilation.0) as isize - padding.0 as isize;
                                if ih < 0 || ih >= h as isize {
                                    continue;
                                }
                                for kj in 0..kw {
                                    let iw = (ow * stride.1 + kj * dilation.1) as isize
                                        - padding.1 as isize;
                                    if iw < 0 || iw >= w as isize {
                                        continue;
                                    }
                                    let xi = ((b * cin + ci) * h + ih as usize) * w + iw as usize;
                                    let wi = ((co * cg + c) * kh + ki) * kw + kj;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn to_f32(v: Vec<f64>) -> Vec<f32> {
        v.into_iter().map(|a| a as f32).collect()
    }

    /// conv2d forward; returns y and its shape.
    pub fn conv2d(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        b: Option<&[f32]>,
        o: &Conv2dOpts,
    ) -> (Vec<f32>, [usize; 4]) {
        let (ho, wo) = conv2d_out_hw(xs, ws, o);
        let ys = [xs[0], ws[0], ho, wo];
        let mut y = vec![0f64; ys.iter().product()];
        if let Some(b) = b {
            for (i, v) in y.iter_mut().enumerate() {
                *v = f64::from(b[(i / (ho * wo)) % ws[0]]);
            }
        }
        taps(
            xs,
            ws,
            (ho, wo),
            o.stride,
            o.padding,
            o.dilation,
            o.groups,
            |xi, wi, yi| {
                y[yi] += f64::from(x[xi]) * f64::from(w[wi]);
            },
        );
        (to_f32(y), ys)
    }

    /// conv2d backward: (dx, dw, db) for output gradient `gy`.
    pub fn conv2d_backward(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        gy: &[f32],
        o: &Conv2dOpts,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (ho, wo) = conv2d_out_hw(xs, ws, o);
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; w.len()];
        taps(
            xs,
            ws,
            (ho, wo),
            o.stride,
            o.padding,
            o.dilation,
            o.groups,
            |xi, wi, yi| {
                dx[xi] += f64::from(gy[yi]) * f64::from(w[wi]);
                dw[wi] += f64::from(gy[yi]) * f64::from(x[xi]);
            },
        );
        (
            to_f32(dx),
            to_f32(dw),
            bias_grad(gy, [xs[0], ws[0], ho, wo]),
        )
    }

    /// Per-channel sum of `gy` of shape `ys` over batch and pixels.
    pub fn bias_grad(gy: &[f32], ys: [usize; 4]) -> Vec<f32> {
        let hw = ys[2] * ys[3];
        let mut db = vec![0f64; ys[1]];
        for (i, &g) in gy.iter().enumerate() {
            db[(i / hw) % ys[1]] += f64::from(g);
        }
        to_f32(db)
    }

    /// conv_transpose2d forward (a scatter of each input pixel through the kernel); returns
    /// y and its shape. `ws` is [Cin, Cout/groups, kh, kw].
    pub fn conv_transpose2d(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        b: Option<&[f32]>,
        o: &ConvTranspose2dOpts,
    ) -> (Vec<f32>, [usize; 4]) {
        let (ho, wo) = conv_transpose2d_out_hw(xs, ws, o);
        let cout = ws[1] * o.groups;
        let ys = [xs[0], cout, ho, wo];
        let mut y = vec![0f64; ys.iter().product()];
        if let Some(b) = b {
            for (i, v) in y.iter_mut().enumerate() {
                *v = f64::from(b[(i / (ho * wo)) % cout]);
            }
        }
        // The direct convolution from y-shaped input to x-shaped output, weight read as
        // [Cin, Cout/g, kh, kw] = [its cout, its cin/g, kh, kw].
        taps(
            ys,
            ws,
            (xs[2], xs[3]),
            o.stride,
            o.padding,
            o.dilation,
            o.groups,
            |yi, wi, xi| {
                y[yi] += f64::from(x[xi]) * f64::from(w[wi]);
            },
        );
        (to_f32(y), ys)
    }

    /// conv_transpose2d backward: (dx, dw, db) for output gradient `gy`.
    pub fn conv_transpose2d_backward(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        gy: &[f32],
        o: &ConvTranspose2dOpts,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (ho, wo) = conv_transpose2d_out_hw(xs, ws, o);
        let ys = [xs[0], ws[1] * o.groups, ho, wo];
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; w.len()];
        taps(
            ys,
            ws,
            (xs[2], xs[3]),
            o.stride,
            o.padding,
            o.dilation,
            o.groups,
            |yi, wi, xi| {
                dx[xi] += f64::from(gy[yi]) * f64::from(w[wi]);
                dw[wi] += f64::from(gy[yi]) * f64::from(x[xi]);
            },
        );
        (to_f32(dx), to_f32(dw), bias_grad(gy, ys))
    }
}

#[cfg(test)]
mod tests {
    use super::{Geom, Pack, Packed, cpu, dgrad_by_gemm, sg};
    use crate::{Gpu, Tensor};

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
    fn input_gradient_takes_the_gemm_where_the_gather_would_hit_empty_taps() {
        let geom = |n, c, hw: (usize, usize), k, s, p, ohw: (usize, usize), groups| Geom {
            n,
            cin: c,
            h: hw.0,
            w: hw.1,
            cout: 8,
            ho: ohw.0,
            wo: ohw.1,
            kh: k,
            kw: k,
            stride: (s, s),
            padding: (p, p),
            dilation: (1, 1),
            groups,
        };
        let big = 1 << 30;
        // MnistCnn's conv2: 144 input pixels, 64 outputs, not enough to pay for the GEMM.
        assert!(!dgrad_by_gemm(
            &geom(64, 10, (12, 12), 5, 1, 0, (8, 8), 1),
            big
        ));
        // A 7x7 kernel on 12x12: 144 from 36.
        assert!(dgrad_by_gemm(
            &geom(64, 10, (12, 12), 7, 1, 0, (6, 6), 1),
            big
        ));
        // Stride 2 (DCGAN, ResNet's downsampling).
        assert!(dgrad_by_gemm(
            &geom(32, 16, (14, 14), 4, 2, 1, (7, 7), 1),
            big
        ));
        // Same-size 3x3: every tap of the gather is useful.
        assert!(!dgrad_by_gemm(
            &geom(32, 16, (14, 14), 3, 1, 1, (14, 14), 1),
            big
        ));
        // Grouped layers keep the gather.
        assert!(!dgrad_by_gemm(
            &geom(32, 16, (14, 14), 4, 2, 1, (7, 7), 2),
            big
        ));
        // A column matrix past the binding limit keeps the gather: 64*10*49*36*4 bytes.
        let wide = geom(64, 10, (12, 12), 7, 1, 0, (6, 6), 1);
        assert!(!dgrad_by_gemm(&wide, 64 * 10 * 49 * 36 * 4 - 4));
        assert!(dgrad_by_gemm(&wide, 64 * 10 * 49 * 36 * 4));
    }

    #[test]
    fn subgroup_row_tiles_take_few_workgroups_then_few_rows() {
        let k = [
            &sg::CONV_FWD_SG8,
            &sg::CONV_FWD_SG16,
            &sg::CONV_FWD_SG24,
            &sg::CONV_FWD_SG32,
        ];
        let rows = |m, lanes| sg::rows(m, lanes, k).0;
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
        assert_eq!(sg::rows(20, 8, k).1.name, "CONV_FWD_SG24");
    }
}
