//! A fast ratio check for kernel tuning (minutes, not criterion's half hour): best-of-N wall
//! time of the tiled and naive kernels measured back to back, printed as GFLOP/s and
//! tiled/naive ratios. On a shared CPU driver only the ratios mean anything.
//!
//! `cargo test -p gpu-nn --profile test --bench quick -- --nocapture --test-threads=1`

use std::time::Instant;

use gpu_nn::ops::conv::{Conv2dOpts, conv2d, conv2d_naive};
use gpu_nn::ops::matmul::matmul_naive;
use gpu_nn::{Gpu, Tensor};

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// Best wall time in seconds of `reps` runs of `f` (each followed by a sync).
fn best(gpu: &Gpu, reps: usize, mut f: impl FnMut() -> Tensor) -> f64 {
    let mut t = f64::INFINITY;
    for _ in 0..reps {
        let s = Instant::now();
        let out = f();
        gpu.sync().expect("sync");
        t = t.min(s.elapsed().as_secs_f64());
        drop(out);
    }
    t
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn matmul_ratio() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter");
    let s = env("QUICK_N", 1024);
    let sn = env("QUICK_NAIVE_N", 512);
    for &(m, k, n, ta, tb) in &[
        (s, s, s, false, false),
        (s, s, s, true, false),
        (s, s, s, false, true),
        (64, 320, 50, false, true),
        (50, 64, 320, true, false),
    ] {
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        let a = Tensor::from_slice(&gpu, &data(m * k), &sa).expect("a");
        let b = Tensor::from_slice(&gpu, &data(k * n), &sb).expect("b");
        let (nm, nk, nn) = if m == s { (sn, sn, sn) } else { (m, k, n) };
        let an = Tensor::from_slice(&gpu, &data(nm * nk), &[nm, nk]).expect("a");
        let bn = Tensor::from_slice(&gpu, &data(nk * nn), &[nk, nn]).expect("b");
        let tt = best(&gpu, 3, || a.matmul_t(&b, ta, tb).expect("tiled"));
        let tn = best(&gpu, if m == s { 1 } else { 3 }, || {
            matmul_naive(&an, &bn).expect("naive")
        });
        let gt = 2.0 * (m * n * k) as f64 / tt / 1e9;
        let gn = 2.0 * (nm * nn * nk) as f64 / tn / 1e9;
        println!(
            "matmul {m}x{k}x{n} ta={ta} tb={tb}: tiled {gt:.2} GFLOP/s, naive({nm}^) {gn:.2}, ratio {:.1}",
            gt / gn
        );
    }
}

#[test]
fn conv_ratio() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter");
    let d = Conv2dOpts::default();
    for (name, xs, ws) in [
        ("conv1", [64, 1, 28, 28], [10, 1, 5, 5]),
        ("conv2", [64, 10, 12, 12], [20, 10, 5, 5]),
        ("res64", [8, 64, 32, 32], [64, 64, 3, 3]),
    ] {
        let p = if name == "res64" {
            Conv2dOpts {
                padding: (1, 1),
                ..d
            }
        } else {
            d
        };
        let x = Tensor::from_slice(&gpu, &data(xs.iter().product()), &xs)
            .expect("x")
            .requires_grad();
        let w = Tensor::from_slice(&gpu, &data(ws.iter().product()), &ws)
            .expect("w")
            .requires_grad();
        let bias = Tensor::from_slice(&gpu, &data(ws[0]), &[ws[0]]).expect("b");
        let y = conv2d(&x, &w, Some(&bias), p).expect("conv");
        let flops = 2.0 * (y.shape().iter().product::<usize>() * ws[1] * ws[2] * ws[3]) as f64;
        let r = Tensor::from_slice(&gpu, &data(y.shape().iter().product()), y.shape()).expect("r");
        gpu.sync().expect("sync");
        let tf = best(&gpu, 5, || {
            let _ng = gpu_nn::no_grad();
            conv2d(&x, &w, Some(&bias), p).expect("conv")
        });
        let tn = best(&gpu, 5, || {
            conv2d_naive(&x, &w, Some(&bias), p).expect("naive")
        });
        let mut tb = f64::INFINITY;
        for _ in 0..5 {
            let s = Instant::now();
            let g = y.backward_with(&r).expect("backward");
            gpu.sync().expect("sync");
            tb = tb.min(s.elapsed().as_secs_f64());
            drop(g);
        }
        println!(
            "conv {name}: fwd tiled {:.2} GFLOP/s, naive {:.2}, ratio {:.1}; bwd {:.2} GFLOP/s ({:.1}x naive fwd)",
            flops / tf / 1e9,
            flops / tn / 1e9,
            tn / tf,
            2.0 * flops / tb / 1e9,
            2.0 * tn / tb
        );
    }
}

/// The vec4 kernels run only on products whose K and N (and M when A is transposed) are
/// multiples of 4 and that cover at least 64x128 outputs: check them, with edge tiles,
/// batches, every transpose and a bias, against the CPU reference. Tolerance: f32 sums of
/// 68..132 terms of products below 0.25 in magnitude, in a different order than the f64 CPU.
#[test]
fn vec4_kernels_match_cpu() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter");
    for (batch, m, k, n) in [(1, 132, 68, 136), (2, 72, 132, 200), (1, 64, 320, 128)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = data(batch * m * k);
            let b: Vec<f32> = data(batch * k * n + 3)[3..].to_vec();
            let sa = if ta { [batch, k, m] } else { [batch, m, k] };
            let sb = if tb { [batch, n, k] } else { [batch, k, n] };
            let at = Tensor::from_slice(&gpu, &a, &sa).expect("a");
            let bt = Tensor::from_slice(&gpu, &b, &sb).expect("b");
            let got = at
                .matmul_t(&bt, ta, tb)
                .expect("matmul")
                .to_vec_blocking()
                .expect("read");
            let want = gpu_nn::ops::matmul::cpu::matmul(&a, &b, batch, m, k, n, ta, tb);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
                    "{batch}x{m}x{k}x{n} ta={ta} tb={tb} at {i}: {g} vs {w}"
                );
            }
            assert_eq!(got.len(), want.len());
        }
    }
    // linear: x [72, 132] W^T with W [200, 132], bias fused.
    let (x, w, bias) = (data(72 * 132), data(200 * 132), data(200));
    let xt = Tensor::from_slice(&gpu, &x, &[72, 132]).expect("x");
    let wt = Tensor::from_slice(&gpu, &w, &[200, 132]).expect("w");
    let bt = Tensor::from_slice(&gpu, &bias, &[200]).expect("bias");
    let got = gpu_nn::ops::matmul::linear(&xt, &wt, Some(&bt))
        .expect("linear")
        .to_vec_blocking()
        .expect("read");
    let want = gpu_nn::ops::matmul::cpu::linear(&x, &w, Some(&bias), 72, 132, 200);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
            "linear at {i}: {g} vs {w}"
        );
    }
}
