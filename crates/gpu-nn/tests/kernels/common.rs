//! Shared test helpers: one device per test binary, a seeded RNG, comparisons, finite
//! differences.

#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::OnceLock;

use gpu_nn::{Gpu, GpuOptions, KernelSet, Tensor};

thread_local! {
    /// Device that [`gpu`] returns on this thread instead of the shared one.
    static OVERRIDE: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

/// One device for the whole test binary (creating one on lavapipe is slow). Tests that count
/// allocations or dispatches make their own with [`fresh_gpu`].
pub fn gpu() -> Gpu {
    if let Some(g) = OVERRIDE.with(|o| o.borrow().clone()) {
        return g;
    }
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(fresh_gpu).clone()
}

/// A device that runs the kernels as GPUs do: the portable kernels (no subgroups), operands
/// read from their buffers (no operand textures). Shared by the tests that run the kernel
/// comparisons a second time on it.
pub fn portable_gpu() -> Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        gpu_with(GpuOptions {
            kernels: Some(KernelSet::Portable),
            ..GpuOptions::default()
        })
    })
    .clone()
}

/// A device that runs the subgroup kernels as SwiftShader does: blocks of 4 rows (on
/// lavapipe's 8-lane subgroups, lanes 4..7 repeat lanes 0..3 for other columns), reading
/// their operands from the buffers instead of operand textures.
#[cfg(feature = "cpu-drivers")]
pub fn four_lane_gpu() -> Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        gpu_with(GpuOptions {
            kernels: Some(KernelSet::CpuSubgroup(gpu_nn::CpuSubgroup {
                lanes: 4,
                textures: false,
            })),
            ..GpuOptions::default()
        })
    })
    .clone()
}

fn gpu_with(opts: GpuOptions) -> Gpu {
    match pollster::block_on(Gpu::with_options(opts)) {
        Ok(g) => g,
        Err(e) => panic!("tests need a GPU adapter (lavapipe in CI): {e}"),
    }
}

/// Runs `f` with [`gpu`] returning `g` on this thread (tests run each on their own thread).
pub fn with_gpu(g: Gpu, f: impl FnOnce()) {
    OVERRIDE.with(|o| *o.borrow_mut() = Some(g));
    f();
    OVERRIDE.with(|o| *o.borrow_mut() = None);
}

/// A new device. Panics with wgpu's reason when none is found: the tests are meant to run on
/// a real adapter (lavapipe in CI), never to pass silently without one.
pub fn fresh_gpu() -> Gpu {
    gpu_with(GpuOptions::default())
}

/// Deterministic xorshift RNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() as f32 / 4_294_967_296.0) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
    /// Values whose absolute value is at least `gap` (keeps finite differences off kinks).
    pub fn vec_away_from_zero(&mut self, n: usize, gap: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let v = self.uniform();
                v.signum() * (v.abs() + gap)
            })
            .collect()
    }
}

pub fn upload(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(&gpu(), data, shape).expect("upload")
}

pub fn param(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::parameter(&gpu(), data, shape).expect("upload")
}

pub fn read(t: &Tensor) -> Vec<f32> {
    t.to_vec_blocking().expect("readback")
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise; reports the worst element.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: non-finite value {g} at {i}");
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(
        worst.1 <= 0.0,
        "{what}: element {i} is {} but should be {} (atol {atol}, rtol {rtol})",
        got[i],
        want[i]
    );
}

/// Finite-difference check of an analytic gradient. `loss` maps inputs to a scalar computed
/// by the CPU reference; `grad` is the reference's analytic gradient of that scalar.
/// Central differences in f32 with step `eps`: error O(eps^2) plus rounding O(1e-7/eps).
#[track_caller]
pub fn fd_check(
    loss: impl Fn(&[f32]) -> f64,
    x: &[f32],
    grad: &[f32],
    eps: f32,
    tol: f32,
    what: &str,
) {
    let mut xp = x.to_vec();
    let scale = grad.iter().fold(1e-3f32, |m, g| m.max(g.abs()));
    for i in 0..x.len() {
        xp[i] = x[i] + eps;
        let up = loss(&xp);
        xp[i] = x[i] - eps;
        let down = loss(&xp);
        xp[i] = x[i];
        let num = ((up - down) / (2.0 * f64::from(eps))) as f32;
        assert!(
            (num - grad[i]).abs() <= tol * scale,
            "{what}: d/dx[{i}] analytic {} vs numeric {num} (tol {tol} x {scale})",
            grad[i]
        );
    }
}

/// sum(y * r) in f64: the scalar whose gradient w.r.t. y is r.
pub fn dot(y: &[f32], r: &[f32]) -> f64 {
    y.iter()
        .zip(r)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

/// (lanes, operand textures) of the CPU-driver kernels where `g` runs them.
pub fn cpu_subgroup(g: &Gpu) -> Option<(u32, bool)> {
    match g.kernel_set() {
        #[cfg(feature = "cpu-drivers")]
        KernelSet::CpuSubgroup(s) => Some((s.lanes, s.textures)),
        _ => None,
    }
}
