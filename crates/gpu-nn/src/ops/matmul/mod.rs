//! Matrix products: [`Tensor::matmul`] (plain and batched) and [`linear`] (PyTorch's
//! `nn.Linear` layout, bias fused). One kernel serves every product with optional transposes
//! of either operand, so backward passes need no transpose kernel.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::tensor::Tensor;
use crate::trace::{Op, with_bias};

pub mod cpu;
#[cfg(feature = "cpu-drivers")]
mod cpu_subgroup;
mod portable;

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
    #[cfg(feature = "cpu-drivers")]
    if let Some(s) = a.gpu().cpu_subgroup()
        && let Some(c) = cpu_subgroup::product(s, a, b, bias, d)?
    {
        return Ok(c);
    }
    portable::product(a, b, bias, d)
}

/// A @ B with the one-output-per-invocation kernel, untracked: the benchmark's reference.
#[doc(hidden)]
pub fn matmul_naive(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = dims("matmul_naive", a, b, false, false, None)?;
    portable::naive(a, b, d)
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
