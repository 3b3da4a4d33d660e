//! CPU references of the matmul kernels: plain loops with f64 accumulation.

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
