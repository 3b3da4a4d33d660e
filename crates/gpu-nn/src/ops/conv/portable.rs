//! The conv kernels every device runs (`shaders/conv.wgsl`): tiled implicit GEMMs for the
//! forward, the input gradient (a gather, no atomics) and the weight gradient (split over K
//! when the output is small); the input gradient as a GEMM plus `col2im` for strided
//! layers; the bias gradient; the naive forward the benchmark compares with.

use super::{Geom, TILE_K, grid, split_k};
use crate::error::Result;
use crate::kernel::{Kernel, groups, kernels};
use crate::tensor::Tensor;

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
);

/// Output tile columns of the GEMM kernels.
const TILE_N: usize = 64;

/// Tile rows for a GEMM with `m` rows (16, 32 or 64: layers with few channels would
/// otherwise spend most of the work on padding rows) and the matching kernel of the three.
fn tile_rows(m: usize, kernels: [&'static Kernel; 3]) -> (usize, &'static Kernel) {
    match m {
        0..=16 => (16, kernels[0]),
        17..=32 => (32, kernels[1]),
        _ => (64, kernels[2]),
    }
}

/// y = conv(x, w) + b for geometry `g`.
pub(super) fn fwd(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    let y = Tensor::uninit(x.gpu(), "conv2d", &g.y_shape())?;
    let m = g.cout / g.groups;
    let n = g.n * g.ho * g.wo;
    // Without a bias the kernel never reads the binding; any read-only buffer fills it.
    let bias = b.unwrap_or(w);
    let (bm, kernel) = tile_rows(m, [&CONV_FWD_16, &CONV_FWD_32, &CONV_FWD]);
    let dims = grid("conv2d", m, bm, n, TILE_N, g.groups, g)?;
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
/// and `col2im` reads it back, which costs as much as it saves below a 3x ratio.
/// Single-group layers whose column matrix fits one binding.
/// `max_binding` is the device's largest binding in bytes.
pub(super) fn dgrad_by_gemm(g: &Geom, max_binding: u64) -> bool {
    let cols = (g.n * g.cin * g.kh * g.kw * g.ho * g.wo) as u64 * 4;
    g.groups == 1 && g.h * g.w >= 3 * g.ho * g.wo && cols <= max_binding.min(COLS_MAX_BYTES)
}

/// The input gradient as a GEMM and a gather: cols[b] = W^T gy[b] ([cin kh kw, ho wo] per
/// image, every entry a useful product), then `col2im` sums each input pixel's taps.
pub(super) fn dgrad_gemm(gy: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    const OP: &str = "conv2d backward (input)";
    let khw = g.kh * g.kw;
    let w2 = w.detach().reshape(&[g.cout, g.cin * khw])?;
    let gy3 = gy.detach().reshape(&[g.n, g.cout, g.ho * g.wo])?;
    let cols = crate::ops::matmul::matmul_shared_a(&w2, &gy3, true)?;
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

/// dx = conv2d input gradient of `gy` (shape y) for geometry `g` by the direct gather, plus
/// an optional bias per input channel (conv_transpose2d's forward).
pub(super) fn dgrad(gy: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    let dx = Tensor::uninit(gy.gpu(), "conv2d backward (input)", &g.x_shape())?;
    let m = g.cin / g.groups;
    let n = g.n * g.h * g.w;
    let bias = b.unwrap_or(w);
    let (bm, kernel) = tile_rows(m, [&CONV_DGRAD_16, &CONV_DGRAD_32, &CONV_DGRAD]);
    let dims = grid("conv2d backward (input)", m, bm, n, TILE_N, g.groups, g)?;
    gy.gpu().dispatch(
        kernel,
        &g.params(b.is_some(), 1, 0, 0).0,
        &[gy.buf(), w.buf(), bias.buf(), dx.buf()],
        dims,
    );
    Ok(dx)
}

/// dw = conv2d weight gradient for input `x` (shape x) and output gradient `gy` (shape y).
pub(super) fn wgrad(x: &Tensor, gy: &Tensor, g: &Geom) -> Result<Tensor> {
    const OP: &str = "conv2d backward (weight)";
    let m = g.cout / g.groups;
    let ncols = g.cin / g.groups * g.kh * g.kw;
    let (bm, kernel) = tile_rows(m, [&CONV_WGRAD_16, &CONV_WGRAD_32, &CONV_WGRAD]);
    let tiles = m.div_ceil(bm) * ncols.div_ceil(TILE_N) * g.groups;
    split_k(x, g, tiles, |out, splits, kchunk| {
        let dims = grid(OP, m, bm, ncols, TILE_N, g.groups * splits, g)?;
        let params = g.params(false, splits, kchunk, g.w_shape().iter().product());
        x.gpu()
            .dispatch(kernel, &params.0, &[x.buf(), gy.buf(), out], dims);
        Ok(())
    })
}

/// Records `out[i] = sum over s < splits of part[s * total + i]` (`total` = `out`'s size).
pub(super) fn sum_splits(part: &Tensor, out: &Tensor, g: &Geom, splits: usize, kchunk: usize) {
    debug_assert_eq!(kchunk % TILE_K, 0);
    let total = out.numel();
    out.gpu().dispatch(
        &SUM_SPLITS,
        &g.params(false, splits, kchunk, total).0,
        &[part.buf(), out.buf()],
        groups(total, 256),
    );
}

/// db[c] = sum of gy over batch and pixels; `gy` has shape y of `g`. A channel's planes
/// are whole texels when ho wo % 4 == 0: the kernel then reads four values a load.
pub(super) fn bias_grad(gy: &Tensor, g: &Geom) -> Result<Tensor> {
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

/// The direct, one-output-per-invocation forward (see [`super::conv2d_naive`]).
pub(super) fn naive(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
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

#[cfg(test)]
mod tests {
    use super::super::Geom;
    use super::dgrad_by_gemm;

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
}
