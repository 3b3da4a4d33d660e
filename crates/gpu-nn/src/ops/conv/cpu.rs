//! CPU references of the conv kernels: direct loops with f64 accumulation. Shapes are
//! passed explicitly (`[n, c, h, w]` for activations, PyTorch's layouts for weights).

use super::{Conv2dOpts, ConvTranspose2dOpts};

/// `conv_pack_w`: `blocks` blocks of [rows][taps] to [taps][padded], rows from `rows` on
/// zero (weights, or gy with pixels for taps).
pub fn pack_weights(w: &[f32], blocks: usize, rows: usize, taps: usize, padded: usize) -> Vec<f32> {
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
                                let iw =
                                    (ow * stride.1 + kj * dilation.1) as isize - padding.1 as isize;
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
