//! The matmul kernel of the CPU-driver kernel set (`shaders/matmul_subgroup.wgsl`): lanes
//! share blocks of rows, both operands read as texels.

use super::Dims;
use crate::error::{Result, ensure_shape};
use crate::gpu::CpuSubgroup;
use crate::kernel::{Params, kernels};
use crate::tensor::Tensor;

kernels!("matmul_subgroup.wgsl";
    MATMUL_SG = "matmul_sg" [T, T, R, W],
    MATMUL_SG_LVEC = "matmul_sg" [T, T, R, W] (L_VEC = 1),
);

/// Row blocks (each broadcast from `CpuSubgroup::lanes` lanes) and columns (4 per lane)
/// per workgroup of `matmul_sg`.
const SG_BLOCKS: usize = 4;
const SG_COLS: usize = 256;

/// op(A) @ op(B) (+ bias) with the subgroup kernel, putting the larger of M and N on the
/// lanes (computing C^T = op(B)^T op(A)^T through strides when that wastes less). Both
/// operands are texel operands; `None` where they do not fit.
pub(super) fn product(
    s: CpuSubgroup,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    d: Dims,
) -> Result<Option<Tensor>> {
    if !a.gpu().texels_fit(&[a, b]) {
        return Ok(None);
    }
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
    let sg_rows = SG_BLOCKS * s.lanes as usize;
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
    let kernel = if l_vec { &MATMUL_SG_LVEC } else { &MATMUL_SG };
    let bias_buf = bias.map_or(a.buf(), Tensor::buf);
    a.gpu().dispatch_texels(
        kernel,
        &p.0,
        &[r, l],
        &[bias_buf, c.buf()],
        groups.map(|g| g as u32),
    )?;
    Ok(Some(c))
}
