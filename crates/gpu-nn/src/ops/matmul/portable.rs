//! The matmul kernels every device runs (`shaders/matmul.wgsl`): one tiled kernel for every
//! product with optional transposes, split over K where few output tiles would leave the
//! GPU idle, and the naive kernel the benchmark compares with.

use super::Dims;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Kernel, Params, kernels};
use crate::tensor::Tensor;

kernels!("matmul.wgsl";
    MATMUL = "matmul" [R, R, R, W],
    MATMUL_SUM_SPLITS = "matmul_sum_splits" [R, R, R, W],
    MATMUL_NAIVE = "matmul_naive" [R, R, R, W],
);

/// Output tile edge of the tiled kernel (rows and columns per workgroup).
const TILE: usize = 64;

/// K step of the tiled kernel: split-K slices are multiples of it.
const TILE_K: usize = 16;

/// How a product of one batch whose output tiles would leave a GPU idle (fewer than 32
/// workgroups) while K is long is split over K: enough slices for ~128 workgroups, each at
/// least 256 long and a multiple of [`TILE_K`]. Returns (slices, slice length), (1, 0)
/// for no split.
fn k_splits(d: &Dims) -> (usize, usize) {
    let tiles = d.m.div_ceil(TILE) * d.n.div_ceil(TILE);
    if d.batch != 1 || tiles >= 32 || d.k < 1024 {
        return (1, 0);
    }
    let want = 128usize.div_ceil(tiles).min(d.k / 256).clamp(1, 64);
    let kchunk = d.k.div_ceil(want).next_multiple_of(TILE_K);
    (d.k.div_ceil(kchunk), kchunk)
}

/// A kernel with the outputs each workgroup covers (columns, rows, batches) and the op name
/// its errors carry.
struct Launch {
    kernel: &'static Kernel,
    grid: [usize; 3],
    op: &'static str,
}

/// Dispatches `kernel` over the product `d`, in `splits` K slices of `kchunk` (see
/// [`k_splits`]; only the tiled `matmul` entry takes more than 1) summed by
/// `matmul_sum_splits`.
fn launch(
    Launch { kernel, grid, op }: Launch,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    d: Dims,
    (splits, kchunk): (usize, usize),
) -> Result<Tensor> {
    let out_shape: Vec<usize> = if d.rank3 {
        vec![d.batch, d.m, d.n]
    } else {
        vec![d.m, d.n]
    };
    let max = a.gpu().limits().max_compute_workgroups_per_dimension as usize;
    let groups = [
        d.n.div_ceil(grid[0]),
        d.m.div_ceil(grid[1]),
        d.batch.div_ceil(grid[2]) * splits,
    ];
    ensure_shape!(
        groups.iter().all(|&g| g <= max),
        op,
        "{:?} @ {:?} needs {groups:?} workgroups, more than {max} per dimension",
        a.shape(),
        b.shape()
    );
    let c = Tensor::uninit(a.gpu(), op, &out_shape)?;
    let transposes = usize::from(d.trans_a) | usize::from(d.trans_b) << 1;
    let params = |flags: usize| {
        Params::new()
            .u(d.m)
            .u(d.n)
            .u(d.k)
            .u(flags)
            .u(d.a_batch)
            .u(d.k * d.n)
            .u(d.m * d.n)
            .u(kchunk)
            .u(splits)
            .u(0)
            .u(0)
            .u(0)
    };
    let bias_flag = usize::from(bias.is_some()) << 2;
    // Without a bias the binding still needs a buffer; the kernel never reads it.
    let bias_buf = bias.map_or(a.buf(), Tensor::buf);
    if splits == 1 {
        a.gpu().dispatch(
            kernel,
            &params(transposes | bias_flag).0,
            &[a.buf(), b.buf(), bias_buf, c.buf()],
            groups.map(|g| g as u32),
        );
        return Ok(c);
    }
    // Slices without the bias, then their sum with it.
    let part = Tensor::uninit(a.gpu(), op, &[splits, d.m, d.n])?;
    a.gpu().dispatch(
        kernel,
        &params(transposes).0,
        &[a.buf(), b.buf(), bias_buf, part.buf()],
        groups.map(|g| g as u32),
    );
    a.gpu().dispatch(
        &MATMUL_SUM_SPLITS,
        &params(bias_flag).0,
        &[part.buf(), b.buf(), bias_buf, c.buf()],
        [(d.m * d.n).div_ceil(256) as u32, 1, 1],
    );
    Ok(c)
}

/// op(A) @ op(B) (+ bias) with the tiled kernel.
pub(super) fn product(a: &Tensor, b: &Tensor, bias: Option<&Tensor>, d: Dims) -> Result<Tensor> {
    let l = Launch {
        kernel: &MATMUL,
        grid: [TILE, TILE, 1],
        op: "matmul",
    };
    launch(l, a, b, bias, d, k_splits(&d))
}

/// A @ B with the one-output-per-invocation kernel (see [`super::matmul_naive`]).
pub(super) fn naive(a: &Tensor, b: &Tensor, d: Dims) -> Result<Tensor> {
    let l = Launch {
        kernel: &MATMUL_NAIVE,
        grid: [16, 16, 1],
        op: "matmul_naive",
    };
    launch(l, a, b, None, d, (1, 0))
}

#[cfg(test)]
mod tests {
    use super::super::Dims;
    use super::*;

    fn d(batch: usize, m: usize, k: usize, n: usize) -> Dims {
        Dims {
            batch,
            m,
            k,
            n,
            a_batch: m * k,
            rank3: batch > 1,
            trans_a: false,
            trans_b: false,
        }
    }

    #[test]
    fn long_k_with_few_tiles_is_split() {
        // The DCGAN discriminator's fc: one output tile, K = 6272 -> 24 slices of 272.
        assert_eq!(k_splits(&d(1, 64, 6272, 1)), (24, 272));
        // Enough tiles, a short K, or a batch: no split.
        assert_eq!(k_splits(&d(1, 2048, 6272, 64)), (1, 0));
        assert_eq!(k_splits(&d(1, 64, 1000, 1)), (1, 0));
        assert_eq!(k_splits(&d(2, 64, 6272, 1)), (1, 0));
        // Slices stay at least 256 long (1100 / 4 = 275 -> 288: 4 slices, the last short).
        assert_eq!(k_splits(&d(1, 64, 1100, 70)), (4, 288));
    }
}
