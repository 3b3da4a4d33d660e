use gpu_nn::Tensor;
use gpu_nn::ops::batchnorm::{batch_norm, cpu};

use crate::common::*;

const MOMENTUM: f32 = 0.1;
const EPS: f32 = 1e-5;

/// Inputs with a per-channel offset, so that mean subtraction matters.
fn input(rng: &mut Rng, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let s: usize = shape[2..].iter().product();
    let c = shape[1];
    (0..n)
        .map(|i| rng.uniform() * 2.0 + ((i / s) % c) as f32 - 1.5)
        .collect()
}

/// Running statistics that differ from the batch ones: means in [-1, 1), variances in [0.5, 1.5).
fn running(rng: &mut Rng, c: usize) -> (Vec<f32>, Vec<f32>) {
    let m = rng.vec(c);
    let v = (0..c).map(|_| 1.0 + 0.5 * rng.uniform()).collect();
    (m, v)
}

// Tolerances: per-channel sums run over up to 3*13*7 = 273 values of magnitude ~3; f32 sums in
// tree order against an f64 reference differ by ~1e-6 relative. The training-mode dx subtracts
// sums of that size (M*g - sum(g) - xhat*sum(g*xhat)), so it gets a larger atol.
const FWD: (f32, f32) = (2e-5, 1e-4);
const DX: (f32, f32) = (1e-4, 1e-3);
const SUMS: (f32, f32) = (1e-4, 1e-4);

#[test]
fn forward_backward_and_running_stats_match_cpu() {
    let mut rng = Rng::new(11);
    // S = 91, 1 and 9 take one element per invocation; S = 320 (more than a workgroup's
    // stride) and S = 4 take four.
    let shapes: [&[usize]; 5] = [
        &[3, 5, 13, 7],
        &[6, 5],
        &[3, 5, 9],
        &[2, 3, 20, 16],
        &[5, 3, 4],
    ];
    for shape in shapes {
        let c = shape[1];
        for affine in [true, false] {
            for training in [true, false] {
                let what = format!("{shape:?} affine={affine} training={training}");
                let x = input(&mut rng, shape);
                let w = rng.vec_away_from_zero(c, 0.5);
                let b = rng.vec(c);
                let (mut rm, mut rv) = running(&mut rng, c);
                let xt = param(&x, shape);
                let wt = param(&w, &[c]);
                let bt = param(&b, &[c]);
                let rmt = upload(&rm, &[c]);
                let rvt = upload(&rv, &[c]);
                let (wo, bo) = if affine {
                    (Some(&wt), Some(&bt))
                } else {
                    (None, None)
                };
                let y =
                    batch_norm(&xt, &rmt, &rvt, wo, bo, training, MOMENTUM, EPS).expect("forward");
                let (rm0, rv0) = (rm.clone(), rv.clone());
                let (wc, bc) = if affine {
                    (Some(&w[..]), Some(&b[..]))
                } else {
                    (None, None)
                };
                let want =
                    cpu::batch_norm(&x, shape, &mut rm, &mut rv, wc, bc, training, MOMENTUM, EPS);
                assert_close(&read(&y), &want, FWD.0, FWD.1, &format!("{what} fwd"));
                assert_close(
                    &read(&rmt),
                    &rm,
                    1e-6,
                    1e-5,
                    &format!("{what} running_mean"),
                );
                assert_close(&read(&rvt), &rv, 1e-6, 1e-5, &format!("{what} running_var"));
                if !training {
                    assert_eq!(read(&rmt), rm0, "{what}: eval must not touch running_mean");
                    assert_eq!(read(&rvt), rv0, "{what}: eval must not touch running_var");
                }

                let r = rng.vec(x.len());
                let g = y.backward_with(&upload(&r, shape)).expect("backward");
                let (dx, dw, db) =
                    cpu::batch_norm_backward(&x, shape, &rm0, &rv0, wc, training, EPS, &r);
                let gx = read(g.get(&xt).expect("grad of x"));
                assert_close(&gx, &dx, DX.0, DX.1, &format!("{what} dx"));
                if affine {
                    let gw = read(g.get(&wt).expect("grad of weight"));
                    let gb = read(g.get(&bt).expect("grad of bias"));
                    assert_close(&gw, &dw, SUMS.0, SUMS.1, &format!("{what} dweight"));
                    assert_close(&gb, &db, SUMS.0, SUMS.1, &format!("{what} dbias"));
                    assert_eq!(g.len(), 3, "{what}: x, weight and bias get gradients");
                } else {
                    assert_eq!(g.len(), 1, "{what}: only x gets a gradient");
                }
            }
        }
    }
}

#[test]
fn running_stats_after_two_training_steps_match_cpu() {
    let mut rng = Rng::new(12);
    let shape = [3, 5, 13, 7];
    let (mut rm, mut rv) = running(&mut rng, 5);
    let rmt = upload(&rm, &[5]);
    let rvt = upload(&rv, &[5]);
    for step in 0..2 {
        let x = input(&mut rng, &shape);
        let xt = upload(&x, &shape);
        let y = batch_norm(&xt, &rmt, &rvt, None, None, true, 0.3, EPS).expect("forward");
        let want = cpu::batch_norm(&x, &shape, &mut rm, &mut rv, None, None, true, 0.3, EPS);
        assert_close(&read(&y), &want, FWD.0, FWD.1, &format!("step {step} fwd"));
    }
    // After two steps with momentum 0.3 both old and new statistics contribute.
    assert_close(&read(&rmt), &rm, 1e-6, 1e-5, "running_mean");
    assert_close(&read(&rvt), &rv, 1e-6, 1e-5, "running_var");
    // The unbiased variance is used: M / (M - 1) = 273 / 272 differs from 1 by 4e-3.
    let x = input(&mut rng, &[3, 5, 13, 7]);
    let (rm1, rv1) = (vec![0.0; 5], vec![0.0; 5]);
    let (rmt, rvt) = (upload(&rm1, &[5]), upload(&rv1, &[5]));
    batch_norm(&upload(&x, &shape), &rmt, &rvt, None, None, true, 1.0, EPS).expect("forward");
    let stats = cpu::batch_stats(&x, &shape);
    let unbiased: Vec<f32> = stats.iter().map(|s| s.2 as f32).collect();
    assert_close(
        &read(&rvt),
        &unbiased,
        0.0,
        1e-5,
        "momentum 1 copies unbiased var",
    );
    let biased: Vec<f32> = stats.iter().map(|s| s.1 as f32).collect();
    let rv_gpu = read(&rvt);
    assert!(
        rv_gpu
            .iter()
            .zip(&biased)
            .all(|(a, b)| (a - b).abs() > 1e-3 * b),
        "running_var {rv_gpu:?} must not be the biased variance {biased:?}"
    );
}

#[test]
fn running_stats_are_not_differentiated() {
    let mut rng = Rng::new(13);
    let x = input(&mut rng, &[4, 3]);
    let xt = param(&x, &[4, 3]);
    // Even tracked running stats get no gradient: they are buffers, not inputs.
    let rm = param(&[0.0; 3], &[3]);
    let rv = param(&[1.0; 3], &[3]);
    for training in [true, false] {
        let y = batch_norm(&xt, &rm, &rv, None, None, training, MOMENTUM, EPS).expect("fwd");
        let g = y.sum().expect("sum").backward().expect("backward");
        assert!(g.get(&xt).is_some(), "x gets a gradient");
        assert!(
            g.get(&rm).is_none() && g.get(&rv).is_none(),
            "running stats get none"
        );
    }
}

#[test]
fn cpu_gradients_match_finite_differences() {
    let mut rng = Rng::new(14);
    let shape = [3, 2, 4];
    let c = 2;
    let x = input(&mut rng, &shape);
    let w = rng.vec_away_from_zero(c, 0.5);
    let b = rng.vec(c);
    let (rm, rv) = running(&mut rng, c);
    let r = rng.vec(x.len());
    for training in [true, false] {
        let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
            let (mut m, mut v) = (rm.clone(), rv.clone());
            let y = cpu::batch_norm(
                x,
                &shape,
                &mut m,
                &mut v,
                Some(w),
                Some(b),
                training,
                0.1,
                EPS,
            );
            dot(&y, &r)
        };
        let (dx, dw, db) =
            cpu::batch_norm_backward(&x, &shape, &rm, &rv, Some(&w), training, EPS, &r);
        let t = format!("training={training}");
        fd_check(|x| fwd(x, &w, &b), &x, &dx, 1e-2, 2e-3, &format!("{t} dx"));
        fd_check(
            |w| fwd(&x, w, &b),
            &w,
            &dw,
            1e-2,
            2e-3,
            &format!("{t} dweight"),
        );
        fd_check(
            |b| fwd(&x, &w, b),
            &b,
            &db,
            1e-2,
            2e-3,
            &format!("{t} dbias"),
        );
    }
}

#[test]
fn shape_errors() {
    let x = upload(&[0.5; 60], &[3, 5, 4]);
    let c5 = upload(&[1.0; 5], &[5]);
    let c5b = upload(&[0.0; 5], &[5]);
    let c4 = upload(&[1.0; 4], &[4]);
    let expect_err = |r: gpu_nn::Result<Tensor>, needle: &str| {
        let msg = r.expect_err("must fail").to_string();
        assert!(msg.contains("batch_norm") && msg.contains(needle), "{msg}");
    };
    let bn = |x: &Tensor, rm: &Tensor, rv: &Tensor, w, b, training| {
        batch_norm(x, rm, rv, w, b, training, MOMENTUM, EPS)
    };
    expect_err(bn(&x, &c5, &c5b, Some(&c4), None, true), "weight");
    expect_err(bn(&x, &c5, &c5b, None, Some(&c4), true), "bias");
    expect_err(bn(&x, &c4, &c5b, None, None, false), "running_mean");
    expect_err(bn(&x, &c5, &c4, None, None, false), "running_var");
    expect_err(
        bn(&upload(&[1.0; 5], &[5]), &c5, &c5b, None, None, false),
        "[5]",
    );
    expect_err(bn(&x, &c5, &c5, None, None, true), "distinct");
    // One value per channel: an error in training (as PyTorch), fine in evaluation.
    let one = upload(&[0.5; 5], &[1, 5]);
    expect_err(
        bn(&one, &c5, &c5b, None, None, true),
        "more than 1 value per channel",
    );
    let one4 = upload(&[0.5; 5], &[1, 5, 1, 1]);
    expect_err(
        bn(&one4, &c5, &c5b, None, None, true),
        "more than 1 value per channel",
    );
    let y = bn(&one, &c5, &c5b, None, None, false).expect("eval with one value");
    // Running mean 1, var 0: (0.5 - 1) / sqrt(0 + eps).
    let want = -0.5 / EPS.sqrt();
    assert_close(&read(&y), &[want; 5], 0.0, 1e-5, "eval with one value");
}

#[test]
fn buffer_variant_kernels_match_cpu() {
    // Where H * W % 4 == 0 the kernels read x and the gradient as texels: from operand
    // textures on lavapipe, from the buffers on GPUs. The same comparisons on such a device.
    with_gpu(portable_gpu(), forward_backward_and_running_stats_match_cpu);
}

#[test]
fn batch_statistics_stay_exact_far_from_zero() {
    // Values 1000 + c + [0, 0.5): the variance (~0.02) is 1e-8 of the mean's square, so the
    // single-pass sums must be taken around a shift near the mean (one pass of plain sums
    // of x and x^2 in f32 gets it wrong by more than its size).
    let check = || {
        let mut rng = Rng::new(13);
        // S = 64 takes the vec4 twin on CPU drivers, S = 7 the scalar kernel.
        for shape in [[4usize, 3, 8, 8], [5, 3, 7, 1]] {
            let s: usize = shape[2..].iter().product();
            let x: Vec<f32> = (0..shape.iter().product::<usize>())
                .map(|i| 1000.0 + ((i / s) % 3) as f32 + 0.5 * rng.uniform())
                .collect();
            let (rmt, rvt) = (upload(&[0.0; 3], &[3]), upload(&[0.0; 3], &[3]));
            batch_norm(&upload(&x, &shape), &rmt, &rvt, None, None, true, 1.0, EPS)
                .expect("forward");
            let stats = cpu::batch_stats(&x, &shape);
            let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
            let var: Vec<f32> = stats.iter().map(|s| s.2 as f32).collect();
            assert_close(&read(&rmt), &mean, 0.0, 1e-6, &format!("{shape:?} mean"));
            assert_close(&read(&rvt), &var, 0.0, 1e-3, &format!("{shape:?} var"));
        }
    };
    check();
    with_gpu(portable_gpu(), check);
}
