use gpu_nn::ops::matmul::{cpu, linear, matmul_naive};

use crate::common::*;

// Tolerances: the GPU sums K products in f32 in a different order from the f64 reference.
// Inputs are in [-1, 1), so each output's rounding error is at most ~K * 2^-24 * sum|a b|;
// atol 1e-5 + rtol 1e-4 covers K up to a few hundred with margin, and a wrong index or a
// missed tile shows up as an error of order 0.1.
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

/// Stored shape of an operand whose op() is [rows, cols].
fn stored(batch: usize, rows: usize, cols: usize, trans: bool) -> Vec<usize> {
    let (r, c) = if trans { (cols, rows) } else { (rows, cols) };
    if batch == 1 {
        vec![r, c]
    } else {
        vec![batch, r, c]
    }
}

/// Forward and backward of op(A) @ op(B) against the CPU reference.
fn check(batch: usize, m: usize, k: usize, n: usize, ta: bool, tb: bool, seed: u64) {
    check_tol(batch, m, k, n, ta, tb, seed, ATOL);
}

#[allow(clippy::too_many_arguments)]
fn check_tol(batch: usize, m: usize, k: usize, n: usize, ta: bool, tb: bool, seed: u64, atol: f32) {
    let what = format!("batch {batch} {m}x{k}x{n} ta {ta} tb {tb}");
    let mut rng = Rng::new(seed);
    let a = rng.vec(batch * m * k);
    let b = rng.vec(batch * k * n);
    let r = rng.vec(batch * m * n);
    let (sa, sb) = (stored(batch, m, k, ta), stored(batch, k, n, tb));
    let (at, bt) = (param(&a, &sa), param(&b, &sb));
    let c = at.matmul_t(&bt, ta, tb).expect("matmul");
    let want_shape = if batch == 1 {
        vec![m, n]
    } else {
        vec![batch, m, n]
    };
    assert_eq!(c.shape(), want_shape.as_slice(), "{what}: shape");
    let want = cpu::matmul(&a, &b, batch, m, k, n, ta, tb);
    assert_close(&read(&c), &want, atol, RTOL, &format!("{what} fwd"));
    let g = c.backward_with(&upload(&r, c.shape())).expect("backward");
    let (ga, gb) = cpu::matmul_backward(&a, &b, &r, batch, m, k, n, ta, tb);
    assert_close(
        &read(g.get(&at).expect("ga")),
        &ga,
        atol,
        RTOL,
        &format!("{what} dA"),
    );
    assert_close(
        &read(g.get(&bt).expect("gb")),
        &gb,
        atol,
        RTOL,
        &format!("{what} dB"),
    );
}

#[test]
fn odd_shapes_all_transposes_forward_and_backward() {
    let mut seed = 10;
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        for (m, k, n) in [(37, 29, 53), (1, 33, 1), (5, 1, 7)] {
            seed += 1;
            check(1, m, k, n, ta, tb, seed);
        }
    }
}

#[test]
fn batched_forward_and_backward() {
    check(3, 19, 23, 11, false, false, 30);
    check(3, 17, 9, 21, true, true, 31);
}

#[test]
fn several_tiles_with_remainders() {
    // 130 x 65 outputs: 3 x 2 tiles of 64 with partial last tiles; K = 70 leaves a partial
    // K step.
    check(1, 130, 70, 65, false, false, 40);
    check(1, 130, 70, 65, true, true, 41);
    check(2, 67, 130, 66, false, true, 42);
}

/// Long-K products with few outputs: on devices without the subgroup kernel they are split
/// into K slices and summed (split K), in all four transpose combinations, forward and
/// backward, and with a bias (the DCGAN discriminator's 6272 -> 1 layer). Sums of 1000+
/// products drift further from f64, so atol is 2e-3; a lost slice is off by ~1.
#[test]
fn long_k_products_match_cpu() {
    let shapes = [(1, 5, 1100, 70), (1, 33, 2000, 3)];
    for (i, &(batch, m, k, n)) in shapes.iter().enumerate() {
        for (j, (ta, tb)) in [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .enumerate()
        {
            check_tol(batch, m, k, n, ta, tb, 100 + (i * 4 + j) as u64, 2e-3);
        }
    }
    linear_case_tol(64, 6272, 1, 62, 2e-3);
}

/// Products of 64x64 tiles and more, with K a multiple of the tile step and not.
#[test]
fn large_products_all_transposes_forward_and_backward() {
    let shapes = [(1, 132, 68, 136), (2, 72, 132, 200), (1, 64, 320, 128)];
    for (i, &(batch, m, k, n)) in shapes.iter().enumerate() {
        for (j, (ta, tb)) in [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .enumerate()
        {
            check_tol(batch, m, k, n, ta, tb, 200 + (i * 4 + j) as u64, 1e-4);
        }
    }
}

#[test]
fn naive_kernel_matches_cpu() {
    let mut rng = Rng::new(50);
    let (m, k, n) = (37, 29, 53);
    let (a, b) = (rng.vec(m * k), rng.vec(k * n));
    let c = matmul_naive(&upload(&a, &[m, k]), &upload(&b, &[k, n])).expect("naive");
    let want = cpu::matmul(&a, &b, 1, m, k, n, false, false);
    assert_close(&read(&c), &want, ATOL, RTOL, "naive");
}

#[test]
fn linear_forward_and_backward_match_cpu() {
    // The MNIST CNN's fc layer is 64 x 320 -> 50; odd sizes here, with more outputs than
    // rows and the other way round (the subgroup kernel lays them out differently).
    linear_case(13, 45, 21, 60);
    linear_case(70, 33, 9, 61);
}

#[test]
fn portable_kernels_match_cpu() {
    // The same comparisons on a device that does not use the subgroup kernel.
    with_gpu(portable_gpu(), every_case);
}

/// Every GPU-vs-CPU comparison of this file, on whatever device `gpu()` returns.
fn every_case() {
    odd_shapes_all_transposes_forward_and_backward();
    batched_forward_and_backward();
    several_tiles_with_remainders();
    large_products_all_transposes_forward_and_backward();
    long_k_products_match_cpu();
    linear_forward_and_backward_match_cpu();
}

#[cfg(feature = "cpu-drivers")]
#[test]
fn four_lane_kernel_matches_cpu() {
    // The subgroup kernel as on SwiftShader: blocks of 4 rows, operands read from buffers.
    with_gpu(four_lane_gpu(), every_case);
}

fn linear_case(rows: usize, inp: usize, out: usize, seed: u64) {
    linear_case_tol(rows, inp, out, seed, ATOL);
}

fn linear_case_tol(rows: usize, inp: usize, out: usize, seed: u64, atol: f32) {
    let mut rng = Rng::new(seed);
    let x = rng.vec(rows * inp);
    let w = rng.vec(out * inp);
    let bias = rng.vec(out);
    let r = rng.vec(rows * out);
    let (xt, wt, bt) = (
        param(&x, &[rows, inp]),
        param(&w, &[out, inp]),
        param(&bias, &[out]),
    );
    let y = linear(&xt, &wt, Some(&bt)).expect("linear");
    assert_eq!(y.shape(), &[rows, out]);
    let want = cpu::linear(&x, &w, Some(&bias), rows, inp, out);
    assert_close(&read(&y), &want, atol, RTOL, "linear fwd");
    let g = y
        .backward_with(&upload(&r, &[rows, out]))
        .expect("backward");
    let (gx, gw, gb) = cpu::linear_backward(&x, &w, &r, rows, inp, out);
    assert_close(&read(g.get(&xt).expect("gx")), &gx, atol, RTOL, "linear dx");
    assert_close(&read(g.get(&wt).expect("gw")), &gw, atol, RTOL, "linear dW");
    assert_close(&read(g.get(&bt).expect("gb")), &gb, atol, RTOL, "linear db");

    // Without bias: same product, nothing added.
    let y0 = linear(&xt, &wt, None).expect("linear without bias");
    let want0 = cpu::linear(&x, &w, None, rows, inp, out);
    assert_close(&read(&y0), &want0, atol, RTOL, "linear no bias");
}

#[test]
fn linear_cpu_backward_matches_finite_differences() {
    let mut rng = Rng::new(70);
    let (rows, inp, out) = (3, 5, 4);
    let x = rng.vec(rows * inp);
    let w = rng.vec(out * inp);
    let bias = rng.vec(out);
    let r = rng.vec(rows * out);
    let (gx, gw, gb) = cpu::linear_backward(&x, &w, &r, rows, inp, out);
    // The loss is bilinear, so central differences are exact up to f32 rounding of the
    // forward (~1e-7 / eps relative).
    let (eps, tol) = (1e-2, 1e-3);
    fd_check(
        |x| dot(&cpu::linear(x, &w, Some(&bias), rows, inp, out), &r),
        &x,
        &gx,
        eps,
        tol,
        "dx",
    );
    fd_check(
        |w| dot(&cpu::linear(&x, w, Some(&bias), rows, inp, out), &r),
        &w,
        &gw,
        eps,
        tol,
        "dW",
    );
    fd_check(
        |b| dot(&cpu::linear(&x, &w, Some(b), rows, inp, out), &r),
        &bias,
        &gb,
        eps,
        tol,
        "db",
    );
}

#[test]
fn cpu_matmul_backward_matches_finite_differences() {
    let mut rng = Rng::new(80);
    let (batch, m, k, n) = (2, 3, 4, 5);
    let a = rng.vec(batch * m * k);
    let b = rng.vec(batch * k * n);
    let r = rng.vec(batch * m * n);
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let (ga, gb) = cpu::matmul_backward(&a, &b, &r, batch, m, k, n, ta, tb);
        let f = |a: &[f32], b: &[f32]| dot(&cpu::matmul(a, b, batch, m, k, n, ta, tb), &r);
        fd_check(
            |a| f(a, &b),
            &a,
            &ga,
            1e-2,
            1e-3,
            &format!("dA ta {ta} tb {tb}"),
        );
        fd_check(
            |b| f(&a, b),
            &b,
            &gb,
            1e-2,
            1e-3,
            &format!("dB ta {ta} tb {tb}"),
        );
    }
}

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let a = upload(&[1.0; 6], &[2, 3]);
    let b = upload(&[1.0; 8], &[4, 2]);
    let msg = a.matmul(&b).expect_err("inner dims 3 vs 4").to_string();
    assert!(
        msg.contains("matmul") && msg.contains("[2, 3]") && msg.contains("[4, 2]"),
        "{msg}"
    );

    let b3 = upload(&[1.0; 12], &[2, 3, 2]);
    let msg = a.matmul(&b3).expect_err("rank 2 @ rank 3").to_string();
    assert!(msg.contains("batch"), "{msg}");
    let a3 = upload(&[1.0; 18], &[3, 2, 3]);
    assert!(a3.matmul(&b3).is_err(), "batch 3 vs 2 must fail");
    let v = upload(&[1.0; 3], &[3]);
    assert!(v.matmul(&a).is_err(), "rank 1 must fail");

    let x = upload(&[1.0; 6], &[2, 3]);
    let w = upload(&[1.0; 12], &[4, 3]);
    let bad_bias = upload(&[1.0; 3], &[3]);
    let msg = linear(&x, &w, Some(&bad_bias))
        .expect_err("bias of 3 for 4 outputs")
        .to_string();
    assert!(
        msg.contains("linear") && msg.contains("bias") && msg.contains('4'),
        "{msg}"
    );
    let bad_w = upload(&[1.0; 8], &[4, 2]);
    let msg = linear(&x, &bad_w, None).expect_err("in 3 vs 2").to_string();
    assert!(msg.contains("linear"), "{msg}");
    assert!(linear(&x, &w, Some(&upload(&[0.0; 4], &[4]))).is_ok());
}
