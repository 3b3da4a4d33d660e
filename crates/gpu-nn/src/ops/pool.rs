//! 2-D pooling over NCHW tensors with PyTorch's semantics: max pooling (argmax, dilation,
//! ceil mode), average pooling (count_include_pad, ceil-mode divisor clipping), adaptive
//! average pooling and global average pooling. Backward passes gather, per input element,
//! over the output windows that can contain it: deterministic, no atomics.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Params, groups, kernels};
use crate::tensor::Tensor;
use crate::trace::Op;

kernels!("pool.wgsl";
    MAX_FWD = "max_fwd" [R, W, W],
    MAX_BWD = "max_bwd" [R, R, W],
    MAX_TILED_FWD = "max_tiled_fwd" [R, W, W],
    MAX_TILED_BWD = "max_tiled_bwd" [R, R, W],
    AVG_FWD = "avg_fwd" [R, W],
    AVG_BWD = "avg_bwd" [R, W],
    ADAPTIVE_FWD = "adaptive_fwd" [R, W],
    ADAPTIVE_BWD = "adaptive_bwd" [R, W],
);

/// Argmax indices are stored as f32, exact only below 2^24.
const MAX_PLANE: usize = 1 << 24;

/// Options of [`max_pool2d`], PyTorch's `nn.MaxPool2d` arguments as (height, width) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dOpts {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows (PyTorch's default: the kernel).
    pub stride: (usize, usize),
    /// Implicit -inf padding on each side; at most half the kernel.
    pub padding: (usize, usize),
    /// Spacing between window taps.
    pub dilation: (usize, usize),
    /// Rounds the output size up, keeping a last window that starts inside the input or
    /// the left padding.
    pub ceil_mode: bool,
}

impl MaxPool2dOpts {
    /// A k x k window with PyTorch's defaults: stride k, no padding, dilation 1, floor mode.
    pub fn new(k: usize) -> Self {
        Self::rect(k, k)
    }

    /// A kh x kw window with PyTorch's defaults.
    pub fn rect(kh: usize, kw: usize) -> Self {
        Self {
            kernel: (kh, kw),
            stride: (kh, kw),
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, s: (usize, usize)) -> Self {
        self.stride = s;
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, p: (usize, usize)) -> Self {
        self.padding = p;
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, d: (usize, usize)) -> Self {
        self.dilation = d;
        self
    }

    /// Sets ceil mode.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }

    /// Output (height, width) for an input of (h, w), or the error `max_pool2d` would give.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        self.geom(&[1, 1, h, w]).map(|g| (g.oh, g.ow))
    }

    fn geom(&self, shape: &[usize]) -> Result<Geom> {
        let g = Geom::new(
            "max_pool2d",
            shape,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
        )?;
        ensure_shape!(
            g.h * g.w < MAX_PLANE,
            "max_pool2d",
            "input plane {}x{} has 2^24 or more elements; argmax indices would not be exact",
            g.h,
            g.w
        );
        Ok(g)
    }
}

/// Options of [`avg_pool2d`], PyTorch's `nn.AvgPool2d` arguments as (height, width) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2dOpts {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows (PyTorch's default: the kernel).
    pub stride: (usize, usize),
    /// Implicit zero padding on each side; at most half the kernel.
    pub padding: (usize, usize),
    /// Rounds the output size up, keeping a last window that starts inside the input or
    /// the left padding.
    pub ceil_mode: bool,
    /// Divides by the window size including padding (PyTorch's default, true) rather than
    /// by the number of input elements in the window.
    pub count_include_pad: bool,
}

impl AvgPool2dOpts {
    /// A k x k window with PyTorch's defaults: stride k, no padding, floor mode,
    /// count_include_pad.
    pub fn new(k: usize) -> Self {
        Self::rect(k, k)
    }

    /// A kh x kw window with PyTorch's defaults.
    pub fn rect(kh: usize, kw: usize) -> Self {
        Self {
            kernel: (kh, kw),
            stride: (kh, kw),
            padding: (0, 0),
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, s: (usize, usize)) -> Self {
        self.stride = s;
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, p: (usize, usize)) -> Self {
        self.padding = p;
        self
    }

    /// Sets ceil mode.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }

    /// Sets count_include_pad.
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }

    /// Output (height, width) for an input of (h, w), or the error `avg_pool2d` would give.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        self.geom(&[1, 1, h, w]).map(|g| (g.oh, g.ow))
    }

    fn geom(&self, shape: &[usize]) -> Result<Geom> {
        let mut g = Geom::new(
            "avg_pool2d",
            shape,
            self.kernel,
            self.stride,
            self.padding,
            (1, 1),
            self.ceil_mode,
        )?;
        g.include_pad = self.count_include_pad;
        Ok(g)
    }
}

/// PyTorch's `pooling_output_shape`: the number of windows along one axis, or `None` when
/// it would be zero or negative. With `ceil_mode` the size is rounded up, then the last
/// window is dropped unless it starts inside the input or the left padding.
pub fn pool_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let (i, k, s, p, d) = (
        input as i64,
        kernel as i64,
        stride as i64,
        pad as i64,
        dilation as i64,
    );
    let round_up = if ceil_mode { s - 1 } else { 0 };
    let mut out = (i + 2 * p - d * (k - 1) - 1 + round_up).div_euclid(s) + 1;
    if ceil_mode && (out - 1) * s >= i + p {
        out -= 1;
    }
    usize::try_from(out).ok().filter(|&o| o >= 1)
}

/// Checked geometry of one pooling call.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    d: (usize, usize),
    include_pad: bool,
}

impl Geom {
    fn new(
        op: &'static str,
        shape: &[usize],
        k: (usize, usize),
        s: (usize, usize),
        p: (usize, usize),
        d: (usize, usize),
        ceil_mode: bool,
    ) -> Result<Self> {
        let [n, c, h, w] = four_d(op, shape)?;
        ensure_shape!(
            k.0 > 0 && k.1 > 0 && s.0 > 0 && s.1 > 0 && d.0 > 0 && d.1 > 0,
            op,
            "kernel {k:?}, stride {s:?} and dilation {d:?} must be positive"
        );
        ensure_shape!(
            p.0 <= k.0 / 2 && p.1 <= k.1 / 2,
            op,
            "padding {p:?} must be at most half the kernel {k:?}"
        );
        let oh = pool_output_size(h, k.0, s.0, p.0, d.0, ceil_mode);
        let ow = pool_output_size(w, k.1, s.1, p.1, d.1, ceil_mode);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(crate::error::shape_err(
                op,
                format!(
                    "input {shape:?} with kernel {k:?}, stride {s:?}, padding {p:?}, dilation \
                     {d:?}, ceil_mode {ceil_mode} gives an empty output (output size too small)"
                ),
            ));
        };
        Ok(Self {
            n,
            c,
            h,
            w,
            oh,
            ow,
            k,
            s,
            p,
            d,
            include_pad: false,
        })
    }

    fn adaptive(shape: &[usize], out: (usize, usize)) -> Result<Self> {
        let op = "adaptive_avg_pool2d";
        let [n, c, h, w] = four_d(op, shape)?;
        ensure_shape!(
            out.0 > 0 && out.1 > 0,
            op,
            "output size {out:?} must be positive (input {shape:?})"
        );
        Ok(Self {
            n,
            c,
            h,
            w,
            oh: out.0,
            ow: out.1,
            k: (1, 1),
            s: (1, 1),
            p: (0, 0),
            d: (1, 1),
            include_pad: false,
        })
    }

    fn in_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh, self.ow]
    }

    /// Uniform params (layout of `Params` in pool.wgsl) for `threads` invocations.
    /// Whether max windows tile each plane exactly (stride = kernel, no padding or
    /// dilation, no partial window), so the `max_tiled_*` kernels apply.
    fn tiles(&self) -> bool {
        self.s == self.k
            && self.p == (0, 0)
            && self.d == (1, 1)
            && self.h == self.oh * self.k.0
            && self.w == self.ow * self.k.1
    }

    fn params(&self, threads: usize) -> Params {
        Params::new()
            .u(threads)
            .u(self.h)
            .u(self.w)
            .u(self.oh)
            .u(self.ow)
            .u(self.k.0)
            .u(self.k.1)
            .u(self.s.0)
            .u(self.s.1)
            .u(self.p.0)
            .u(self.p.1)
            .u(self.d.0)
            .u(self.d.1)
            .u(usize::from(self.include_pad))
            .f(f32::NEG_INFINITY)
    }
}

fn four_d(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    match shape {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(crate::error::shape_err(
            op,
            format!("expects a 4-D [N, C, H, W] input, got {shape:?}"),
        )),
    }
}

/// Which forward ran, for the shared backward op.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Avg,
    Adaptive,
}

fn max_fwd_raw(x: &Tensor, g: &Geom) -> Result<(Tensor, Tensor)> {
    let out = g.out_shape();
    let y = Tensor::uninit(x.gpu(), "max_pool2d", &out)?;
    let idx = Tensor::uninit(x.gpu(), "max_pool2d indices", &out)?;
    let n = y.numel();
    x.gpu().dispatch(
        if g.tiles() { &MAX_TILED_FWD } else { &MAX_FWD },
        &g.params(n).0,
        &[x.buf(), y.buf(), idx.buf()],
        groups(n, 256),
    );
    Ok((y, idx))
}

fn mean_fwd_raw(x: &Tensor, g: &Geom, kind: Kind) -> Result<Tensor> {
    let (name, k) = match kind {
        Kind::Avg => ("avg_pool2d", &AVG_FWD),
        Kind::Adaptive => ("adaptive_avg_pool2d", &ADAPTIVE_FWD),
    };
    let y = Tensor::uninit(x.gpu(), name, &g.out_shape())?;
    let n = y.numel();
    x.gpu()
        .dispatch(k, &g.params(n).0, &[x.buf(), y.buf()], groups(n, 256));
    Ok(y)
}

/// Max pooling over each H x W plane of an [N, C, H, W] tensor.
pub fn max_pool2d(x: &Tensor, opts: MaxPool2dOpts) -> Result<Tensor> {
    max_pool2d_with_indices(x, opts).map(|(y, _)| y)
}

/// Max pooling that also returns the argmax of each window as an untracked f32 tensor of
/// the output's shape: the flat index within the H x W input plane (PyTorch's
/// `return_indices`). Ties go to the first maximum in scan order; a NaN is the maximum (the
/// last NaN's index is kept, as PyTorch does). A window whose taps all fall in the padding
/// (possible with large dilation) gives -inf and index -1.
pub fn max_pool2d_with_indices(x: &Tensor, opts: MaxPool2dOpts) -> Result<(Tensor, Tensor)> {
    let g = opts.geom(x.shape())?;
    let (y, idx) = max_fwd_raw(x, &g)?;
    let y = y.with_op(MaxPoolOp {
        x: x.clone(),
        idx: idx.clone(),
        g,
    });
    Ok((y.traced(|| Op::MaxPool2d(opts), &[x]), idx))
}

/// Average pooling over each H x W plane of an [N, C, H, W] tensor.
pub fn avg_pool2d(x: &Tensor, opts: AvgPool2dOpts) -> Result<Tensor> {
    let g = opts.geom(x.shape())?;
    let y = mean_fwd_raw(x, &g, Kind::Avg)?.with_op(MeanPoolOp {
        x: x.clone(),
        g,
        kind: Kind::Avg,
    });
    Ok(y.traced(|| Op::AvgPool2d(opts), &[x]))
}

/// Adaptive average pooling to an (oh, ow) output: output row i averages input rows
/// floor(i * H / oh) .. ceil((i + 1) * H / oh), likewise for columns.
pub fn adaptive_avg_pool2d(x: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    let g = Geom::adaptive(x.shape(), out)?;
    let y = mean_fwd_raw(x, &g, Kind::Adaptive)?.with_op(MeanPoolOp {
        x: x.clone(),
        g,
        kind: Kind::Adaptive,
    });
    Ok(y.traced(|| Op::AdaptiveAvgPool2d(out), &[x]))
}

/// Global average pooling: [N, C, H, W] -> [N, C, 1, 1].
pub fn global_avg_pool2d(x: &Tensor) -> Result<Tensor> {
    adaptive_avg_pool2d(x, (1, 1))
}

struct MaxPoolOp {
    x: Tensor,
    idx: Tensor,
    g: Geom,
}

impl BackwardOp for MaxPoolOp {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let gx = Tensor::uninit(grad.gpu(), "max_pool2d backward", &self.g.in_shape())?;
        // Tiled: one invocation per window writes all of it; else one per input element.
        let (k, n) = if self.g.tiles() {
            (&MAX_TILED_BWD, grad.numel())
        } else {
            (&MAX_BWD, gx.numel())
        };
        grad.gpu().dispatch(
            k,
            &self.g.params(n).0,
            &[grad.buf(), self.idx.buf(), gx.buf()],
            groups(n, 256),
        );
        Ok(vec![Some(gx)])
    }
}

struct MeanPoolOp {
    x: Tensor,
    g: Geom,
    kind: Kind,
}

impl BackwardOp for MeanPoolOp {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Avg => "avg_pool2d",
            Kind::Adaptive => "adaptive_avg_pool2d",
        }
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let k = match self.kind {
            Kind::Avg => &AVG_BWD,
            Kind::Adaptive => &ADAPTIVE_BWD,
        };
        let gx = Tensor::uninit(grad.gpu(), "pool backward", &self.g.in_shape())?;
        let n = gx.numel();
        grad.gpu().dispatch(
            k,
            &self.g.params(n).0,
            &[grad.buf(), gx.buf()],
            groups(n, 256),
        );
        Ok(vec![Some(gx)])
    }
}

/// CPU references, written as PyTorch's CPU kernels are: forward per output window,
/// backward as a scatter from each output (the GPU gathers instead).
pub mod cpu {
    use super::{AvgPool2dOpts, Geom, MaxPool2dOpts};
    use crate::error::{Result, ensure_shape};

    fn check_len(op: &'static str, what: &str, len: usize, want: usize) -> Result<()> {
        ensure_shape!(len == want, op, "{what} has {len} values, expected {want}");
        Ok(())
    }

    /// Window taps along one axis of a max-pool window: in-bounds rows/columns in order.
    fn taps(o: usize, s: usize, p: usize, k: usize, d: usize, n: usize) -> Vec<usize> {
        (0..k)
            .map(|j| (o * s + j * d) as i64 - p as i64)
            .filter(|&t| t >= 0 && t < n as i64)
            .map(|t| t as usize)
            .collect()
    }

    fn max_core(x: &[f32], g: &Geom) -> (Vec<f32>, Vec<f32>) {
        let planes = g.n * g.c;
        let mut y = Vec::with_capacity(planes * g.oh * g.ow);
        let mut idx = Vec::with_capacity(y.capacity());
        for pl in 0..planes {
            let xp = &x[pl * g.h * g.w..(pl + 1) * g.h * g.w];
            for oy in 0..g.oh {
                let rows = taps(oy, g.s.0, g.p.0, g.k.0, g.d.0, g.h);
                for ox in 0..g.ow {
                    let cols = taps(ox, g.s.1, g.p.1, g.k.1, g.d.1, g.w);
                    let (mut best, mut arg) = (f32::NEG_INFINITY, -1i64);
                    for &r in &rows {
                        for &c in &cols {
                            let v = xp[r * g.w + c];
                            if arg < 0 || v > best || v.is_nan() {
                                best = v;
                                arg = (r * g.w + c) as i64;
                            }
                        }
                    }
                    y.push(best);
                    idx.push(arg as f32);
                }
            }
        }
        (y, idx)
    }

    /// Max pooling forward of `x` of `shape`: (output, argmax as f32 flat plane index).
    pub fn max_pool2d(
        x: &[f32],
        shape: [usize; 4],
        opts: MaxPool2dOpts,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let g = opts.geom(&shape)?;
        check_len("max_pool2d", "input", x.len(), shape.iter().product())?;
        Ok(max_core(x, &g))
    }

    /// Max pooling backward: each output's gradient added to its argmax, in output order.
    pub fn max_pool2d_backward(
        x: &[f32],
        shape: [usize; 4],
        opts: MaxPool2dOpts,
        gy: &[f32],
    ) -> Result<Vec<f32>> {
        let g = opts.geom(&shape)?;
        check_len("max_pool2d", "input", x.len(), shape.iter().product())?;
        let (_, idx) = max_core(x, &g);
        check_len("max_pool2d backward", "gradient", gy.len(), idx.len())?;
        let plane = g.h * g.w;
        let per_out = g.oh * g.ow;
        let mut gx = vec![0f32; x.len()];
        for (o, (&i, &gv)) in idx.iter().zip(gy).enumerate() {
            if i >= 0.0 {
                gx[(o / per_out) * plane + i as usize] += gv;
            }
        }
        Ok(gx)
    }

    /// PyTorch's avg-pool window of output (oy, ox): (rows, cols, divisor).
    fn avg_window(g: &Geom, oy: usize, ox: usize) -> ((i64, i64), (i64, i64), f64) {
        let clip = |o: usize, s: usize, p: usize, k: usize, n: usize| {
            let start = (o * s) as i64 - p as i64;
            let end = (start + k as i64).min((n + p) as i64);
            (start, end)
        };
        let (hs, he) = clip(oy, g.s.0, g.p.0, g.k.0, g.h);
        let (ws, we) = clip(ox, g.s.1, g.p.1, g.k.1, g.w);
        let pool = (he - hs) * (we - ws);
        let rows = (hs.max(0), he.min(g.h as i64));
        let cols = (ws.max(0), we.min(g.w as i64));
        let inside = (rows.1 - rows.0).max(0) * (cols.1 - cols.0).max(0);
        let div = if g.include_pad { pool } else { inside };
        (rows, cols, div as f64)
    }

    /// Average pooling forward (f64 sums).
    pub fn avg_pool2d(x: &[f32], shape: [usize; 4], opts: AvgPool2dOpts) -> Result<Vec<f32>> {
        let g = opts.geom(&shape)?;
        check_len("avg_pool2d", "input", x.len(), shape.iter().product())?;
        let mut y = Vec::with_capacity(g.n * g.c * g.oh * g.ow);
        for pl in 0..g.n * g.c {
            let xp = &x[pl * g.h * g.w..(pl + 1) * g.h * g.w];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (rows, cols, div) = avg_window(&g, oy, ox);
                    let mut s = 0f64;
                    for r in rows.0..rows.1 {
                        for c in cols.0..cols.1 {
                            s += f64::from(xp[r as usize * g.w + c as usize]);
                        }
                    }
                    y.push(if rows.0 >= rows.1 || cols.0 >= cols.1 {
                        0.0
                    } else {
                        (s / div) as f32
                    });
                }
            }
        }
        Ok(y)
    }

    /// Average pooling backward: each output's gradient / divisor added to its window.
    pub fn avg_pool2d_backward(
        shape: [usize; 4],
        opts: AvgPool2dOpts,
        gy: &[f32],
    ) -> Result<Vec<f32>> {
        let g = opts.geom(&shape)?;
        check_len(
            "avg_pool2d backward",
            "gradient",
            gy.len(),
            g.n * g.c * g.oh * g.ow,
        )?;
        let plane = g.h * g.w;
        let mut gx = vec![0f64; g.n * g.c * plane];
        let mut o = 0;
        for pl in 0..g.n * g.c {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (rows, cols, div) = avg_window(&g, oy, ox);
                    let v = f64::from(gy[o]) / div;
                    o += 1;
                    for r in rows.0..rows.1 {
                        for c in cols.0..cols.1 {
                            gx[pl * plane + r as usize * g.w + c as usize] += v;
                        }
                    }
                }
            }
        }
        Ok(gx.into_iter().map(|v| v as f32).collect())
    }

    /// Adaptive window along one axis: [floor(o * n / m), ceil((o + 1) * n / m)).
    fn adaptive_range(o: usize, n: usize, m: usize) -> (usize, usize) {
        (o * n / m, ((o + 1) * n).div_ceil(m))
    }

    /// Adaptive average pooling forward to `out` = (oh, ow) (f64 sums).
    pub fn adaptive_avg_pool2d(
        x: &[f32],
        shape: [usize; 4],
        out: (usize, usize),
    ) -> Result<Vec<f32>> {
        let g = Geom::adaptive(&shape, out)?;
        check_len(
            "adaptive_avg_pool2d",
            "input",
            x.len(),
            shape.iter().product(),
        )?;
        let mut y = Vec::with_capacity(g.n * g.c * g.oh * g.ow);
        for pl in 0..g.n * g.c {
            let xp = &x[pl * g.h * g.w..(pl + 1) * g.h * g.w];
            for oy in 0..g.oh {
                let (h0, h1) = adaptive_range(oy, g.h, g.oh);
                for ox in 0..g.ow {
                    let (w0, w1) = adaptive_range(ox, g.w, g.ow);
                    let mut s = 0f64;
                    for r in h0..h1 {
                        for c in w0..w1 {
                            s += f64::from(xp[r * g.w + c]);
                        }
                    }
                    y.push((s / ((h1 - h0) * (w1 - w0)) as f64) as f32);
                }
            }
        }
        Ok(y)
    }

    /// Adaptive average pooling backward.
    pub fn adaptive_avg_pool2d_backward(
        shape: [usize; 4],
        out: (usize, usize),
        gy: &[f32],
    ) -> Result<Vec<f32>> {
        let g = Geom::adaptive(&shape, out)?;
        let op = "adaptive_avg_pool2d backward";
        check_len(op, "gradient", gy.len(), g.n * g.c * g.oh * g.ow)?;
        let plane = g.h * g.w;
        let mut gx = vec![0f64; g.n * g.c * plane];
        let mut o = 0;
        for pl in 0..g.n * g.c {
            for oy in 0..g.oh {
                let (h0, h1) = adaptive_range(oy, g.h, g.oh);
                for ox in 0..g.ow {
                    let (w0, w1) = adaptive_range(ox, g.w, g.ow);
                    let v = f64::from(gy[o]) / ((h1 - h0) * (w1 - w0)) as f64;
                    o += 1;
                    for r in h0..h1 {
                        for c in w0..w1 {
                            gx[pl * plane + r * g.w + c] += v;
                        }
                    }
                }
            }
        }
        Ok(gx.into_iter().map(|v| v as f32).collect())
    }
}
