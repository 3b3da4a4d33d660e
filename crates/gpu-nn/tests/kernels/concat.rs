use gpu_nn::ops::concat::{cat_channels, cpu};

use crate::common::*;

// Pure copies: GPU and CPU must agree exactly, so every comparison uses tolerance 0.

#[test]
fn cat_channels_forward_and_backward_match_cpu() {
    let mut rng = Rng::new(11);
    let (n, hw) = (3, 13);
    let chans = [5, 1, 7];
    let data: Vec<Vec<f32>> = chans.iter().map(|&c| rng.vec(n * c * hw * hw)).collect();
    let ts: Vec<_> = chans
        .iter()
        .zip(&data)
        .map(|(&c, d)| param(d, &[n, c, hw, hw]))
        .collect();
    let refs: Vec<&_> = ts.iter().collect();
    let y = cat_channels(&refs).expect("cat");
    assert_eq!(y.shape(), &[n, 13, hw, hw]);
    let shapes: Vec<[usize; 4]> = chans.iter().map(|&c| [n, c, hw, hw]).collect();
    let pieces: Vec<(&[f32], &[usize])> = data
        .iter()
        .zip(&shapes)
        .map(|(d, s)| (d.as_slice(), s.as_slice()))
        .collect();
    let want = cpu::cat_channels(&pieces);
    assert_close(&read(&y), &want, 0.0, 0.0, "cat fwd");

    let r = rng.vec(y.numel());
    let g = y.backward_with(&upload(&r, y.shape())).expect("backward");
    let want = cpu::cat_channels_bwd(&r, n, &chans, hw * hw);
    for (k, t) in ts.iter().enumerate() {
        let got = read(g.get(t).expect("grad of a piece"));
        assert_close(&got, &want[k], 0.0, 0.0, &format!("cat bwd piece {k}"));
    }
}

#[test]
fn cat_channels_of_features_and_untracked_pieces() {
    // [N, F] inputs; the middle piece is a constant and gets no gradient.
    let mut rng = Rng::new(12);
    let (a, b, c) = (rng.vec(3 * 4), rng.vec(3 * 2), rng.vec(3 * 9));
    let (ta, tb, tc) = (param(&a, &[3, 4]), upload(&b, &[3, 2]), param(&c, &[3, 9]));
    let y = cat_channels(&[&ta, &tb, &tc]).expect("cat");
    assert_eq!(y.shape(), &[3, 15]);
    let want = cpu::cat_channels(&[(&a, &[3, 4]), (&b, &[3, 2]), (&c, &[3, 9])]);
    assert_close(&read(&y), &want, 0.0, 0.0, "cat 2-D fwd");
    let r = rng.vec(45);
    let g = y.backward_with(&upload(&r, &[3, 15])).expect("backward");
    let want = cpu::cat_channels_bwd(&r, 3, &[4, 2, 9], 1);
    assert_close(&read(g.get(&ta).expect("ga")), &want[0], 0.0, 0.0, "ga");
    assert!(g.get(&tb).is_none(), "a constant must get no gradient");
    assert_close(&read(g.get(&tc).expect("gc")), &want[2], 0.0, 0.0, "gc");
}

#[test]
fn narrow_channels_forward_and_backward_match_cpu() {
    let mut rng = Rng::new(13);
    let shape = [3, 13, 13, 13];
    let x = rng.vec(shape.iter().product());
    for (start, len) in [(0, 5), (5, 1), (6, 7), (0, 13)] {
        let xt = param(&x, &shape);
        let y = xt.narrow_channels(start, len).expect("narrow");
        assert_eq!(y.shape(), &[3, len, 13, 13]);
        let want = cpu::narrow_channels(&x, &shape, start, len);
        assert_close(&read(&y), &want, 0.0, 0.0, &format!("narrow {start}+{len}"));
        let r = rng.vec(y.numel());
        let g = y.backward_with(&upload(&r, y.shape())).expect("backward");
        let want = cpu::narrow_channels_bwd(&r, &shape, start, len);
        let got = read(g.get(&xt).expect("grad"));
        assert_close(&got, &want, 0.0, 0.0, &format!("narrow bwd {start}+{len}"));
    }
}

#[test]
fn narrow_undoes_cat() {
    let mut rng = Rng::new(14);
    let (a, b) = (rng.vec(3 * 5 * 4), rng.vec(3 * 7 * 4));
    let (ta, tb) = (upload(&a, &[3, 5, 4]), upload(&b, &[3, 7, 4]));
    let y = cat_channels(&[&ta, &tb]).expect("cat");
    assert_eq!(read(&y.narrow_channels(0, 5).expect("narrow")), a);
    assert_eq!(read(&y.narrow_channels(5, 7).expect("narrow")), b);
}

#[test]
fn cpu_gradients_match_finite_differences() {
    let mut rng = Rng::new(15);
    let shape = [3, 6, 5];
    let x = rng.vec(90);
    let r = rng.vec(3 * 4 * 5);
    let g = cpu::narrow_channels_bwd(&r, &shape, 1, 4);
    fd_check(
        |x| dot(&cpu::narrow_channels(x, &shape, 1, 4), &r),
        &x,
        &g,
        1e-2,
        1e-3,
        "narrow",
    );

    let (a, b) = (rng.vec(3 * 2 * 5), rng.vec(3 * 3 * 5));
    let r = rng.vec(3 * 5 * 5);
    let g = cpu::cat_channels_bwd(&r, 3, &[2, 3], 5);
    let loss_a = |a: &[f32]| dot(&cpu::cat_channels(&[(a, &[3, 2, 5]), (&b, &[3, 3, 5])]), &r);
    fd_check(loss_a, &a, &g[0], 1e-2, 1e-3, "cat a");
    let loss_b = |b: &[f32]| dot(&cpu::cat_channels(&[(&a, &[3, 2, 5]), (b, &[3, 3, 5])]), &r);
    fd_check(loss_b, &b, &g[1], 1e-2, 1e-3, "cat b");
}

#[test]
fn shape_errors_name_the_op() {
    let x = upload(&[0.0; 3 * 5 * 13 * 13], &[3, 5, 13, 13]);
    let bad_n = upload(&[0.0; 2 * 5 * 13 * 13], &[2, 5, 13, 13]);
    let bad_h = upload(&[0.0; 3 * 5 * 12 * 13], &[3, 5, 12, 13]);
    let bad_w = upload(&[0.0; 3 * 5 * 13 * 12], &[3, 5, 13, 12]);
    let bad_rank = upload(&[0.0; 3 * 5 * 169], &[3, 5, 169]);
    for (what, other) in [
        ("N", &bad_n),
        ("H", &bad_h),
        ("W", &bad_w),
        ("rank", &bad_rank),
    ] {
        let e = cat_channels(&[&x, other]).expect_err(what).to_string();
        assert!(
            e.contains("cat_channels") && e.contains("[3, 5, 13, 13]"),
            "{what}: {e}"
        );
    }
    let e = cat_channels(&[]).expect_err("empty list").to_string();
    assert!(
        e.contains("cat_channels") && e.contains("no tensors"),
        "{e}"
    );
    let v = upload(&[0.0; 4], &[4]);
    let e = cat_channels(&[&v]).expect_err("rank 1").to_string();
    assert!(e.contains("rank >= 2"), "{e}");

    for (start, len) in [(0, 0), (4, 2), (6, 1), (usize::MAX, 2)] {
        let e = x
            .narrow_channels(start, len)
            .expect_err("bad range")
            .to_string();
        assert!(
            e.contains("narrow_channels") && e.contains("[3, 5, 13, 13]"),
            "{e}"
        );
    }
    let e = v.narrow_channels(0, 1).expect_err("rank 1").to_string();
    assert!(e.contains("narrow_channels"), "{e}");
}
