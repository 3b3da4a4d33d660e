use gpu_nn::ops::reduce::cpu;

use crate::common::*;

#[test]
fn sum_and_mean_over_each_dim_match_cpu() {
    let mut rng = Rng::new(4);
    let shape = [3, 5, 13, 7];
    let n: usize = shape.iter().product();
    let x = rng.vec(n);
    for dim in 0..4 {
        let xt = param(&x, &shape);
        let y = xt.mean_dim(dim).expect("mean");
        let scale = 1.0 / shape[dim] as f32;
        let want = cpu::sum_dim(&x, &shape, dim, scale);
        assert_close(&read(&y), &want, 1e-6, 1e-5, &format!("mean dim {dim}"));
        let r = rng.vec(want.len());
        let g = y.backward_with(&upload(&r, y.shape())).expect("backward");
        let gx = read(g.get(&xt).expect("grad"));
        let want_gx = cpu::sum_dim_backward(&r, &shape, dim, scale);
        assert_close(&gx, &want_gx, 1e-7, 1e-6, &format!("mean dim {dim} grad"));
        // The CPU backward against finite differences (on a smaller slice: cost is O(n^2)).
        let small = [2, 3, 4, 3];
        let xs = &x[..72];
        let rs = &r[..want_len(&small, dim)];
        let g_small = cpu::sum_dim_backward(rs, &small, dim, scale);
        fd_check(
            |v| dot(&cpu::sum_dim(v, &small, dim, scale), rs),
            xs,
            &g_small,
            1e-2,
            1e-3,
            &format!("sum dim {dim}"),
        );
    }
}

#[test]
fn sums_over_long_axes_match_cpu() {
    // Axes past 256 values take the 256-lane tree; the test above covers the short ones.
    let mut rng = Rng::new(5);
    let shape = [2, 300, 3];
    let x = rng.vec(shape.iter().product());
    for dim in 0..3 {
        let y = upload(&x, &shape).sum_dim(dim).expect("sum");
        let want = cpu::sum_dim(&x, &shape, dim, 1.0);
        assert_close(&read(&y), &want, 1e-5, 1e-5, &format!("sum dim {dim}"));
    }
}

fn want_len(shape: &[usize], dim: usize) -> usize {
    shape.iter().product::<usize>() / shape[dim]
}

#[test]
fn sum_of_many_elements() {
    // More than one pass of 256 lanes, and exact in f32: 100_003 halves.
    let n = 100_003;
    let x = upload(&vec![0.5; n], &[n]);
    let s = x.sum().expect("sum").item_blocking().expect("read");
    assert_eq!(s, 50_001.5);
}
