//! Loss landscapes (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"): the
//! loss on a fixed batch along a line from the initial to the trained weights, and over a
//! plane through the trained weights spanned by two random directions normalised filter by
//! filter, batch-norm parameters and biases left out.

use anyhow::{Result, ensure};
use gpu_nn::init::SeedRng;
use gpu_nn::nn::{self, Ctx, Entry, HostState, HostTensor, Module};
use gpu_nn::{Readback, Tensor, cross_entropy};

/// Whether parameter `name` of `shape` is perturbed: conv and linear weights (filters are
/// their first dimension); biases and batch-norm parameters are not.
pub fn is_filtered(name: &str, shape: &[usize]) -> bool {
    name.ends_with("weight") && shape.len() >= 2
}

/// The names of `net`'s parameters (not its buffers or counters).
pub fn parameter_names(net: &dyn Module) -> Vec<String> {
    let mut out = Vec::new();
    net.visit("", &mut |name, e| {
        if matches!(e, Entry::Param(_)) {
            out.push(name);
        }
    });
    out
}

/// A random direction in weight space shaped like `theta`'s `params`: Gaussian, each filter
/// rescaled to the norm of the same filter of `theta`; zero for biases, batch-norm
/// parameters and every buffer.
pub fn filter_normalised_direction(theta: &HostState, params: &[String], seed: u64) -> HostState {
    let mut rng = SeedRng::new(seed);
    theta
        .iter()
        .map(|(name, t)| {
            let mut d = vec![0.0f32; t.data.len()];
            if params.contains(name) && is_filtered(name, &t.shape) {
                let per = t.data.len() / t.shape[0].max(1);
                for (dst, src) in d.chunks_mut(per).zip(t.data.chunks(per)) {
                    for v in dst.iter_mut() {
                        *v = rng.normal();
                    }
                    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    let (nd, nt) = (norm(dst), norm(src));
                    if nd > 0.0 {
                        dst.iter_mut().for_each(|v| *v *= nt / nd);
                    }
                }
            }
            (
                name.clone(),
                HostTensor {
                    shape: t.shape.clone(),
                    data: d,
                },
            )
        })
        .collect()
}

/// `base` + Σ coefficient · direction, entry by entry (directions zero where they do not
/// perturb; counters are taken from `base`).
pub fn combine(base: &HostState, dirs: &[(&HostState, f32)]) -> HostState {
    base.iter()
        .map(|(name, t)| {
            let mut data = t.data.clone();
            for (d, c) in dirs {
                if let Some(dt) = d.get(name)
                    && dt.data.len() == data.len()
                {
                    for (v, x) in data.iter_mut().zip(&dt.data) {
                        *v += c * x;
                    }
                }
            }
            (
                name.clone(),
                HostTensor {
                    shape: t.shape.clone(),
                    data,
                },
            )
        })
        .collect()
}

/// Where one landscape point lies: on the line (t) or on the plane (alpha, beta).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Point {
    /// θ0 + t (θ - θ0).
    Line(f32),
    /// θ + α d1 + β d2, at grid cell (i, j).
    Plane(usize, usize, f32, f32),
}

/// A landscape being computed: a scratch copy of the model is loaded with each point's
/// weights in turn and evaluated on a fixed batch; results come back asynchronously.
pub struct Landscape {
    scratch: Box<dyn Module>,
    x: Tensor,
    y: Tensor,
    theta: HostState,
    theta0: HostState,
    d1: HostState,
    d2: HostState,
    todo: Vec<Point>,
    pending: Vec<(Point, Readback)>,
    /// Loss along the line from the initial (t = 0) to the trained weights (t = 1).
    pub line: Vec<(f32, f32)>,
    /// Loss on the plane: `grid[j * n + i]` at (alphas[i], alphas[j]); NaN until computed.
    pub grid: Vec<f32>,
    /// The grid's coordinates along each direction.
    pub alphas: Vec<f32>,
    total: usize,
}

impl Landscape {
    /// Plans the landscape of `theta` (trained) and `theta0` (initial) for a model like
    /// `scratch` (which it overwrites), on the batch (x, y): `line` points from t = -0.25 to
    /// 1.25 and an `n` x `n` grid over [-1, 1]^2 of random directions from `seed`.
    pub fn new(
        scratch: Box<dyn Module>,
        (x, y): (Tensor, Tensor),
        theta: HostState,
        theta0: HostState,
        (line, n, seed): (usize, usize, u64),
    ) -> Result<Landscape> {
        ensure!(
            n >= 2 && line >= 2,
            "a landscape needs at least 2 points a side"
        );
        let params = parameter_names(scratch.as_ref());
        let d1 = filter_normalised_direction(&theta, &params, seed);
        let d2 = filter_normalised_direction(&theta, &params, seed.wrapping_add(1));
        let alphas: Vec<f32> = (0..n)
            .map(|i| -1.0 + 2.0 * i as f32 / (n - 1) as f32)
            .collect();
        let mut todo: Vec<Point> = (0..line)
            .map(|k| Point::Line(-0.25 + 1.5 * k as f32 / (line - 1) as f32))
            .collect();
        for j in 0..n {
            for i in 0..n {
                todo.push(Point::Plane(i, j, alphas[i], alphas[j]));
            }
        }
        // Computed from the back: the line first, then the plane row by row.
        todo.reverse();
        let total = todo.len();
        Ok(Landscape {
            scratch,
            x,
            y,
            theta,
            theta0,
            d1,
            d2,
            todo,
            pending: Vec::new(),
            line: Vec::new(),
            grid: vec![f32::NAN; n * n],
            alphas,
            total,
        })
    }

    /// The directions of the plane.
    pub fn directions(&self) -> (&HostState, &HostState) {
        (&self.d1, &self.d2)
    }

    fn weights(&self, p: Point) -> HostState {
        match p {
            // θ0 + t (θ - θ0), every entry (buffers do not matter: batch norm runs on the
            // batch's statistics here).
            Point::Line(t) => {
                let delta = combine(&self.theta, &[(&self.theta0, -1.0)]);
                combine(&self.theta0, &[(&delta, t)])
            }
            Point::Plane(_, _, a, b) => combine(&self.theta, &[(&self.d1, a), (&self.d2, b)]),
        }
    }

    /// Submits up to `k` more points (never waits).
    pub fn submit(&mut self, k: usize) -> Result<()> {
        for _ in 0..k {
            let Some(p) = self.todo.pop() else { break };
            let w = self.weights(p);
            nn::load_state(self.scratch.as_ref(), &w, true)?;
            let _g = gpu_nn::no_grad();
            // Training-mode batch norm, as Li et al. evaluate: batch statistics of the batch.
            let logits = self.scratch.forward(&self.x, &mut Ctx::train(0))?;
            let loss = cross_entropy(&logits, &self.y)?;
            self.pending.push((p, loss.read()?));
        }
        Ok(())
    }

    /// Collects the points that are back (never waits).
    pub fn poll(&mut self) -> Result<()> {
        let n = self.alphas.len();
        let mut i = 0;
        while i < self.pending.len() {
            match self.pending[i].1.try_take()? {
                Some(v) => {
                    let (p, _) = self.pending.remove(i);
                    let loss = v.first().copied().unwrap_or(f32::NAN);
                    match p {
                        Point::Line(t) => self.line.push((t, loss)),
                        Point::Plane(a, b, _, _) => self.grid[b * n + a] = loss,
                    }
                }
                None => i += 1,
            }
        }
        self.line.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(())
    }

    /// Points computed so far, and in all.
    pub fn progress(&self) -> (usize, usize) {
        (
            self.total - self.todo.len() - self.pending.len(),
            self.total,
        )
    }

    /// True once every point is back.
    pub fn done(&self) -> bool {
        self.todo.is_empty() && self.pending.is_empty()
    }

    /// Computes everything, waiting. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking(&mut self) -> Result<()> {
        while !self.done() {
            self.submit(4)?;
            if let Some((_, r)) = self.pending.first_mut() {
                let v = r.take_blocking()?;
                let (p, _) = self.pending.remove(0);
                let n = self.alphas.len();
                let loss = v.first().copied().unwrap_or(f32::NAN);
                match p {
                    Point::Line(t) => self.line.push((t, loss)),
                    Point::Plane(a, b, _, _) => self.grid[b * n + a] = loss,
                }
            }
            self.poll()?;
        }
        Ok(())
    }
}
