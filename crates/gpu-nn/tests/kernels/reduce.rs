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
        // d mean / dx = r broadcast back over dim, divided by its size.
        let mut out_shape = shape.to_vec();
        out_shape[dim] = 1;
        let gx = read(g.get(&xt).expect("grad"));
        for (i, v) in gx.iter().enumerate() {
            let inner: usize = shape[dim + 1..].iter().product();
            let outer_i = i / (shape[dim] * inner);
            let inner_i = i % inner;
            let want = r[outer_i * inner + inner_i] * scale;
            assert!(
                (v - want).abs() < 1e-6,
                "dim {dim} grad at {i}: {v} vs {want}"
            );
        }
    }
}

#[test]
fn sum_of_many_elements() {
    // More than one pass of 256 lanes, and exact in f32: 100_003 halves.
    let n = 100_003;
    let x = upload(&vec![0.5; n], &[n]);
    let s = x.sum().expect("sum").item_blocking().expect("read");
    assert_eq!(s, 50_001.5);
}
