//! 2-D convolution and transposed convolution, NCHW, with PyTorch's semantics (stride,
//! padding, dilation and groups as (h, w) pairs; non-square kernels).
//!
//! Here: the API, geometry and shape checks, the backward rules and which kernel runs.
//! `portable.rs` holds the kernels every device runs, `cpu_subgroup.rs` those of the
//! CPU-driver kernel set (`cpu-drivers` feature), `cpu.rs` the CPU references.
//!
//! Three GEMM-shaped launches do all the work: conv2d's forward, its input gradient and its
//! weight gradient. `conv_transpose2d` is composed from the same three: its forward is
//! conv2d's input gradient, its input gradient is conv2d's forward and its weight gradient
//! is conv2d's weight gradient with input and output gradient swapped.

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape, shape_err};
use crate::kernel::Params;
use crate::tensor::Tensor;
use crate::trace::{Op, with_bias};

pub mod cpu;
#[cfg(feature = "cpu-drivers")]
mod cpu_subgroup;
mod portable;

/// K step of the GEMM kernels: split-K slices of the weight gradient are multiples of it.
const TILE_K: usize = 16;

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

/// Grid with `rows` x `cols` outputs per workgroup for an `m` x `n` GEMM and `z` slices,
/// checked against WebGPU's per-dimension limit.
fn grid(
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

/// The weight gradient of `g`, by a kernel that covers it in `tiles` workgroups. Small
/// outputs with long sums (early layers: few channels, many pixels) leave most of the GPU
/// idle, so K is split into slices (aiming at ~128 workgroups, at least 256 terms per
/// slice) that a second kernel sums. `record(out, splits, kchunk)` records the kernel
/// writing `out`: the gradient itself, or `splits` partial slices of `kchunk` terms.
fn split_k(
    x: &Tensor,
    g: &Geom,
    tiles: usize,
    record: impl FnOnce(&wgpu::Buffer, usize, usize) -> Result<()>,
) -> Result<Tensor> {
    const OP: &str = "conv2d backward (weight)";
    let dw = Tensor::uninit(x.gpu(), OP, &g.w_shape())?;
    let k = g.n * g.ho * g.wo;
    let max_by_k = k.div_ceil(256).max(1);
    let splits = 128usize.div_ceil(tiles).min(max_by_k).clamp(1, 64);
    let kchunk = k.div_ceil(splits).div_ceil(TILE_K) * TILE_K;
    let splits = k.div_ceil(kchunk);
    if splits == 1 {
        record(dw.buf(), 1, kchunk)?;
        return Ok(dw);
    }
    let part = Tensor::uninit(x.gpu(), OP, &[splits, dw.numel()])?;
    record(part.buf(), splits, kchunk)?;
    portable::sum_splits(&part, &dw, g, splits, kchunk);
    Ok(dw)
}

/// y = conv(x, w) + b for geometry `g`.
fn fwd_raw(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    #[cfg(feature = "cpu-drivers")]
    if let Some(s) = x.gpu().cpu_subgroup()
        && let Some(y) = cpu_subgroup::fwd(s, x, w, b, g)?
    {
        return Ok(y);
    }
    portable::fwd(x, w, b, g)
}

/// dx = conv2d input gradient of `gy` (shape y) for geometry `g`, plus an optional bias per
/// input channel (conv_transpose2d's forward). Strided layers take a GEMM and `col2im`
/// (see `portable::dgrad_by_gemm`) on every device.
fn dgrad_raw(gy: &Tensor, w: &Tensor, b: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    if portable::dgrad_by_gemm(g, gy.gpu().max_binding_bytes()) {
        return portable::dgrad_gemm(gy, w, b, g);
    }
    #[cfg(feature = "cpu-drivers")]
    if let Some(s) = gy.gpu().cpu_subgroup()
        && let Some(dx) = cpu_subgroup::dgrad(s, gy, w, b, g)?
    {
        return Ok(dx);
    }
    portable::dgrad(gy, w, b, g)
}

/// dw = conv2d weight gradient for input `x` (shape x) and output gradient `gy` (shape y).
fn wgrad_raw(x: &Tensor, gy: &Tensor, g: &Geom) -> Result<Tensor> {
    #[cfg(feature = "cpu-drivers")]
    if let Some(s) = x.gpu().cpu_subgroup()
        && let Some(dw) = cpu_subgroup::wgrad(s, x, gy, g)?
    {
        return Ok(dw);
    }
    portable::wgrad(x, gy, g)
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
    portable::naive(x, w, b, &g)
}

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
                Some(portable::bias_grad(grad, &gt)?)
            } else {
                Some(portable::bias_grad(grad, g)?)
            });
        }
        Ok(out)
    }
}
