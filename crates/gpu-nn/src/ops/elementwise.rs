//! Elementwise ops: activations, affine maps, add/sub/mul (residual connections).
//! Binary ops take equal shapes; broadcasting lives in the ops that need it (bias, batch norm).

use crate::autograd::BackwardOp;
use crate::error::{Result, ensure_shape};
use crate::kernel::{Kernel, Params, groups, kernels};
use crate::tensor::Tensor;
use crate::trace::Op;

kernels!("elementwise.wgsl";
    FILL = "fill" [W],
    UNARY_FWD = "unary_fwd" [T, W],
    UNARY_BWD = "unary_bwd" [T, T, T, W],
    BINARY = "binary" [T, T, W],
);

/// A unary elementwise function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// max(x, 0)
    Relu,
    /// x if x > 0 else slope * x
    LeakyRelu(f32),
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh(x)
    Tanh,
    /// scale * x + shift
    Affine(f32, f32),
    /// e^x
    Exp,
    /// x^2
    Square,
}

impl Unary {
    fn code(self) -> (usize, f32, f32) {
        match self {
            Unary::Relu => (0, 0.0, 0.0),
            Unary::LeakyRelu(a) => (1, a, 0.0),
            Unary::Sigmoid => (2, 0.0, 0.0),
            Unary::Tanh => (3, 0.0, 0.0),
            Unary::Affine(a, b) => (4, a, b),
            Unary::Exp => (5, 0.0, 0.0),
            Unary::Square => (6, 0.0, 0.0),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unary::Relu => "relu",
            Unary::LeakyRelu(_) => "leaky_relu",
            Unary::Sigmoid => "sigmoid",
            Unary::Tanh => "tanh",
            Unary::Affine(..) => "affine",
            Unary::Exp => "exp",
            Unary::Square => "square",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Binary {
    Add,
    Sub,
    Mul,
    /// alpha * a + beta * b
    Axpby(f32, f32),
}

pub(crate) fn fill(t: &Tensor, value: f32) {
    let n4 = t.numel().div_ceil(4);
    let p = Params::new().u(n4).u(0).f(value).f(0.0);
    t.gpu().dispatch(&FILL, &p.0, &[t.buf()], groups(n4, 256));
}

/// Runs an elementwise kernel over the vec4s of `out`, `inputs` read as texel operands.
fn elementwise(kernel: &Kernel, p: &Params, inputs: &[&Tensor], out: &Tensor) -> Result<()> {
    let grid = groups(out.numel().div_ceil(4), 256);
    out.gpu()
        .dispatch_texels(kernel, &p.0, inputs, &[out.buf()], grid)
}

fn unary_raw(x: &Tensor, f: Unary) -> Result<Tensor> {
    let y = Tensor::uninit(x.gpu(), f.name(), x.shape())?;
    let (op, a, b) = f.code();
    let n4 = x.numel().div_ceil(4);
    let p = Params::new().u(n4).u(op).f(a).f(b);
    elementwise(&UNARY_FWD, &p, &[x], &y)?;
    Ok(y)
}

fn binary_raw(a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
    let name = match op {
        Binary::Add => "add",
        Binary::Sub => "sub",
        Binary::Mul => "mul",
        Binary::Axpby(..) => "axpby",
    };
    ensure_shape!(
        a.shape() == b.shape(),
        name,
        "shapes {:?} and {:?} differ",
        a.shape(),
        b.shape()
    );
    let out = Tensor::uninit(a.gpu(), name, a.shape())?;
    let (code, al, be) = match op {
        Binary::Add => (0, 0.0, 0.0),
        Binary::Sub => (1, 0.0, 0.0),
        Binary::Mul => (2, 0.0, 0.0),
        Binary::Axpby(x, y) => (3, x, y),
    };
    let n4 = a.numel().div_ceil(4);
    let p = Params::new().u(n4).u(code).f(al).f(be);
    elementwise(&BINARY, &p, &[a, b], &out)?;
    Ok(out)
}

impl Tensor {
    /// Applies a unary function elementwise.
    pub fn unary(&self, f: Unary) -> Result<Tensor> {
        Ok(unary_raw(self, f)?
            .with_op(UnaryOp { x: self.clone(), f })
            .traced(|| Op::Unary(f), &[self]))
    }

    /// max(x, 0)
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(Unary::Relu)
    }

    /// Leaky ReLU with the given negative slope.
    pub fn leaky_relu(&self, slope: f32) -> Result<Tensor> {
        self.unary(Unary::LeakyRelu(slope))
    }

    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(Unary::Sigmoid)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(Unary::Tanh)
    }

    /// scale * x
    pub fn scale(&self, scale: f32) -> Result<Tensor> {
        self.unary(Unary::Affine(scale, 0.0))
    }

    /// Elementwise sum (residual connections). Shapes must match.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        let y = binary_raw(self, other, Binary::Add)?.with_op(BinaryOp {
            a: self.clone(),
            b: other.clone(),
            op: Binary::Add,
        });
        Ok(y.traced(|| Op::Add, &[self, other]))
    }

    /// Elementwise difference. Shapes must match.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        let y = binary_raw(self, other, Binary::Sub)?.with_op(BinaryOp {
            a: self.clone(),
            b: other.clone(),
            op: Binary::Sub,
        });
        Ok(y.traced(|| Op::Sub, &[self, other]))
    }

    /// Elementwise product. Shapes must match.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        let y = binary_raw(self, other, Binary::Mul)?.with_op(BinaryOp {
            a: self.clone(),
            b: other.clone(),
            op: Binary::Mul,
        });
        Ok(y.traced(|| Op::Mul, &[self, other]))
    }

    /// alpha * self + beta * other. Shapes must match.
    pub fn axpby(&self, alpha: f32, other: &Tensor, beta: f32) -> Result<Tensor> {
        let op = Binary::Axpby(alpha, beta);
        let y = binary_raw(self, other, op)?.with_op(BinaryOp {
            a: self.clone(),
            b: other.clone(),
            op,
        });
        Ok(y.traced(|| Op::Axpby(alpha, beta), &[self, other]))
    }
}

struct UnaryOp {
    x: Tensor,
    f: Unary,
}

impl BackwardOp for UnaryOp {
    fn name(&self) -> &'static str {
        self.f.name()
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let gx = Tensor::uninit(grad.gpu(), "unary backward", grad.shape())?;
        let (op, a, b) = self.f.code();
        let n4 = grad.numel().div_ceil(4);
        let p = Params::new().u(n4).u(op).f(a).f(b);
        elementwise(&UNARY_BWD, &p, &[&self.x, out, grad], &gx)?;
        Ok(vec![Some(gx)])
    }
}

struct BinaryOp {
    a: Tensor,
    b: Tensor,
    op: Binary,
}

impl BackwardOp for BinaryOp {
    fn name(&self) -> &'static str {
        "binary"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.a.clone(), self.b.clone()]
    }
    fn backward(&self, _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (ga, gb) = match self.op {
            Binary::Add => (grad.clone(), grad.clone()),
            Binary::Sub => (grad.clone(), unary_raw(grad, Unary::Affine(-1.0, 0.0))?),
            Binary::Mul => (
                binary_raw(grad, &self.b, Binary::Mul)?,
                binary_raw(grad, &self.a, Binary::Mul)?,
            ),
            Binary::Axpby(x, y) => (
                unary_raw(grad, Unary::Affine(x, 0.0))?,
                unary_raw(grad, Unary::Affine(y, 0.0))?,
            ),
        };
        Ok(vec![Some(ga), Some(gb)])
    }
}

/// CPU references for the kernels above.
pub mod cpu {
    use super::Unary;

    /// A binary elementwise op as the `binary` kernel computes it.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum BinaryKind {
        /// a + b
        Add,
        /// a - b
        Sub,
        /// a * b
        Mul,
        /// alpha * a + beta * b
        Axpby(f32, f32),
    }

    /// Forward of a binary op over equal-length slices.
    pub fn binary(op: BinaryKind, a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| match op {
                BinaryKind::Add => x + y,
                BinaryKind::Sub => x - y,
                BinaryKind::Mul => x * y,
                BinaryKind::Axpby(al, be) => al * x + be * y,
            })
            .collect()
    }

    /// Backward of a binary op: (d/da, d/db) given the output gradient `g`.
    pub fn binary_bwd(op: BinaryKind, a: &[f32], b: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let n = g.len();
        let (mut ga, mut gb) = (vec![0f32; n], vec![0f32; n]);
        for i in 0..n {
            (ga[i], gb[i]) = match op {
                BinaryKind::Add => (g[i], g[i]),
                BinaryKind::Sub => (g[i], -g[i]),
                BinaryKind::Mul => (g[i] * b[i], g[i] * a[i]),
                BinaryKind::Axpby(al, be) => (al * g[i], be * g[i]),
            };
        }
        (ga, gb)
    }

    /// f(x) for one value, as the kernel computes it.
    pub fn unary(f: Unary, x: f32) -> f32 {
        match f {
            Unary::Relu => x.max(0.0),
            Unary::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Tanh => x.tanh(),
            Unary::Affine(a, b) => a * x + b,
            Unary::Exp => x.exp(),
            Unary::Square => x * x,
        }
    }

    /// f'(x) for one value, as the kernel's backward computes it.
    pub fn unary_grad(f: Unary, x: f32) -> f32 {
        let y = unary(f, x);
        match f {
            Unary::Relu => f32::from(x > 0.0),
            Unary::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Unary::Sigmoid => y * (1.0 - y),
            Unary::Tanh => 1.0 - y * y,
            Unary::Affine(a, _) => a,
            Unary::Exp => y,
            Unary::Square => 2.0 * x,
        }
    }

    /// Forward over a slice.
    pub fn unary_fwd(f: Unary, x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| unary(f, v)).collect()
    }

    /// Backward over a slice: gx = gy * f'(x).
    pub fn unary_bwd(f: Unary, x: &[f32], gy: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(gy)
            .map(|(&v, &g)| g * unary_grad(f, v))
            .collect()
    }
}
