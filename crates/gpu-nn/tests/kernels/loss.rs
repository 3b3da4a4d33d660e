use gpu_nn::Tensor;
use gpu_nn::ops::loss::{argmax, bce_with_logits, correct_count, cpu, cross_entropy, nll_loss};

use crate::common::*;

const N: usize = 7;
const C: usize = 13;

/// Random logits in [-3, 3) with some extreme entries (+-80: exp(80) overflows f32 unless the
/// row maximum is subtracted first).
fn logits(rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = rng.vec(N * C).into_iter().map(|v| 3.0 * v).collect();
    x[0] = 80.0;
    x[C + 4] = -80.0;
    x[2 * C + 1] = 80.0;
    x[2 * C + 2] = 79.5;
    x[3 * C..4 * C].fill(-80.0);
    x[3 * C + 7] = 80.0;
    x
}

/// One valid class per row, including a row whose target is the +80 logit and one whose target
/// is a -80 logit (a loss of ~160).
fn targets() -> Vec<f32> {
    vec![0.0, 4.0, 2.0, 7.0, 12.0, 5.0, 9.0]
}

// Tolerances: rows of 13 terms. In rows with a logit near 80 the f32 log-sum-exp (~80.5) is
// rounded to ulp(80) ~ 8e-6, an absolute error every output of the row inherits (x - lse, and
// exp(x - lse) relative), and WGSL allows exp/log a few ulps more: atol 1e-5 plus rtol 1e-5.
#[test]
fn log_softmax_and_softmax_match_cpu() {
    let mut rng = Rng::new(21);
    let x = logits(&mut rng);
    let r = rng.vec(N * C);
    for log in [true, false] {
        let xt = param(&x, &[N, C]);
        let y = if log { xt.log_softmax() } else { xt.softmax() }.expect("forward");
        let want = if log {
            cpu::log_softmax(&x, C)
        } else {
            cpu::softmax(&x, C)
        };
        assert_close(&read(&y), &want, 1e-5, 1e-5, &format!("log={log} fwd"));
        let g = y.backward_with(&upload(&r, &[N, C])).expect("backward");
        let want = if log {
            cpu::log_softmax_backward(&x, C, &r)
        } else {
            cpu::softmax_backward(&x, C, &r)
        };
        let gx = read(g.get(&xt).expect("grad"));
        assert_close(&gx, &want, 1e-5, 1e-5, &format!("log={log} bwd"));
    }
}

#[test]
fn log_softmax_of_a_wide_row() {
    // C = 1000 > 256 lanes: each lane handles several columns.
    let mut rng = Rng::new(22);
    let c = 1000;
    let x: Vec<f32> = rng.vec(3 * c).into_iter().map(|v| 10.0 * v).collect();
    let y = upload(&x, &[3, c]).log_softmax().expect("forward");
    assert_close(&read(&y), &cpu::log_softmax(&x, c), 1e-5, 1e-5, "wide rows");
    // Rows past 256 values take the 256-lane kernels, shorter ones the one-invocation
    // kernels: the backward and the fused cross-entropy on wide rows too.
    for log in [true, false] {
        let xt = param(&x, &[3, c]);
        let y = if log { xt.log_softmax() } else { xt.softmax() }.expect("forward");
        let r = rng.vec(3 * c);
        let g = y.backward_with(&upload(&r, &[3, c])).expect("backward");
        let want = if log {
            cpu::log_softmax_backward(&x, c, &r)
        } else {
            cpu::softmax_backward(&x, c, &r)
        };
        assert_close(
            read(g.get(&xt).expect("grad")).as_slice(),
            &want,
            1e-5,
            1e-4,
            "wide bwd",
        );
    }
    let t = vec![999.0, 0.0, 517.0];
    let xt = param(&x, &[3, c]);
    let loss = cross_entropy(&xt, &upload(&t, &[3])).expect("cross_entropy");
    let got = read(&loss)[0];
    assert_close(
        &[got],
        &[cpu::cross_entropy(&x, c, &t)],
        1e-5,
        1e-5,
        "wide ce",
    );
    let g = loss.backward_with(&upload(&[1.0], &[1])).expect("backward");
    let want = cpu::cross_entropy_backward(&x, c, &t, 1.0);
    assert_close(
        read(g.get(&xt).expect("grad")).as_slice(),
        &want,
        1e-6,
        1e-4,
        "wide ce bwd",
    );
}

#[test]
fn nll_and_cross_entropy_match_cpu() {
    let mut rng = Rng::new(23);
    let x = logits(&mut rng);
    let t = targets();
    let tt = upload(&t, &[N]);
    let gscale = 0.7;

    let xt = param(&x, &[N, C]);
    let ce = cross_entropy(&xt, &tt).expect("cross_entropy");
    let want = cpu::cross_entropy(&x, C, &t);
    // The extreme rows contribute ~160 / 7: a sum of 7 terms up to that size.
    assert_close(
        &[ce.item_blocking().expect("read")],
        &[want],
        1e-5,
        1e-5,
        "ce",
    );
    assert!(want > 10.0, "the -80 target row must dominate: {want}");
    let g = ce
        .backward_with(&upload(&[gscale], &[1]))
        .expect("backward");
    let want_g = cpu::cross_entropy_backward(&x, C, &t, gscale);
    // Gradients are softmax / 7 ~ 0.1 at most; the lse error above is relative here.
    assert_close(
        &read(g.get(&xt).expect("grad")),
        &want_g,
        1e-6,
        1e-5,
        "ce grad",
    );

    // log_softmax + nll_loss gives the same loss and gradient.
    let xt2 = param(&x, &[N, C]);
    let nll = nll_loss(&xt2.log_softmax().expect("lsm"), &tt).expect("nll");
    assert_close(
        &[nll.item_blocking().expect("read")],
        &[want],
        1e-5,
        1e-5,
        "nll",
    );
    let g2 = nll
        .backward_with(&upload(&[gscale], &[1]))
        .expect("backward");
    assert_close(
        &read(g2.get(&xt2).expect("grad")),
        &want_g,
        1e-6,
        1e-5,
        "nll grad",
    );

    // nll_loss alone, against its reference and its own backward.
    let lp = cpu::log_softmax(&x, C);
    let lpt = param(&lp, &[N, C]);
    let nll = nll_loss(&lpt, &tt).expect("nll");
    let got = nll.item_blocking().expect("read");
    assert_close(&[got], &[cpu::nll_loss(&lp, C, &t)], 1e-5, 1e-5, "nll only");
    let g3 = nll
        .backward_with(&upload(&[gscale], &[1]))
        .expect("backward");
    let want = cpu::nll_loss_backward(C, &t, gscale);
    assert_close(
        &read(g3.get(&lpt).expect("grad")),
        &want,
        0.0,
        1e-6,
        "nll only grad",
    );
}

#[test]
fn bce_with_logits_matches_cpu_for_soft_targets() {
    let mut rng = Rng::new(24);
    let mut x: Vec<f32> = rng.vec(N * C).into_iter().map(|v| 4.0 * v).collect();
    x[0] = 80.0;
    x[1] = -80.0;
    x[2] = 30.0;
    let t: Vec<f32> = rng.vec(N * C).into_iter().map(|v| 0.5 * v + 0.5).collect();
    let xt = param(&x, &[N, C]);
    let tt = param(&t, &[N, C]);
    let loss = bce_with_logits(&xt, &tt).expect("bce");
    let want = cpu::bce_with_logits(&x, &t);
    assert_close(
        &[loss.item_blocking().expect("read")],
        &[want],
        1e-6,
        1e-5,
        "bce",
    );
    let g = loss.backward_with(&upload(&[1.3], &[1])).expect("backward");
    let (gx, gt) = cpu::bce_with_logits_backward(&x, &t, 1.3);
    assert_close(&read(g.get(&xt).expect("gx")), &gx, 1e-7, 1e-5, "bce dx");
    assert_close(&read(g.get(&tt).expect("gt")), &gt, 1e-7, 1e-5, "bce dt");

    // Hard targets at the extremes: loss of x = +-80 with the matching target is ~e^-80, with
    // the wrong target 80; nothing overflows.
    let xt = upload(&[80.0, -80.0, 80.0, -80.0], &[4]);
    let tt = upload(&[1.0, 0.0, 0.0, 1.0], &[4]);
    let l = bce_with_logits(&xt, &tt)
        .expect("bce")
        .item_blocking()
        .expect("read");
    assert_close(&[l], &[40.0], 0.0, 1e-6, "extreme bce");
}

#[test]
fn cpu_gradients_match_finite_differences() {
    let mut rng = Rng::new(25);
    let (n, c) = (3, 5);
    let x: Vec<f32> = rng.vec(n * c).into_iter().map(|v| 2.0 * v).collect();
    let t = vec![1.0, 4.0, 0.0];
    let r = rng.vec(n * c);
    let g = cpu::log_softmax_backward(&x, c, &r);
    fd_check(
        |x| dot(&cpu::log_softmax(x, c), &r),
        &x,
        &g,
        1e-2,
        2e-3,
        "log_softmax",
    );
    let g = cpu::softmax_backward(&x, c, &r);
    fd_check(
        |x| dot(&cpu::softmax(x, c), &r),
        &x,
        &g,
        1e-2,
        2e-3,
        "softmax",
    );
    let g = cpu::cross_entropy_backward(&x, c, &t, 1.0);
    fd_check(
        |x| f64::from(cpu::cross_entropy(x, c, &t)),
        &x,
        &g,
        1e-2,
        2e-3,
        "ce",
    );
    let g = cpu::nll_loss_backward(c, &t, 1.0);
    fd_check(
        |x| f64::from(cpu::nll_loss(x, c, &t)),
        &x,
        &g,
        1e-2,
        2e-3,
        "nll",
    );
    let tb: Vec<f32> = rng.vec(n * c).into_iter().map(|v| 0.5 * v + 0.5).collect();
    let (gx, gt) = cpu::bce_with_logits_backward(&x, &tb, 1.0);
    fd_check(
        |x| f64::from(cpu::bce_with_logits(x, &tb)),
        &x,
        &gx,
        1e-2,
        2e-3,
        "bce dx",
    );
    fd_check(
        |t| f64::from(cpu::bce_with_logits(&x, t)),
        &tb,
        &gt,
        1e-2,
        2e-3,
        "bce dt",
    );
}

#[test]
fn argmax_and_correct_count() {
    let mut rng = Rng::new(26);
    let mut x = logits(&mut rng);
    // Ties: row 5 has its maximum at columns 3 and 8; the first one counts.
    x[5 * C..6 * C].fill(0.0);
    x[5 * C + 3] = 2.0;
    x[5 * C + 8] = 2.0;
    let want = cpu::argmax(&x, C);
    assert_eq!(want[5], 3.0);
    let xt = upload(&x, &[N, C]);
    assert_eq!(read(&argmax(&xt).expect("argmax")), want);
    // Targets: rows 0, 3 and 5 right, the others wrong, one target invalid.
    let mut t: Vec<f32> = want.iter().map(|&a| (a + 1.0) % C as f32).collect();
    t[0] = want[0];
    t[3] = want[3];
    t[5] = want[5];
    t[6] = -1.0;
    let got = correct_count(&xt, &upload(&t, &[N])).expect("count");
    assert_eq!(read(&got), vec![3.0]);
    assert_eq!(cpu::correct_count(&x, C, &t), 3.0);

    // A wide row with the maximum in the last lane's stride and a tie across lanes.
    let c = 600;
    let mut w = vec![0.0f32; 2 * c];
    w[599] = 5.0;
    // Index 300 is in lane 44, indices 45 and 557 in lane 45: the first occurrence is in a
    // higher lane than another tied value.
    w[c + 300] = 1.0;
    w[c + 45] = 1.0;
    w[c + 557] = 1.0;
    let got = read(&argmax(&upload(&w, &[2, c])).expect("argmax"));
    assert_eq!(got, vec![599.0, 45.0]);
}

#[test]
fn invalid_targets_give_nan_rows_without_out_of_bounds_reads() {
    let mut rng = Rng::new(27);
    let x = logits(&mut rng);
    for bad in [13.0, -1.0, 2.5, f32::NAN, 1e9] {
        let mut t = targets();
        t[4] = bad;
        let tt = upload(&t, &[N]);
        let xt = param(&x, &[N, C]);
        let ce = cross_entropy(&xt, &tt).expect("cross_entropy");
        let v = ce.item_blocking().expect("read");
        assert!(v.is_nan(), "target {bad}: loss must be NaN, got {v}");
        let g = read(ce.backward().expect("bwd").get(&xt).expect("grad"));
        assert!(
            g[4 * C..5 * C].iter().all(|v| v.is_nan()),
            "target {bad}: NaN row"
        );
        let rest = [&g[..4 * C], &g[5 * C..]].concat();
        assert!(
            rest.iter().all(|v| v.is_finite()),
            "target {bad}: other rows finite"
        );

        let lpt = param(&cpu::log_softmax(&x, C), &[N, C]);
        let nll = nll_loss(&lpt, &tt).expect("nll");
        let v = nll.item_blocking().expect("read");
        assert!(v.is_nan(), "target {bad}: nll must be NaN, got {v}");
        let g = read(nll.backward().expect("bwd").get(&lpt).expect("grad"));
        assert!(
            g[4 * C..5 * C].iter().all(|v| v.is_nan()),
            "target {bad}: NaN nll row"
        );
        assert_eq!(
            g.iter().filter(|v| v.is_finite() && **v != 0.0).count(),
            N - 1
        );
    }
    // The gpu reported no validation or out-of-bounds error along the way.
    gpu().sync().expect("no GPU error");
}

#[test]
fn shape_errors() {
    let x = upload(&[0.0; 12], &[3, 4]);
    let t3 = upload(&[0.0; 3], &[3]);
    let t4 = upload(&[0.0; 4], &[4]);
    let msg = |r: gpu_nn::Result<Tensor>| r.expect_err("must fail").to_string();
    let m = msg(cross_entropy(&x, &t4));
    assert!(
        m.contains("cross_entropy") && m.contains("[4]") && m.contains("[3]"),
        "{m}"
    );
    let m = msg(nll_loss(&x, &t4));
    assert!(m.contains("nll_loss") && m.contains("targets"), "{m}");
    let m = msg(correct_count(&x, &upload(&[0.0; 3], &[3, 1])));
    assert!(m.contains("correct_count") && m.contains("[3, 1]"), "{m}");
    let x3 = upload(&[0.0; 12], &[3, 2, 2]);
    assert!(msg(cross_entropy(&x3, &t3)).contains("[N, C]"));
    assert!(msg(x3.log_softmax()).contains("log_softmax"));
    assert!(msg(x3.softmax()).contains("softmax"));
    assert!(msg(argmax(&t3)).contains("argmax"));
    let m = msg(bce_with_logits(&x, &upload(&[0.0; 12], &[4, 3])));
    assert!(
        m.contains("bce_with_logits") && m.contains("[3, 4]") && m.contains("[4, 3]"),
        "{m}"
    );
}
