use gpu_nn::ops::dropout::{cpu, dropout, dropout2d};

use crate::common::*;

// The mask is integer-only and kept values are one f32 multiply (correctly rounded in WGSL),
// so GPU and CPU agree bit for bit: tolerances are 0.

#[test]
fn dropout_matches_cpu_bit_exactly_forward_and_backward() {
    let mut rng = Rng::new(21);
    let shape = [3, 5, 13, 13];
    let n: usize = shape.iter().product();
    let x = rng.vec(n);
    for (p, seed) in [(0.3, 7u64), (0.5, 0xDEAD_BEEF_0000_0001), (0.9, 3)] {
        let xt = param(&x, &shape);
        let y = dropout(&xt, p, seed, true).expect("dropout");
        assert_eq!(
            read(&y),
            cpu::dropout(&x, p, seed, 1),
            "fwd p={p} seed={seed}"
        );
        let r = rng.vec(n);
        let g = y.backward_with(&upload(&r, &shape)).expect("backward");
        let gx = read(g.get(&xt).expect("grad"));
        assert_eq!(gx, cpu::dropout(&r, p, seed, 1), "bwd p={p} seed={seed}");
    }
}

#[test]
fn kept_values_are_scaled_and_dropped_are_zero() {
    let n = 50_000;
    let x = upload(&vec![1.0; n], &[n]);
    let p = 0.3f32;
    let y = read(&dropout(&x, p, 42, true).expect("dropout"));
    let scale = 1.0 / (1.0 - p);
    assert!(
        y.iter().all(|&v| v == 0.0 || v == scale),
        "values must be 0 or 1/(1-p)"
    );
    // Kept fraction ~ Binomial(n, 1-p)/n with sd sqrt(p(1-p)/n) = 0.0020; 5 sd gives a
    // false-failure chance below 1e-6 for a correct RNG, while a mask off by 1% fails.
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    let sd = (f64::from(p) * (1.0 - f64::from(p)) / n as f64).sqrt();
    assert!(
        (kept - 0.7).abs() < 5.0 * sd,
        "kept fraction {kept} vs 0.7 (sd {sd})"
    );
    // Mean is preserved in expectation: sd of the mean is scale * sd.
    let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    assert!(
        (mean - 1.0).abs() < 5.0 * sd * f64::from(scale),
        "mean {mean}"
    );
}

#[test]
fn kept_fraction_holds_for_several_p() {
    let n = 50_000u32;
    for p in [0.1f32, 0.5, 0.75] {
        let kept = (0..n).filter(|&i| cpu::keep(p, 9, i)).count() as f64 / f64::from(n);
        let q = 1.0 - f64::from(p);
        let sd = (q * (1.0 - q) / f64::from(n)).sqrt();
        assert!(
            (kept - q).abs() < 5.0 * sd,
            "p={p}: kept {kept}, want {q} +- 5*{sd}"
        );
    }
}

#[test]
fn different_seeds_give_different_masks() {
    let n = 50_000;
    let x = upload(&vec![1.0; n], &[n]);
    let a = read(&dropout(&x, 0.5, 1, true).expect("a"));
    let b = read(&dropout(&x, 0.5, 2, true).expect("b"));
    let b2 = read(&dropout(&x, 0.5, 1 << 32, true).expect("high bits"));
    let c = read(&dropout(&x, 0.5, 1, true).expect("c"));
    assert_eq!(a, c, "the same seed must give the same mask");
    // Independent masks with p = 0.5 agree on half the elements (sd 0.0022).
    for (what, other) in [("seed 2", &b), ("seed 2^32", &b2)] {
        let agree = a.iter().zip(other).filter(|(u, v)| u == v).count() as f64 / n as f64;
        assert!(
            (agree - 0.5).abs() < 0.011,
            "{what}: masks agree on {agree}"
        );
    }
}

#[test]
fn dropout2d_zeroes_whole_channels() {
    let mut rng = Rng::new(22);
    let shape = [3, 7, 13, 13];
    let n: usize = shape.iter().product();
    let x = rng.vec_away_from_zero(n, 0.01);
    let p = 0.4;
    let xt = param(&x, &shape);
    let y = dropout2d(&xt, p, 5, true).expect("dropout2d");
    let got = read(&y);
    assert_eq!(got, cpu::dropout(&x, p, 5, 169), "fwd");
    let mut dropped = 0;
    for ch in got.chunks(169) {
        let zeros = ch.iter().filter(|&&v| v == 0.0).count();
        assert!(
            zeros == 0 || zeros == 169,
            "a channel is partly dropped ({zeros} zeros)"
        );
        dropped += usize::from(zeros == 169);
    }
    // 21 channels, P(all kept or all dropped) = 0.6^21 + 0.4^21 < 2e-5.
    assert!(
        dropped > 0 && dropped < 21,
        "{dropped} of 21 channels dropped"
    );
    let r = rng.vec(n);
    let g = y.backward_with(&upload(&r, &shape)).expect("backward");
    assert_eq!(
        read(g.get(&xt).expect("grad")),
        cpu::dropout(&r, p, 5, 169),
        "bwd"
    );
}

#[test]
fn identity_when_not_training_or_p_zero_and_zeros_when_p_one() {
    let x = param(&[1.0, -2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    for (p, training) in [(0.5, false), (0.0, true)] {
        let y = dropout(&x, p, 1, training).expect("identity");
        assert!(
            y.same_storage(&x) && y.id() == x.id(),
            "p={p} training={training}"
        );
        let y = dropout2d(&x, p, 1, training).expect("identity 2d");
        assert!(y.same_storage(&x), "2d p={p} training={training}");
    }
    for y in [dropout(&x, 1.0, 1, true), dropout2d(&x, 1.0, 1, true)] {
        let y = y.expect("p = 1");
        assert_eq!(read(&y), vec![0.0; 4]);
        let g = y
            .backward_with(&upload(&[1.0; 4], &[1, 1, 2, 2]))
            .expect("backward");
        assert_eq!(read(g.get(&x).expect("grad")), vec![0.0; 4]);
    }
}

#[test]
fn bad_probability_and_rank_are_errors() {
    let x = upload(&[1.0; 4], &[1, 1, 2, 2]);
    for p in [-0.1, 1.5, f32::NAN] {
        let e = dropout(&x, p, 1, true).expect_err("bad p").to_string();
        assert!(e.contains("dropout") && e.contains("[0, 1]"), "{e}");
        // Checked even when not training: a bad config should fail early.
        dropout2d(&x, p, 1, false).expect_err("bad p, eval");
    }
    let v = upload(&[1.0; 4], &[2, 2]);
    let e = dropout2d(&v, 0.5, 1, true).expect_err("rank 2").to_string();
    assert!(e.contains("dropout2d") && e.contains("[2, 2]"), "{e}");
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut rng = Rng::new(23);
    let x = rng.vec(61);
    let r = rng.vec(61);
    let g = cpu::dropout(&r, 0.3, 11, 1);
    fd_check(
        |x| dot(&cpu::dropout(x, 0.3, 11, 1), &r),
        &x,
        &g,
        1e-2,
        1e-3,
        "dropout",
    );
}
