use gpu_nn::Tensor;
use gpu_nn::ops::pool::{
    AvgPool2dOpts, MaxPool2dOpts, adaptive_avg_pool2d, avg_pool2d, cpu, global_avg_pool2d,
    max_pool2d, max_pool2d_with_indices, pool_output_size,
};

use crate::common::*;

// Odd shape: planes of 13x11, 15 of them; 2145 elements, not a multiple of 256.
const SHAPE: [usize; 4] = [3, 5, 13, 11];

fn numel(s: [usize; 4]) -> usize {
    s.iter().product()
}

fn max_configs() -> Vec<MaxPool2dOpts> {
    let mut v = Vec::new();
    for ceil in [false, true] {
        // The brief's case: 3x2 kernel, stride 2, padding 1, dilation 2.
        v.push(
            MaxPool2dOpts::rect(3, 2)
                .stride((2, 2))
                .padding((1, 1))
                .dilation((2, 2))
                .ceil_mode(ceil),
        );
        // Width 11 with an even window: ceil mode adds a column (5 -> 6).
        v.push(
            MaxPool2dOpts::rect(3, 2)
                .stride((2, 2))
                .padding((1, 0))
                .dilation((2, 1))
                .ceil_mode(ceil),
        );
        // Overlapping windows (stride < kernel): one maximum feeds several outputs.
        v.push(
            MaxPool2dOpts::rect(3, 2)
                .stride((1, 1))
                .padding((1, 1))
                .ceil_mode(ceil),
        );
        v.push(
            MaxPool2dOpts::new(3)
                .stride((2, 1))
                .padding((0, 1))
                .dilation((1, 2))
                .ceil_mode(ceil),
        );
    }
    v
}

fn avg_configs() -> Vec<AvgPool2dOpts> {
    let mut v = Vec::new();
    for ceil in [false, true] {
        for include in [false, true] {
            v.push(
                AvgPool2dOpts::rect(3, 2)
                    .stride((2, 2))
                    .padding((1, 1))
                    .ceil_mode(ceil)
                    .count_include_pad(include),
            );
            // Width 11, kernel 4, stride 2, padding 1: in ceil mode the last window (start
            // 9, end 13) runs past the padded input (12), so its divisor is clipped to 3.
            v.push(
                AvgPool2dOpts::rect(3, 4)
                    .stride((2, 2))
                    .padding((1, 1))
                    .ceil_mode(ceil)
                    .count_include_pad(include),
            );
            v.push(
                AvgPool2dOpts::rect(3, 2)
                    .stride((1, 1))
                    .padding((1, 1))
                    .ceil_mode(ceil)
                    .count_include_pad(include),
            );
        }
    }
    v
}

#[test]
fn output_sizes_follow_pytorch() {
    // Hand-computed with PyTorch's formula.
    let o = MaxPool2dOpts::rect(3, 2)
        .stride((2, 2))
        .padding((1, 1))
        .dilation((2, 2));
    assert_eq!(o.output_hw(13, 11).expect("size"), (6, 6));
    assert_eq!(o.ceil_mode(true).output_hw(13, 11).expect("size"), (6, 6));
    let o = MaxPool2dOpts::rect(3, 2)
        .stride((2, 2))
        .padding((1, 0))
        .dilation((2, 1));
    assert_eq!(o.output_hw(13, 11).expect("size"), (6, 5));
    assert_eq!(o.ceil_mode(true).output_hw(13, 11).expect("size"), (6, 6));
    // Ceil mode rounds 5 + 2 - 3 = 4 windows-of-3 up to 3 outputs, but the third would start
    // at 6 - 1 = 5, in the right padding: dropped, 2 outputs.
    assert_eq!(pool_output_size(5, 3, 3, 1, 1, true), Some(2));
    assert_eq!(pool_output_size(5, 3, 3, 1, 1, false), Some(2));
    assert_eq!(pool_output_size(11, 2, 2, 0, 1, true), Some(6));
    assert_eq!(pool_output_size(11, 2, 2, 0, 1, false), Some(5));
    assert_eq!(pool_output_size(11, 4, 2, 1, 1, true), Some(6));
    assert_eq!(pool_output_size(11, 4, 2, 1, 1, false), Some(5));
    assert_eq!(pool_output_size(2, 3, 1, 0, 1, false), None);
    let a = AvgPool2dOpts::new(2);
    assert_eq!(a.stride, (2, 2), "stride defaults to the kernel");
    assert!(a.count_include_pad && !a.ceil_mode);
    assert_eq!(a.output_hw(13, 11).expect("size"), (6, 5));
}

#[test]
fn max_pool_forward_and_backward_match_cpu() {
    let mut rng = Rng::new(11);
    let n = numel(SHAPE);
    let smooth = rng.vec(n);
    // Quarter steps in [-1, 1]: nine values, so most windows hold ties.
    let ties: Vec<f32> = smooth.iter().map(|v| (v * 4.0).round() / 4.0).collect();
    let mut ceil_changed_shape = false;
    for (k, opts) in max_configs().into_iter().enumerate() {
        for (label, x) in [("random", &smooth), ("ties", &ties)] {
            let what = format!("{label} {opts:?}");
            let xt = param(x, &SHAPE);
            let (y, idx) = max_pool2d_with_indices(&xt, opts).expect("forward");
            let (oh, ow) = opts.output_hw(13, 11).expect("size");
            assert_eq!(y.shape(), &[3, 5, oh, ow], "{what}");
            let floor = opts.ceil_mode(false).output_hw(13, 11).expect("size");
            ceil_changed_shape |= floor != (oh, ow);
            let (want_y, want_idx) = cpu::max_pool2d(x, SHAPE, opts).expect("cpu forward");
            // A max selects an input value and its index: both exact.
            assert_eq!(read(&y), want_y, "{what} forward");
            assert_eq!(read(&idx), want_idx, "{what} argmax");
            let r = Rng::new(100 + k as u64).vec(y.numel());
            let g = y.backward_with(&upload(&r, y.shape())).expect("backward");
            let gx = read(g.get(&xt).expect("grad of x"));
            let want = cpu::max_pool2d_backward(x, SHAPE, opts, &r).expect("cpu backward");
            // Same terms added in the same (output) order in f32 on both sides; the
            // tolerance only allows for a fused multiply-add-free reordering.
            assert_close(&gx, &want, 1e-6, 1e-6, &format!("{what} backward"));
            if opts.stride.0 < opts.kernel.0 {
                // Overlapping windows: some input must collect more than one gradient.
                let shared = want_idx.len() - {
                    let mut u: Vec<(usize, i64)> = want_idx
                        .iter()
                        .enumerate()
                        .map(|(o, &i)| (o / (oh * ow), i as i64))
                        .collect();
                    u.sort_unstable();
                    u.dedup();
                    u.len()
                };
                assert!(shared > 0, "{what}: no shared argmax, the test is too weak");
            }
        }
    }
    assert!(
        ceil_changed_shape,
        "ceil mode never changed an output shape"
    );
}

#[test]
fn tiling_max_pool_matches_cpu() {
    // Windows that tile the plane exactly take the one-invocation-per-window kernels; the
    // 13x11 cases above take the general ones. 12x10 is tiled by 2x2 and by 3x2 windows.
    let shape = [3, 5, 12, 10];
    let mut rng = Rng::new(12);
    let smooth = rng.vec(numel(shape));
    let ties: Vec<f32> = smooth.iter().map(|v| (v * 4.0).round() / 4.0).collect();
    for opts in [MaxPool2dOpts::new(2), MaxPool2dOpts::rect(3, 2)] {
        for (label, x) in [("random", &smooth), ("ties", &ties)] {
            let what = format!("{label} {opts:?}");
            let xt = param(x, &shape);
            let (y, idx) = max_pool2d_with_indices(&xt, opts).expect("forward");
            let (want_y, want_idx) = cpu::max_pool2d(x, shape, opts).expect("cpu forward");
            assert_eq!(read(&y), want_y, "{what} forward");
            assert_eq!(read(&idx), want_idx, "{what} argmax");
            let r = Rng::new(7).vec(y.numel());
            let g = y.backward_with(&upload(&r, y.shape())).expect("backward");
            let want = cpu::max_pool2d_backward(x, shape, opts, &r).expect("cpu backward");
            // One window per input: each gradient is copied or zero, exactly.
            assert_eq!(
                read(g.get(&xt).expect("grad of x")),
                want,
                "{what} backward"
            );
        }
    }
}

#[test]
fn max_pool_ties_pick_the_first_and_shared_maxima_add_gradients() {
    // Constant 3x3 plane, 2x2 windows, stride 1, padding 1: every window is a tie, so each
    // picks its first in-bounds tap, (max(oy-1, 0), max(ox-1, 0)).
    let x = param(&[0.5; 9], &[1, 1, 3, 3]);
    let opts = MaxPool2dOpts::new(2).stride((1, 1)).padding((1, 1));
    let (y, idx) = max_pool2d_with_indices(&x, opts).expect("forward");
    assert_eq!(y.shape(), &[1, 1, 4, 4]);
    assert_eq!(read(&y), vec![0.5; 16]);
    let want_idx: Vec<f32> = (0..16)
        .map(|o| {
            let (oy, ox) = (o / 4, o % 4);
            (oy.max(1) - 1) as f32 * 3.0 + (ox.max(1) - 1) as f32
        })
        .collect();
    assert_eq!(read(&idx), want_idx);
    let g = y.backward_with(&Tensor::full(&gpu(), &[1, 1, 4, 4], 1.0).expect("ones"));
    let gx = read(g.expect("backward").get(&x).expect("grad"));
    // Row 0 is the first tap of output rows 0 and 1, rows 1 and 2 of one each; same for
    // columns.
    assert_eq!(gx, vec![4.0, 2.0, 2.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0]);

    // Scan-order ties and one maximum shared by all windows.
    #[rustfmt::skip]
    let data = [
        1.0, 5.0, 5.0, 0.0,
        5.0, 2.0, 5.0, 5.0,
        0.0, 0.0, 9.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    let x = param(&data, &[1, 1, 4, 4]);
    let (y, idx) = max_pool2d_with_indices(&x, MaxPool2dOpts::new(2)).expect("forward");
    assert_eq!(read(&y), vec![5.0, 5.0, 0.0, 9.0]);
    assert_eq!(read(&idx), vec![1.0, 2.0, 8.0, 10.0]);
    let y = max_pool2d(&x, MaxPool2dOpts::new(3).stride((1, 1))).expect("forward");
    assert_eq!(read(&y), vec![9.0; 4]);
    let g = y.backward_with(&upload(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]));
    let gx = read(g.expect("backward").get(&x).expect("grad"));
    let mut want = vec![0.0; 16];
    want[10] = 10.0;
    assert_eq!(gx, want);
}

#[test]
fn max_pool_propagates_nan_like_pytorch() {
    let nan = f32::NAN;
    let data = [1.0, nan, 3.0, nan, nan, 0.0, 2.0, 5.0];
    let opts = MaxPool2dOpts::new(2);
    let x = param(&data, &[1, 1, 2, 4]);
    let (y, idx) = max_pool2d_with_indices(&x, opts).expect("forward");
    let y = read(&y);
    assert!(y.iter().all(|v| v.is_nan()), "NaN is the maximum: {y:?}");
    // Every NaN replaces the current maximum, so the last NaN in scan order is kept; a
    // larger value after a NaN does not replace it.
    assert_eq!(read(&idx), vec![4.0, 3.0]);
    let (_, cpu_idx) = cpu::max_pool2d(&data, [1, 1, 2, 4], opts).expect("cpu");
    assert_eq!(cpu_idx, vec![4.0, 3.0]);
}

#[test]
fn max_pool_window_entirely_in_padding_gives_minus_infinity() {
    // Rows -1 and 3 of a 3-row input: no tap lands inside.
    let opts = MaxPool2dOpts::rect(2, 1)
        .stride((1, 1))
        .padding((1, 0))
        .dilation((4, 1));
    let data: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let x = param(&data, &[1, 1, 3, 3]);
    let (y, idx) = max_pool2d_with_indices(&x, opts).expect("forward");
    assert_eq!(read(&y), vec![f32::NEG_INFINITY; 3]);
    assert_eq!(read(&idx), vec![-1.0; 3]);
    let (cy, cidx) = cpu::max_pool2d(&data, [1, 1, 3, 3], opts).expect("cpu");
    assert_eq!((cy, cidx), (vec![f32::NEG_INFINITY; 3], vec![-1.0; 3]));
    let g = y.backward_with(&upload(&[1.0; 3], &[1, 1, 1, 3]));
    assert_eq!(
        read(g.expect("backward").get(&x).expect("grad")),
        vec![0.0; 9]
    );
}

#[test]
fn avg_pool_forward_and_backward_match_cpu() {
    let mut rng = Rng::new(12);
    let x = rng.vec(numel(SHAPE));
    for (k, opts) in avg_configs().into_iter().enumerate() {
        let what = format!("{opts:?}");
        let xt = param(&x, &SHAPE);
        let y = avg_pool2d(&xt, opts).expect("forward");
        let (oh, ow) = opts.output_hw(13, 11).expect("size");
        assert_eq!(y.shape(), &[3, 5, oh, ow], "{what}");
        // At most 12 terms summed in f32 against an f64 reference.
        let want = cpu::avg_pool2d(&x, SHAPE, opts).expect("cpu forward");
        assert_close(&read(&y), &want, 1e-6, 1e-5, &format!("{what} forward"));
        let r = Rng::new(200 + k as u64).vec(y.numel());
        let g = y.backward_with(&upload(&r, y.shape())).expect("backward");
        let gx = read(g.get(&xt).expect("grad of x"));
        let want = cpu::avg_pool2d_backward(SHAPE, opts, &r).expect("cpu backward");
        assert_close(&gx, &want, 1e-6, 1e-5, &format!("{what} backward"));
    }
}

#[test]
fn avg_pool_divisors_by_hand() {
    // 1..6 in one row; windows of 3, stride 2, padding 1, ceil mode: starts -1, 1, 3, 5.
    // The last window [5, 8) runs past the padded input [-1, 7): its divisor is 2 with
    // padding counted, 1 without.
    let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let x = param(&data, &[1, 1, 1, 6]);
    let base = AvgPool2dOpts::rect(1, 3)
        .stride((1, 2))
        .padding((0, 1))
        .ceil_mode(true);
    for (include, want) in [(true, [1.0, 3.0, 5.0, 3.0]), (false, [1.5, 3.0, 5.0, 6.0])] {
        let opts = base.count_include_pad(include);
        let y = avg_pool2d(&x, opts).expect("forward");
        assert_eq!(y.shape(), &[1, 1, 1, 4]);
        assert_close(
            &read(&y),
            &want,
            1e-7,
            1e-6,
            &format!("include_pad {include}"),
        );
        let cpu_y = cpu::avg_pool2d(&data, [1, 1, 1, 6], opts).expect("cpu");
        assert_close(
            &cpu_y,
            &want,
            1e-7,
            1e-6,
            &format!("cpu include_pad {include}"),
        );
        // Backward of the sum: each input gets 1/divisor from each window holding it.
        let g = y.backward_with(&upload(&[1.0; 4], &[1, 1, 1, 4]));
        let gx = read(g.expect("backward").get(&x).expect("grad"));
        let want_g = if include {
            [
                1.0 / 3.0,
                2.0 / 3.0,
                1.0 / 3.0,
                2.0 / 3.0,
                1.0 / 3.0,
                5.0 / 6.0,
            ]
        } else {
            [
                0.5,
                0.5 + 1.0 / 3.0,
                1.0 / 3.0,
                2.0 / 3.0,
                1.0 / 3.0,
                1.0 / 3.0 + 1.0,
            ]
        };
        assert_close(
            &gx,
            &want_g,
            1e-7,
            1e-6,
            &format!("grad include_pad {include}"),
        );
    }
}

#[test]
fn adaptive_and_global_avg_pool_match_cpu() {
    let mut rng = Rng::new(13);
    let x = rng.vec(numel(SHAPE));
    // 13 -> 5 and 11 -> 4 do not divide (windows of 3 and 4 rows overlap); 11 -> 13
    // upsamples; 1x1 is global pooling.
    for (k, out) in [(5, 4), (1, 1), (13, 11), (6, 13)].into_iter().enumerate() {
        let what = format!("adaptive {out:?}");
        let xt = param(&x, &SHAPE);
        let y = adaptive_avg_pool2d(&xt, out).expect("forward");
        assert_eq!(y.shape(), &[3, 5, out.0, out.1], "{what}");
        // Up to 143 terms (global) summed in f32 against f64: values in [-1, 1], the mean's
        // error stays well below 1e-6.
        let want = cpu::adaptive_avg_pool2d(&x, SHAPE, out).expect("cpu forward");
        assert_close(&read(&y), &want, 1e-6, 1e-5, &format!("{what} forward"));
        let r = Rng::new(300 + k as u64).vec(y.numel());
        let g = y.backward_with(&upload(&r, y.shape())).expect("backward");
        let gx = read(g.get(&xt).expect("grad of x"));
        let want = cpu::adaptive_avg_pool2d_backward(SHAPE, out, &r).expect("cpu backward");
        assert_close(&gx, &want, 1e-6, 1e-5, &format!("{what} backward"));
    }
    // Window bounds of 13 -> 5 by hand: floor(i*13/5) .. ceil((i+1)*13/5).
    let rows: Vec<f32> = (0..13).map(|v| v as f32).collect();
    let y = cpu::adaptive_avg_pool2d(&rows, [1, 1, 13, 1], (5, 1)).expect("cpu");
    // [0,3) [2,6) [5,8) [7,11) [10,13)
    assert_close(
        &y,
        &[1.0, 3.5, 6.0, 8.5, 11.0],
        1e-6,
        1e-6,
        "13 -> 5 windows",
    );
    let g = read(&adaptive_avg_pool2d(&upload(&rows, &[1, 1, 13, 1]), (5, 1)).expect("gpu"));
    assert_close(
        &g,
        &[1.0, 3.5, 6.0, 8.5, 11.0],
        1e-6,
        1e-6,
        "13 -> 5 windows gpu",
    );

    // Global pooling is the per-plane mean.
    let y = read(&global_avg_pool2d(&upload(&x, &SHAPE)).expect("global"));
    let plane = 13 * 11;
    let means: Vec<f32> = (0..15)
        .map(|p| {
            (x[p * plane..(p + 1) * plane]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / plane as f64) as f32
        })
        .collect();
    assert_close(&y, &means, 1e-6, 1e-5, "global mean");
}

#[test]
fn cpu_pool_gradients_match_finite_differences() {
    let shape = [2, 3, 7, 6];
    let n = numel(shape);
    // Max pool: a permutation of multiples of 0.05 — distinct and 5x the step apart, so
    // no +-eps move changes an argmax.
    let x: Vec<f32> = (0..n).map(|i| ((i * 37) % n) as f32 * 0.05 - 6.0).collect();
    let mut rng = Rng::new(14);
    for opts in [
        MaxPool2dOpts::rect(3, 2)
            .stride((2, 2))
            .padding((1, 1))
            .dilation((2, 2)),
        MaxPool2dOpts::rect(3, 2)
            .stride((1, 1))
            .padding((1, 1))
            .ceil_mode(true),
    ] {
        let (y, _) = cpu::max_pool2d(&x, shape, opts).expect("cpu");
        let r = rng.vec(y.len());
        let grad = cpu::max_pool2d_backward(&x, shape, opts, &r).expect("cpu backward");
        let loss = |x: &[f32]| dot(&cpu::max_pool2d(x, shape, opts).expect("cpu").0, &r);
        fd_check(loss, &x, &grad, 1e-2, 1e-3, &format!("{opts:?}"));
    }
    // Averages are linear: no kinks to avoid.
    let x = rng.vec(n);
    for opts in [
        AvgPool2dOpts::rect(3, 4)
            .stride((2, 2))
            .padding((1, 1))
            .ceil_mode(true),
        AvgPool2dOpts::rect(3, 4)
            .stride((2, 2))
            .padding((1, 1))
            .ceil_mode(true)
            .count_include_pad(false),
    ] {
        let y = cpu::avg_pool2d(&x, shape, opts).expect("cpu");
        let r = rng.vec(y.len());
        let grad = cpu::avg_pool2d_backward(shape, opts, &r).expect("cpu backward");
        let loss = |x: &[f32]| dot(&cpu::avg_pool2d(x, shape, opts).expect("cpu"), &r);
        fd_check(loss, &x, &grad, 1e-2, 1e-3, &format!("{opts:?}"));
    }
    for out in [(3, 4), (1, 1)] {
        let y = cpu::adaptive_avg_pool2d(&x, shape, out).expect("cpu");
        let r = rng.vec(y.len());
        let grad = cpu::adaptive_avg_pool2d_backward(shape, out, &r).expect("cpu backward");
        let loss = |x: &[f32]| dot(&cpu::adaptive_avg_pool2d(x, shape, out).expect("cpu"), &r);
        fd_check(loss, &x, &grad, 1e-2, 1e-3, &format!("adaptive {out:?}"));
    }
}

#[track_caller]
fn assert_err(r: gpu_nn::Result<Tensor>, op: &str, needle: &str) {
    let msg = r.expect_err("must fail").to_string();
    assert!(msg.contains(op) && msg.contains(needle), "{msg}");
}

#[test]
fn pool_shape_errors() {
    let x = upload(&vec![0.0; numel(SHAPE)], &SHAPE);
    // Padding beyond half the kernel (PyTorch refuses it).
    let m = MaxPool2dOpts::new(3).padding((2, 1));
    assert_err(max_pool2d(&x, m), "max_pool2d", "padding");
    let a = AvgPool2dOpts::rect(3, 2).padding((1, 2));
    assert_err(avg_pool2d(&x, a), "avg_pool2d", "padding");
    // Output size zero: kernel bigger than the input, or dilated past it.
    assert_err(
        max_pool2d(&x, MaxPool2dOpts::new(14)),
        "max_pool2d",
        "output size",
    );
    let m = MaxPool2dOpts::new(3).dilation((7, 1));
    assert_err(max_pool2d(&x, m), "max_pool2d", "output size");
    assert_err(
        avg_pool2d(&x, AvgPool2dOpts::rect(2, 12)),
        "avg_pool2d",
        "output size",
    );
    // Zero kernel or stride.
    assert_err(
        max_pool2d(&x, MaxPool2dOpts::new(0)),
        "max_pool2d",
        "positive",
    );
    let a = AvgPool2dOpts::new(2).stride((0, 1));
    assert_err(avg_pool2d(&x, a), "avg_pool2d", "positive");
    // Not 4-D.
    let x3 = upload(&vec![0.0; 5 * 13 * 11], &[5, 13, 11]);
    assert_err(max_pool2d(&x3, MaxPool2dOpts::new(2)), "max_pool2d", "4-D");
    assert_err(avg_pool2d(&x3, AvgPool2dOpts::new(2)), "avg_pool2d", "4-D");
    assert_err(
        adaptive_avg_pool2d(&x3, (2, 2)),
        "adaptive_avg_pool2d",
        "4-D",
    );
    assert_err(global_avg_pool2d(&x3), "adaptive_avg_pool2d", "4-D");
    // Zero adaptive output.
    assert_err(
        adaptive_avg_pool2d(&x, (0, 3)),
        "adaptive_avg_pool2d",
        "positive",
    );
    // The CPU references refuse the same inputs.
    let z = vec![0.0; numel(SHAPE)];
    assert!(cpu::max_pool2d(&z, SHAPE, MaxPool2dOpts::new(3).padding((2, 0))).is_err());
    assert!(cpu::avg_pool2d(&z, SHAPE, AvgPool2dOpts::new(14)).is_err());
    assert!(cpu::adaptive_avg_pool2d(&z, SHAPE, (3, 0)).is_err());
}
