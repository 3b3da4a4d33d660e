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
    use cpu::BinaryKind;
    let mut rng = Rng::new(3);
    let shape = [7, 11];
    let a = rng.vec(77);
    let b = rng.vec(77);
    let r = rng.vec(77);
    let (ta, tb) = (param(&a, &shape), param(&b, &shape));
    for op in [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Axpby(0.5, -2.0),
    ] {
        let y = match op {
            BinaryKind::Add => ta.add(&tb),
            BinaryKind::Sub => ta.sub(&tb),
            BinaryKind::Mul => ta.mul(&tb),
            BinaryKind::Axpby(al, be) => ta.axpby(al, &tb, be),
        }
        .expect("binary");
        let what = format!("{op:?}");
        assert_close(&read(&y), &cpu::binary(op, &a, &b), 1e-6, 1e-6, &what);
        let g = y.backward_with(&upload(&r, &shape)).expect("backward");
        let (ga, gb) = cpu::binary_bwd(op, &a, &b, &r);
        assert_close(&read(g.get(&ta).expect("ga")), &ga, 1e-6, 1e-6, &what);
        assert_close(&read(g.get(&tb).expect("gb")), &gb, 1e-6, 1e-6, &what);
        // The CPU backward against finite differences, in each argument.
        fd_check(
            |x| dot(&cpu::binary(op, x, &b), &r),
            &a,
            &ga,
            1e-2,
            2e-3,
            &what,
        );
        fd_check(
            |x| dot(&cpu::binary(op, &a, x), &r),
            &b,
            &gb,
            1e-2,
            2e-3,
            &what,
        );
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

#[test]
fn buffer_variant_kernels_match_cpu() {
    // Lavapipe reads the inputs from operand textures; the buffer variant (what GPUs run)
    // gets the same comparisons on a device without them.
    with_gpu(portable_gpu(), || {
        unary_forward_and_backward_match_cpu();
        binary_ops_and_their_gradients();
    });
}
