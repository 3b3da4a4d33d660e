use gpu_nn::{Tensor, no_grad};

use crate::common::*;

#[test]
fn gradients_accumulate_over_shared_inputs() {
    // y = x*x + x  ->  dy/dx = 2x + 1, with x used three times in the graph.
    let x = param(&[1.0, -2.0, 3.0], &[3]);
    let y = x
        .mul(&x)
        .expect("mul")
        .add(&x)
        .expect("add")
        .sum()
        .expect("sum");
    let g = y.backward().expect("backward");
    assert_eq!(read(g.get(&x).expect("grad")), vec![3.0, -3.0, 7.0]);
}

#[test]
fn no_grad_and_detach_cut_the_graph() {
    let x = param(&[1.0, 2.0], &[2]);
    {
        let _g = no_grad();
        let y = x.relu().expect("relu");
        assert!(!y.is_tracked(), "ops under no_grad must not record");
    }
    let d = x.detach();
    assert!(!d.is_tracked());
    assert!(d.same_storage(&x), "detach must not copy");
    let y = d.relu().expect("relu").sum().expect("sum");
    assert!(
        y.backward().is_err(),
        "backward through detached input must fail"
    );
}

#[test]
fn reshape_is_a_view_and_passes_gradients() {
    let x = param(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let v = x.reshape(&[3, 2]).expect("reshape");
    assert!(v.same_storage(&x));
    assert!(x.reshape(&[4, 2]).is_err());
    let g = v
        .scale(2.0)
        .expect("scale")
        .sum()
        .expect("sum")
        .backward()
        .expect("bw");
    assert_eq!(read(g.get(&x).expect("grad")), vec![2.0; 6]);
}

#[test]
fn grads_accumulate_across_backward_calls() {
    let x = param(&[1.0, 2.0], &[2]);
    let mut g = x
        .scale(3.0)
        .expect("s")
        .sum()
        .expect("s")
        .backward()
        .expect("bw");
    let g2 = x
        .scale(-1.0)
        .expect("s")
        .sum()
        .expect("s")
        .backward()
        .expect("bw");
    g.accumulate(g2).expect("accumulate");
    assert_eq!(read(g.get(&x).expect("grad")), vec![2.0, 2.0]);
}

#[test]
fn zero_sized_and_mismatched_inputs_are_errors() {
    let gpu = gpu();
    assert!(Tensor::zeros(&gpu, &[3, 0, 2]).is_err());
    assert!(Tensor::from_slice(&gpu, &[1.0, 2.0], &[3]).is_err());
    let too_big = (gpu.max_binding_bytes() / 4 + 1) as usize;
    let e = Tensor::zeros(&gpu, &[too_big]).expect_err("larger than a binding");
    assert!(e.to_string().contains("maximum storage binding"), "{e}");
}

#[test]
fn retained_intermediates_get_their_gradients() {
    // h = 2x, y = sum(h * h)  ->  dy/dh = 2h = 4x; dy/dx = 8x.
    let x = param(&[1.0, -2.0, 0.5], &[3]);
    let h = x.scale(2.0).expect("scale");
    let y = h.mul(&h).expect("mul").sum().expect("sum");
    let unrelated = x.scale(5.0).expect("scale");
    let seed = Tensor::full(y.gpu(), y.shape(), 1.0).expect("seed");
    let g = y
        .backward_retaining(&seed, &[h.clone(), unrelated.clone()])
        .expect("backward");
    assert_eq!(read(g.get(&h).expect("grad of h")), vec![4.0, -8.0, 2.0]);
    assert_eq!(read(g.get(&x).expect("grad of x")), vec![8.0, -16.0, 4.0]);
    assert!(g.get(&unrelated).is_none());
    // Without retaining, only the leaf's.
    let g = y.backward().expect("backward");
    assert!(g.get(&h).is_none() && g.get(&x).is_some());
}
