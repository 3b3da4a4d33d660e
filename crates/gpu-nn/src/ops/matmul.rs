//! Matrix products: [`Tensor::matmul`] (plain and batched) and [`linear`] (PyTorch's
//! `nn.Linear` layout, bias fused). One kernel serves every product with optional transposes
//! of either operand, so backward passes need no transpose kernel.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Kernel, Params, kernels};
use crate::tensor::Tensor;
use crate::trace::{Op, with_bias};

kernels!("matmul.wgsl";
    MATMUL = "matmul" [R, R, R, W],
    MATMUL_SUM_SPLITS = "matmul_sum_splits" [R, R, R, W],
    MATMUL_NAIVE = "matmul_naive" [R, R, R, W],
);

mod sg {
    use crate::kernel::kernels;
    kernels!("matmul_subgroup.wgsl";
        MATMUL_SG = "matmul_sg" [T, T, R, W],
        MATMUL_SG_LVEC = "matmul_sg" [T, T, R, W] (L_VEC = 1),
    );
}

/// Row blocks (each broadcast from `Gpu::subgroup_lanes` lanes) and columns (4 per lane)
/// per workgroup of `matmul_sg`.
const SG_BLOCKS: usize = 4;
const SG_COLS: usize = 256;

/// op(A) @ op(B) (+ bias) with the subgroup kernel, putting the larger of M and N on the
/// lanes (computing C^T = op(B)^T op(A)^T through strides when that wastes less). Both
/// operands are read from operand textures (callers check that they fit).
fn matmul_sg(a: &Tensor, b: &Tensor, bias: Option<&Tensor>, d: Dims) -> Result<Tensor> {
    const OP: &str = "matmul";
    let Dims {
        batch,
        m,
        k,
        n,
        a_batch,
        rank3,
        trans_a,
        trans_b,
    } = d;
    // op(A)[m, k] = a[m * a_m + k * a_k]; op(B)[k, n] = b[k * b_k + n * b_n].
    let (a_m, a_k) = if trans_a { (1, m) } else { (k, 1) };
    let (b_k, b_n) = if trans_b { (1, k) } else { (n, 1) };
    let sg_rows = SG_BLOCKS * a.gpu().subgroup_lanes();
    // Work done, padding included: whole row blocks by whole workgroups of columns (the
    // lanes past the last column of a workgroup run all the same).
    let padded =
        |rows: usize, cols: usize| rows.next_multiple_of(sg_rows) * cols.next_multiple_of(SG_COLS);
    let swap = padded(n, m) < padded(m, n);
    // (rows, cols, r strides (i, k), l strides (k, j), c strides (i, j), bias mode)
    let (rows, cols, r_s, l_s, c_s, bias_mode) = if swap {
        (n, m, (b_n, b_k), (a_k, a_m), (1, n), 2)
    } else {
        (m, n, (a_m, a_k), (b_k, b_n), (n, 1), 1)
    };
    let max = a.gpu().limits().max_compute_workgroups_per_dimension as usize;
    let groups = [cols.div_ceil(SG_COLS), rows.div_ceil(sg_rows), batch];
    ensure_shape!(
        groups.iter().all(|&g| g <= max),
        OP,
        "{:?} @ {:?} needs {groups:?} workgroups, more than {max} per dimension",
        a.shape(),
        b.shape()
    );
    let out_shape: Vec<usize> = if rank3 { vec![batch, m, n] } else { vec![m, n] };
    let c = Tensor::uninit(a.gpu(), OP, &out_shape)?;
    let p = Params::new()
        .u(rows)
        .u(cols)
        .u(k)
        .u(if bias.is_some() { bias_mode } else { 0 })
        .u(r_s.0)
        .u(r_s.1)
        .u(l_s.0)
        .u(l_s.1)
        .u(c_s.0)
        .u(c_s.1);
    let (r, l, r_batch, l_batch) = if swap {
        (b, a, k * n, a_batch)
    } else {
        (a, b, a_batch, k * n)
    };
    let p = p.u(r_batch).u(l_batch).u(m * n);
    let l_vec = l_s.1 == 1 && cols % 4 == 0 && l_s.0 % 4 == 0 && l_batch % 4 == 0;
    let kernel = if l_vec {
        &sg::MATMUL_SG_LVEC
    } else {
        &sg::MATMUL_SG
    };
    let bias_buf = bias.map_or(a.buf(), Tensor::buf);
    a.gpu().dispatch_texels(
        kernel,
        &p.0,
        &[r, l],
        &[bias_buf, c.buf()],
        groups.map(|g| g as u32),
    )?;
    Ok(c)
}

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

/// Shape of one product: batch count, and op(A) [m, k] @ op(B) [k, n].
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    /// Elements between A's batches: m * k, or 0 when one A serves every batch of B.
    a_batch: usize,
    /// Whether the product is [batch, m, n] rather than [m, n].
    rank3: bool,
    /// Whether A is stored [k, m] and B [n, k].
    trans_a: bool,
    trans_b: bool,
}

/// Splits a rank-2 or rank-3 shape into (batch, rows, cols).
fn batch_rows_cols(op: &'static str, what: &str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    match *shape {
        [r, c] => Ok((1, r, c)),
        [bt, r, c] => Ok((bt, r, c)),
        _ => Err(crate::error::shape_err(
            op,
            format!("{what} must be [rows, cols] or [batch, rows, cols], got {shape:?}"),
        )),
    }
}

/// Checks the operands of op(A) @ op(B) and returns the product's dimensions.
fn dims(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    bias: Option<&Tensor>,
) -> Result<Dims> {
    let (ba, ar, ac) = batch_rows_cols(op, "left operand", a.shape())?;
    let (bb, br, bc) = batch_rows_cols(op, "right operand", b.shape())?;
    ensure_shape!(
        a.shape().len() == b.shape().len() && ba == bb,
        op,
        "batch dimensions differ: {:?} and {:?}",
        a.shape(),
        b.shape()
    );
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    ensure_shape!(
        k == k2,
        op,
        "inner dimensions differ: {:?}{} @ {:?}{}",
        a.shape(),
        if trans_a { "^T" } else { "" },
        b.shape(),
        if trans_b { "^T" } else { "" }
    );
    if let Some(bias) = bias {
        ensure_shape!(
            bias.shape() == [n],
            op,
            "bias of shape {:?} does not match {n} output columns",
            bias.shape()
        );
    }
    Ok(Dims {
        batch: ba,
        m,
        k,
        n,
        a_batch: m * k,
        rank3: a.shape().len() == 3,
        trans_a,
        trans_b,
    })
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

/// op(A) @ op(B) (+ bias per output column), untracked. `a` is [M, K] or [B, M, K]
/// ([K, M] / [B, K, M] when `trans_a`), `b` is [K, N] or [B, K, N] ([N, K] / [B, N, K] when
/// `trans_b`), both of the same rank; the result is [M, N] or [B, M, N]. `bias` is [N].
pub(crate) fn matmul_raw(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let d = dims("matmul", a, b, trans_a, trans_b, bias)?;
    product(a, b, bias, d)
}

/// op(A) @ B[i] for every batch i of `b` ([B, K, N]), one `a` ([M, K], or [K, M] when
/// `trans_a`) shared by all: [B, M, N], untracked. The GEMM half of the scatter-free
/// convolution input gradient.
pub(crate) fn matmul_shared_a(a: &Tensor, b: &Tensor, trans_a: bool) -> Result<Tensor> {
    const OP: &str = "matmul";
    let [ar, ac] = *a.shape() else {
        return Err(crate::error::shape_err(
            OP,
            format!(
                "shared left operand must be [rows, cols], got {:?}",
                a.shape()
            ),
        ));
    };
    let [batch, k, n] = *b.shape() else {
        return Err(crate::error::shape_err(
            OP,
            format!(
                "right operand must be [batch, rows, cols], got {:?}",
                b.shape()
            ),
        ));
    };
    let (m, ka) = if trans_a { (ac, ar) } else { (ar, ac) };
    ensure_shape!(
        ka == k,
        OP,
        "inner dimensions differ: {:?}{} @ {:?}",
        a.shape(),
        if trans_a { "^T" } else { "" },
        b.shape()
    );
    let d = Dims {
        batch,
        m,
        k,
        n,
        a_batch: 0,
        rank3: true,
        trans_a,
        trans_b: false,
    };
    product(a, b, None, d)
}

/// Dispatches the product `d` of checked operands with the best kernel for the device.
fn product(a: &Tensor, b: &Tensor, bias: Option<&Tensor>, d: Dims) -> Result<Tensor> {
    if a.gpu().uses_subgroups() && a.gpu().texels_fit(&[a, b]) {
        return matmul_sg(a, b, bias, d);
    }
    let l = Launch {
        kernel: &MATMUL,
        grid: [TILE, TILE, 1],
        op: "matmul",
    };
    launch(l, a, b, bias, d, k_splits(&d))
}

/// A @ B with the one-output-per-invocation kernel, untracked: the benchmark's reference.
#[doc(hidden)]
pub fn matmul_naive(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let l = Launch {
        kernel: &MATMUL_NAIVE,
        grid: [16, 16, 1],
        op: "matmul_naive",
    };
    let d = dims(l.op, a, b, false, false, None)?;
    launch(l, a, b, None, d, (1, 0))
}

impl Tensor {
    /// Matrix product: [M, K] @ [K, N] -> [M, N], or batched [B, M, K] @ [B, K, N] ->
    /// [B, M, N].
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_t(other, false, false)
    }

    /// op(self) @ op(other) where op transposes the last two dimensions of an operand when
    /// its flag is set (no copy is made): e.g. `q.matmul_t(&k, false, true)` is Q K^T.
    /// Shapes as in [`Tensor::matmul`] after the transposes.
    pub fn matmul_t(&self, other: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        let y = matmul_raw(self, other, trans_a, trans_b, None)?.with_op(MatmulOp {
            a: self.clone(),
            b: other.clone(),
            trans_a,
            trans_b,
        });
        Ok(y.traced(|| Op::MatMul { trans_a, trans_b }, &[self, other]))
    }
}

/// A fully connected layer in PyTorch's layout: `x` [N, in], `weight` [out, in], `bias`
/// [out]; returns x W^T + b, [N, out]. The bias is added inside the product kernel.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    ensure_shape!(
        x.shape().len() == 2 && weight.shape().len() == 2,
        "linear",
        "input {:?} and weight {:?} must both be 2-D ([N, in] and [out, in])",
        x.shape(),
        weight.shape()
    );
    // Checked here too so that errors name `linear`.
    dims("linear", x, weight, false, true, bias)?;
    let y = matmul_raw(x, weight, false, true, bias)?;
    let y = y.with_op(LinearOp {
        x: x.clone(),
        w: weight.clone(),
        b: bias.cloned(),
    });
    Ok(y.traced(|| Op::Linear, &with_bias(x, weight, bias)))
}

struct MatmulOp {
    a: Tensor,
    b: Tensor,
    trans_a: bool,
    trans_b: bool,
}

impl BackwardOp for MatmulOp {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.a.clone(), self.b.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // C = op(A) op(B): d op(A) = dC op(B)^T and d op(B) = op(A)^T dC; a transposed
        // operand's gradient is the transpose of that, written as a product with swapped
        // factors so no transpose kernel is needed.
        let (a, b, g) = (&self.a, &self.b, grad);
        let (ta, tb) = (self.trans_a, self.trans_b);
        let ga = a
            .is_tracked()
            .then(|| {
                if ta {
                    matmul_raw(b, g, tb, true, None)
                } else {
                    matmul_raw(g, b, false, !tb, None)
                }
            })
            .transpose()?;
        let gb = b
            .is_tracked()
            .then(|| {
                if tb {
                    matmul_raw(g, a, true, ta, None)
                } else {
                    matmul_raw(a, g, !ta, false, None)
                }
            })
            .transpose()?;
        Ok(vec![ga, gb])
    }
}

struct LinearOp {
    x: Tensor,
    w: Tensor,
    b: Option<Tensor>,
}

impl BackwardOp for LinearOp {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn inputs(&self) -> Vec<Tensor> {
        let mut v = vec![self.x.clone(), self.w.clone()];
        v.extend(self.b.clone());
        v
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // y = x W^T + b: dx = dy W, dW = dy^T x, db = column sums of dy.
        let gx = self
            .x
            .is_tracked()
            .then(|| matmul_raw(grad, &self.w, false, false, None))
            .transpose()?;
        let gw = self
            .w
            .is_tracked()
            .then(|| matmul_raw(grad, &self.x, true, false, None))
            .transpose()?;
        let mut out = vec![gx, gw];
        if let Some(b) = &self.b {
            // Backward runs under no_grad, so sum_dim records nothing.
            out.push(b.is_tracked().then(|| grad.sum_dim(0)).transpose()?);
        }
        Ok(out)
    }
}

/// CPU references: plain loops with f64 accumulation.
pub mod cpu {
    /// op(A) @ op(B) per batch. `a` holds `batch` matrices [m, k] ([k, m] when `trans_a`),
    /// `b` holds [k, n] ([n, k] when `trans_b`); returns `batch` matrices [m, n].
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        a: &[f32],
        b: &[f32],
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        trans_a: bool,
        trans_b: bool,
    ) -> Vec<f32> {
        let mut c = vec![0f32; batch * m * n];
        for bt in 0..batch {
            let (a, b) = (&a[bt * m * k..], &b[bt * k * n..]);
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0f64;
                    for l in 0..k {
                        let av = if trans_a { a[l * m + i] } else { a[i * k + l] };
                        let bv = if trans_b { b[j * k + l] } else { b[l * n + j] };
                        s += f64::from(av) * f64::from(bv);
                    }
                    c[(bt * m + i) * n + j] = s as f32;
                }
            }
        }
        c
    }

    /// Gradients of C = op(A) @ op(B) given dC [batch, m, n], in the operands' stored
    /// layouts: (dA, dB). Arguments as in [`matmul`].
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_backward(
        a: &[f32],
        b: &[f32],
        gc: &[f32],
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        trans_a: bool,
        trans_b: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        // d op(A) = dC op(B)^T, d op(B) = op(A)^T dC, transposed back for a transposed operand.
        let ga = if trans_a {
            matmul(b, gc, batch, k, n, m, trans_b, true)
        } else {
            matmul(gc, b, batch, m, n, k, false, !trans_b)
        };
        let gb = if trans_b {
            matmul(gc, a, batch, n, m, k, true, trans_a)
        } else {
            matmul(a, gc, batch, k, m, n, !trans_a, false)
        };
        (ga, gb)
    }

    /// y = x W^T + b with x [rows, inp], W [out, inp], b [out]; y is [rows, out].
    pub fn linear(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        rows: usize,
        inp: usize,
        out: usize,
    ) -> Vec<f32> {
        let mut y = matmul(x, w, 1, rows, inp, out, false, true);
        if let Some(bias) = bias {
            for row in y.chunks_mut(out) {
                for (v, &bv) in row.iter_mut().zip(bias) {
                    *v += bv;
                }
            }
        }
        y
    }

    /// Gradients of [`linear`] given dy [rows, out]: (dx [rows, inp], dW [out, inp], db [out]).
    pub fn linear_backward(
        x: &[f32],
        w: &[f32],
        gy: &[f32],
        rows: usize,
        inp: usize,
        out: usize,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let gx = matmul(gy, w, 1, rows, out, inp, false, false);
        let gw = matmul(gy, x, 1, out, rows, inp, true, false);
        let gb = (0..out)
            .map(|j| (0..rows).map(|i| f64::from(gy[i * out + j])).sum::<f64>() as f32)
            .collect();
        (gx, gw, gb)
    }
}

#[cfg(test)]
mod tests {
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
