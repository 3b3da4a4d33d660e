use gpu_nn::ops::elementwise::cpu;
use gpu_nn::{Tensor, Unary};

use crate::common::*;

const FUNCS: [Unary; 7] = [
    Unary::Relu,
    Unary::LeakyRelu(0.2),
    Unary::Sigmoid,
    Unary::Tanh,
    Unary::Affine(-1.5, 0.25),
    Unary::Exp,
    Unary::Square,
];

#[test]
fn unary_forward_and_backward_match_cpu() {
    let mut rng = Rng::new(1);
    // 3*5*13*13 = 2535 elements: not a multiple of the workgroup size.
    let shape = [3, 5, 13, 13];
    let n: usize = shape.iter().product();
    let x = rng.vec_away_from_zero(n, 0.01);
    let r = rng.vec(n);
    for f in FUNCS {
        let xt = param(&x, &shape);
        let y = xt.unary(f).expect("forward");
        assert_close(
            &read(&y),
            &cpu::unary_fwd(f, &x),
            1e-6,
            1e-5,
            &format!("{f:?} fwd"),
        );
        let grads = y.backward_with(&upload(&r, &shape)).expect("backward");
        let gx = read(grads.get(&xt).expect("grad of x"));
        assert_close(
            &gx,
            &cpu::unary_bwd(f, &x, &r),
            1e-6,
            1e-5,
            &format!("{f:?} bwd"),
        );
    }
}

#[test]
fn unary_cpu_gradients_match_finite_differences() {
    let mut rng = Rng::new(2);
    let x = rng.vec_away_from_zero(37, 0.05);
    let r = rng.vec(37);
    for f in FUNCS {
        let g = cpu::unary_bwd(f, &x, &r);
        fd_check(
            |x| dot(&cpu::unary_fwd(f, x), &r),
            &x,
            &g,
            1e-2,
            2e-3,
            &format!("{f:?}"),
        );
    }
}

#[test]
fn sigmoid_is_stable_for_large_inputs() {
    let x = upload(&[-100.0, -30.0, 0.0, 30.0, 100.0], &[5]);
    let y = read(&x.sigmoid().expect("sigmoid"));
    assert_close(
        &y,
        &[0.0, 9.357623e-14, 0.5, 1.0, 1.0],
        1e-7,
        1e-5,
        "sigmoid",
    );
}

#[test]
fn binary_ops_and_their_gradients() {
    let mut rng = Rng::new(3);
    let shape = [7, 11];
    let a = rng.vec(77);
    let b = rng.vec(77);
    let r = rng.vec(77);
    let (ta, tb) = (param(&a, &shape), param(&b, &shape));
    type Case = (&'static str, fn(f32, f32) -> f32, (f32, f32, f32, f32));
    let cases: [Case; 4] = [
        ("add", |x, y| x + y, (1.0, 0.0, 1.0, 0.0)),
        ("sub", |x, y| x - y, (1.0, 0.0, -1.0, 0.0)),
        ("mul", |x, y| x * y, (0.0, 1.0, 0.0, 1.0)),
        ("axpby", |x, y| 0.5 * x - 2.0 * y, (0.5, 0.0, -2.0, 0.0)),
    ];
    for (name, f, (da_c, da_b, db_c, db_a)) in cases {
        let y = match name {
            "add" => ta.add(&tb),
            "sub" => ta.sub(&tb),
            "mul" => ta.mul(&tb),
            _ => ta.axpby(0.5, &tb, -2.0),
        }
        .expect(name);
        let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
        assert_close(&read(&y), &want, 1e-6, 1e-6, name);
        let g = y.backward_with(&upload(&r, &shape)).expect("backward");
        // d/da = da_c + da_b * b ; d/db = db_c + db_a * a
        let ga: Vec<f32> = (0..77).map(|i| r[i] * (da_c + da_b * b[i])).collect();
        let gb: Vec<f32> = (0..77).map(|i| r[i] * (db_c + db_a * a[i])).collect();
        assert_close(&read(g.get(&ta).expect("ga")), &ga, 1e-6, 1e-6, name);
        assert_close(&read(g.get(&tb).expect("gb")), &gb, 1e-6, 1e-6, name);
    }
}

#[test]
fn binary_shape_mismatch_is_an_error_naming_the_op() {
    let a = upload(&[1.0; 6], &[2, 3]);
    let b = upload(&[1.0; 6], &[3, 2]);
    let e = a.add(&b).expect_err("mismatched shapes must fail");
    let msg = e.to_string();
    assert!(
        msg.contains("add") && msg.contains("[2, 3]") && msg.contains("[3, 2]"),
        "{msg}"
    );
}

#[test]
fn large_tensor_spills_dispatch_into_y() {
    // 70_000 workgroups of 256 > 65_535 per dimension.
    let n = 256 * 70_000;
    let x = Tensor::full(&gpu(), &[n], 2.0).expect("full");
    let y = read(&x.scale(1.5).expect("scale"));
    assert_eq!(y.len(), n);
    assert!(y.iter().all(|&v| v == 3.0), "every element must be written");
}
