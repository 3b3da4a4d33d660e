//! conv2d and conv_transpose2d vs their CPU references, forward and every gradient.
//!
//! Tolerances: each output is a sum of at most a few hundred f32 products (weight gradient:
//! N*Ho*Wo terms, a few hundred here) in a different order than the f64 reference, with
//! inputs in [-1, 1]: atol 1e-4, rtol 1e-4 covers that rounding with room, while any
//! indexing mistake moves values by O(0.1).

use gpu_nn::ops::conv::{
    Conv2dOpts, ConvTranspose2dOpts, conv_transpose2d, conv2d, conv2d_naive, cpu,
};
use gpu_nn::{KernelSet, Tensor};

use crate::common::*;

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn conv2d_case(name: &str, xs: [usize; 4], ws: [usize; 4], o: Conv2dOpts, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = rng.vec(xs.iter().product());
    let w = rng.vec(ws.iter().product());
    let b = rng.vec(ws[0]);
    let (want, ys) = cpu::conv2d(&x, xs, &w, ws, Some(&b), &o);
    let (tx, tw, tb) = (param(&x, &xs), param(&w, &ws), param(&b, &[ws[0]]));
    let y = conv2d(&tx, &tw, Some(&tb), o).expect("conv2d");
    assert_eq!(y.shape(), ys, "{name}: output shape");
    assert_close(&read(&y), &want, ATOL, RTOL, &format!("{name} forward"));

    // The naive kernel computes the same thing (no bias, to cover that path too).
    let (want_nb, _) = cpu::conv2d(&x, xs, &w, ws, None, &o);
    let naive = conv2d_naive(&tx, &tw, None, o).expect("naive");
    assert_close(
        &read(&naive),
        &want_nb,
        ATOL,
        RTOL,
        &format!("{name} naive"),
    );
    let tiled_nb = conv2d(&tx, &tw, None, o).expect("conv2d no bias");
    assert_close(
        &read(&tiled_nb),
        &want_nb,
        ATOL,
        RTOL,
        &format!("{name} no bias"),
    );

    let r = rng.vec(y.numel());
    let grads = y.backward_with(&upload(&r, &ys)).expect("backward");
    let (dx, dw, db) = cpu::conv2d_backward(&x, xs, &w, ws, &r, &o);
    let got = |t: &Tensor| read(grads.get(t).expect("gradient"));
    assert_close(&got(&tx), &dx, ATOL, RTOL, &format!("{name} dx"));
    assert_close(&got(&tw), &dw, ATOL, RTOL, &format!("{name} dw"));
    assert_close(&got(&tb), &db, ATOL, RTOL, &format!("{name} db"));
}

/// Channel counts that pick each tile height of both kernel sets (8/16/32 rows with
/// subgroups, 16/32/64 without), in every pass: forward and weight gradient have rows =
/// output channels, the input gradient rows = input channels.
fn channel_count_cases() {
    let o = Conv2dOpts {
        padding: (1, 1),
        ..Conv2dOpts::default()
    };
    conv2d_case("12 -> 20 channels", [2, 12, 9, 7], [20, 12, 3, 3], o, 10);
    conv2d_case("20 -> 12 channels", [2, 20, 7, 9], [12, 20, 3, 3], o, 11);
    let s2 = Conv2dOpts {
        stride: (2, 2),
        padding: (1, 1),
        ..Conv2dOpts::default()
    };
    conv2d_case(
        "40 -> 9 channels, stride 2",
        [2, 40, 9, 8],
        [9, 40, 3, 3],
        s2,
        12,
    );
}

/// Output widths that are multiples of 4 with stride and dilation 1 along w: the subgroup
/// forward then slides a window along each row (the input gradient too, when the input
/// width is a multiple of 4 and both strides are 1). Taps reach both padded edges.
fn row_window_cases() {
    let p = |h, w| Conv2dOpts {
        padding: (h, w),
        ..Conv2dOpts::default()
    };
    conv2d_case("row window 3x3", [2, 3, 7, 8], [20, 3, 3, 3], p(1, 1), 13);
    conv2d_case("row window 5x5", [2, 4, 6, 12], [9, 4, 5, 5], p(1, 2), 14);
    // Nine kernel columns: a long row window forward and backward; the weight gradient
    // takes the general kernel (its row window holds at most four columns).
    conv2d_case("row window 3x9", [2, 3, 7, 12], [5, 3, 3, 9], p(1, 4), 19);
    let sh2 = Conv2dOpts {
        stride: (2, 1),
        dilation: (2, 1),
        padding: (1, 1),
        groups: 1,
    };
    conv2d_case(
        "row window, stride and dilation along h",
        [2, 3, 9, 8],
        [12, 3, 3, 3],
        sh2,
        15,
    );
    let dh2 = Conv2dOpts {
        dilation: (2, 1),
        padding: (2, 1),
        ..Conv2dOpts::default()
    };
    conv2d_case(
        "row window, dilation along h",
        [2, 5, 9, 8],
        [7, 5, 3, 3],
        dh2,
        16,
    );
}

#[test]
fn conv2d_row_window_matches_cpu() {
    row_window_cases();
}

#[test]
fn conv2d_channel_counts_match_cpu() {
    channel_count_cases();
}

#[test]
fn subgroup_kernels_are_used_where_the_adapter_has_them() {
    // Otherwise the kernel tests would silently cover only the portable path.
    let g = gpu();
    let info = g.adapter_info();
    let has = g
        .device()
        .features()
        .contains(gpu_nn::wgpu::Features::SUBGROUP);
    let cpu = info.device_type == gpu_nn::wgpu::DeviceType::Cpu;
    let set = cpu_subgroup(&g);
    assert_eq!(
        set.is_some(),
        has && info.subgroup_min_size >= 4 && cpu && cfg!(feature = "cpu-drivers"),
        "{} (subgroups {}..{})",
        info.name,
        info.subgroup_min_size,
        info.subgroup_max_size
    );
    assert_eq!(portable_gpu().kernel_set(), KernelSet::Portable);
    #[cfg(feature = "cpu-drivers")]
    if let Some((lanes, textures)) = set {
        let expected = if info.subgroup_min_size >= 8 { 8 } else { 4 };
        assert_eq!(lanes, expected);
        // Operand textures only on lavapipe; the SwiftShader-like device reads buffers, so
        // the tests below cover both ways of reading texels.
        assert_eq!(textures, info.name.contains("llvmpipe"), "{}", info.name);
        assert_eq!(cpu_subgroup(&four_lane_gpu()), Some((4, false)));
    }
}

#[cfg(feature = "cpu-drivers")]
#[test]
fn four_lane_kernels_match_cpu() {
    // The subgroup kernels as SwiftShader (4-lane subgroups) runs them: blocks of 4 rows,
    // operands read from their buffers.
    let g = four_lane_gpu();
    assert!(
        cpu_subgroup(&g).is_some() || cpu_subgroup(&gpu()).is_none(),
        "the 4-lane device lost the subgroup kernels"
    );
    with_gpu(g, every_case);
}

#[test]
fn portable_kernels_match_cpu() {
    // The same comparisons on a device that does not use subgroup kernels.
    with_gpu(portable_gpu(), every_case);
}

/// Every GPU-vs-CPU comparison of this file, on whatever device `gpu()` returns.
fn every_case() {
    channel_count_cases();
    row_window_cases();
    conv2d_odd_shapes_match_cpu();
    conv2d_special_kernels_match_cpu();
    conv2d_larger_than_one_tile_matches_cpu();
    conv_transpose2d_matches_cpu();
}

#[test]
fn conv2d_odd_shapes_match_cpu() {
    let o = Conv2dOpts {
        stride: (2, 2),
        padding: (1, 1),
        dilation: (2, 2),
        groups: 2,
    };
    conv2d_case("grouped 3x2 s2 p1 d2", [3, 4, 13, 11], [6, 2, 3, 2], o, 1);
    let o = Conv2dOpts {
        stride: (1, 2),
        padding: (2, 0),
        dilation: (1, 3),
        groups: 1,
    };
    conv2d_case("mixed pairs", [3, 6, 13, 11], [5, 6, 2, 3], o, 2);
    // One group and strides: the input gradient goes through the GEMM and col2im (128
    // output channels, as in the DCGAN). With dilation col2im walks every tap; without,
    // every stride-th.
    let o = Conv2dOpts {
        stride: (2, 3),
        padding: (1, 2),
        dilation: (2, 1),
        groups: 1,
    };
    conv2d_case(
        "strided and dilated, GEMM route",
        [2, 3, 13, 11],
        [128, 3, 3, 2],
        o,
        7,
    );
    let o = Conv2dOpts {
        stride: (2, 2),
        padding: (1, 1),
        ..Conv2dOpts::default()
    };
    conv2d_case("stride 2, GEMM route", [2, 5, 9, 8], [128, 5, 3, 3], o, 8);
}

#[test]
fn conv2d_special_kernels_match_cpu() {
    conv2d_case(
        "1x1",
        [3, 6, 13, 11],
        [5, 6, 1, 1],
        Conv2dOpts::default(),
        3,
    );
    let dw = Conv2dOpts {
        padding: (1, 1),
        groups: 6,
        ..Conv2dOpts::default()
    };
    conv2d_case("depthwise", [3, 6, 13, 11], [6, 1, 3, 3], dw, 4);
    let big_stride = Conv2dOpts {
        stride: (3, 4),
        ..Conv2dOpts::default()
    };
    conv2d_case(
        "stride > kernel",
        [3, 4, 13, 11],
        [5, 4, 2, 2],
        big_stride,
        5,
    );
}

#[test]
fn conv2d_larger_than_one_tile_matches_cpu() {
    // 70 output channels and 3*15*15 = 675 pixels: several tiles in M and N, partial edges;
    // K = 5*3*3 = 45 is not a multiple of the K step. The weight gradient is split over K.
    let o = Conv2dOpts {
        padding: (1, 1),
        ..Conv2dOpts::default()
    };
    conv2d_case("multi-tile", [3, 5, 15, 15], [70, 5, 3, 3], o, 6);
    // Stride 2 takes the weight gradient's kernel without the row window; 675 pixels split
    // it over K too, so its partial slices must not overlap.
    let o = Conv2dOpts {
        stride: (2, 2),
        padding: (1, 1),
        ..Conv2dOpts::default()
    };
    conv2d_case("multi-tile stride 2", [3, 5, 29, 29], [70, 5, 3, 3], o, 7);
}

fn transpose_case(name: &str, xs: [usize; 4], ws: [usize; 4], o: ConvTranspose2dOpts, seed: u64) {
    let mut rng = Rng::new(seed);
    let cout = ws[1] * o.groups;
    let x = rng.vec(xs.iter().product());
    let w = rng.vec(ws.iter().product());
    let b = rng.vec(cout);
    let (want, ys) = cpu::conv_transpose2d(&x, xs, &w, ws, Some(&b), &o);
    let (tx, tw, tb) = (param(&x, &xs), param(&w, &ws), param(&b, &[cout]));
    let y = conv_transpose2d(&tx, &tw, Some(&tb), o).expect("conv_transpose2d");
    assert_eq!(y.shape(), ys, "{name}: output shape");
    assert_close(&read(&y), &want, ATOL, RTOL, &format!("{name} forward"));

    let r = rng.vec(y.numel());
    let grads = y.backward_with(&upload(&r, &ys)).expect("backward");
    let (dx, dw, db) = cpu::conv_transpose2d_backward(&x, xs, &w, ws, &r, &o);
    let got = |t: &Tensor| read(grads.get(t).expect("gradient"));
    assert_close(&got(&tx), &dx, ATOL, RTOL, &format!("{name} dx"));
    assert_close(&got(&tw), &dw, ATOL, RTOL, &format!("{name} dw"));
    assert_close(&got(&tb), &db, ATOL, RTOL, &format!("{name} db"));
}

#[test]
fn conv_transpose2d_matches_cpu() {
    let o = ConvTranspose2dOpts {
        stride: (2, 2),
        padding: (1, 1),
        output_padding: (1, 1),
        dilation: (1, 1),
        groups: 2,
    };
    // w [Cin=4, Cout/g=3, 3, 2]: 6 output channels.
    transpose_case("grouped s2 p1 op1", [3, 4, 7, 6], [4, 3, 3, 2], o, 7);
    let o = ConvTranspose2dOpts {
        stride: (3, 1),
        padding: (0, 2),
        output_padding: (0, 1),
        dilation: (1, 2),
        groups: 1,
    };
    // output_padding 1 >= stride 1 is allowed because it is below dilation 2.
    transpose_case("mixed pairs", [3, 5, 6, 7], [5, 2, 2, 3], o, 8);
    // 128 input channels and stride 2, as the DCGAN's generator: the forward (conv2d's input
    // gradient) goes through the GEMM and col2im, with the bias.
    let o = ConvTranspose2dOpts {
        stride: (2, 2),
        padding: (1, 1),
        ..ConvTranspose2dOpts::default()
    };
    transpose_case("GEMM route s2 p1", [2, 128, 4, 3], [128, 3, 4, 4], o, 9);
}

#[test]
fn only_tracked_inputs_get_gradients() {
    // A frozen weight and no bias: the op still differentiates to x.
    let mut rng = Rng::new(9);
    let (xs, ws) = ([2, 3, 7, 5], [4, 3, 3, 3]);
    let x = rng.vec(42 * 5);
    let w = rng.vec(108);
    let o = Conv2dOpts::default();
    let (tx, tw) = (param(&x, &xs), upload(&w, &ws));
    let y = conv2d(&tx, &tw, None, o).expect("conv2d");
    let r = rng.vec(y.numel());
    let grads = y.backward_with(&upload(&r, y.shape())).expect("backward");
    assert!(grads.get(&tw).is_none(), "a frozen weight gets no gradient");
    let (dx, _, _) = cpu::conv2d_backward(&x, xs, &w, ws, &r, &o);
    assert_close(&read(grads.get(&tx).expect("dx")), &dx, ATOL, RTOL, "dx");
}

#[test]
fn conv2d_cpu_gradients_match_finite_differences() {
    let mut rng = Rng::new(10);
    let (xs, ws) = ([2, 4, 6, 5], [4, 2, 3, 2]);
    let o = Conv2dOpts {
        stride: (2, 1),
        padding: (1, 1),
        dilation: (1, 2),
        groups: 2,
    };
    let x = rng.vec(xs.iter().product());
    let w = rng.vec(ws.iter().product());
    let b = rng.vec(4);
    let (y, _) = cpu::conv2d(&x, xs, &w, ws, Some(&b), &o);
    let r = rng.vec(y.len());
    let (dx, dw, db) = cpu::conv2d_backward(&x, xs, &w, ws, &r, &o);
    // The loss is linear in each argument, so central differences are exact up to f32
    // rounding of the forward (~1e-6 relative / eps).
    let f = |x: &[f32], w: &[f32], b: &[f32]| dot(&cpu::conv2d(x, xs, w, ws, Some(b), &o).0, &r);
    fd_check(|v| f(v, &w, &b), &x, &dx, 1e-2, 1e-3, "conv2d dx");
    fd_check(|v| f(&x, v, &b), &w, &dw, 1e-2, 1e-3, "conv2d dw");
    fd_check(|v| f(&x, &w, v), &b, &db, 1e-2, 1e-3, "conv2d db");
}

#[test]
fn conv_transpose2d_cpu_gradients_match_finite_differences() {
    let mut rng = Rng::new(11);
    let (xs, ws) = ([2, 4, 4, 3], [4, 2, 3, 2]);
    let o = ConvTranspose2dOpts {
        stride: (2, 2),
        padding: (1, 0),
        output_padding: (1, 1),
        dilation: (1, 1),
        groups: 2,
    };
    let x = rng.vec(xs.iter().product());
    let w = rng.vec(ws.iter().product());
    let b = rng.vec(4);
    let (y, _) = cpu::conv_transpose2d(&x, xs, &w, ws, Some(&b), &o);
    let r = rng.vec(y.len());
    let (dx, dw, db) = cpu::conv_transpose2d_backward(&x, xs, &w, ws, &r, &o);
    let f = |x: &[f32], w: &[f32], b: &[f32]| {
        dot(&cpu::conv_transpose2d(x, xs, w, ws, Some(b), &o).0, &r)
    };
    fd_check(|v| f(v, &w, &b), &x, &dx, 1e-2, 1e-3, "conv_transpose2d dx");
    fd_check(|v| f(&x, v, &b), &w, &dw, 1e-2, 1e-3, "conv_transpose2d dw");
    fd_check(|v| f(&x, &w, v), &b, &db, 1e-2, 1e-3, "conv_transpose2d db");
}

#[test]
fn cpu_conv_transpose2d_is_the_adjoint_of_conv2d() {
    // <conv2d(y), x> = <y, conv_transpose2d(x)> for the same weight: ties the two references
    // together independently of their backward functions.
    let mut rng = Rng::new(12);
    let (ys, ws) = ([2, 4, 9, 8], [6, 2, 3, 2]);
    let co = Conv2dOpts {
        stride: (2, 3),
        padding: (1, 1),
        dilation: (2, 1),
        groups: 2,
    };
    let y = rng.vec(ys.iter().product());
    let w = rng.vec(ws.iter().product());
    let (cy, xs) = cpu::conv2d(&y, ys, &w, ws, None, &co);
    let x = rng.vec(cy.len());
    let (ho, wo) = (ys[2] + 2 - 2 * 2 - 1, ys[3] + 2 - 1 - 1);
    // Output padding recovers the rows/columns that conv2d's floor division dropped.
    let to = ConvTranspose2dOpts {
        stride: co.stride,
        padding: co.padding,
        output_padding: (ho % 2, wo % 3),
        dilation: co.dilation,
        groups: 2,
    };
    let (tx, txs) = cpu::conv_transpose2d(&x, xs, &w, ws, None, &to);
    assert_eq!(txs, ys, "transpose restores the input shape");
    let (l, r) = (dot(&cy, &x), dot(&y, &tx));
    assert!((l - r).abs() < 1e-4 * l.abs().max(1.0), "{l} vs {r}");
}

#[track_caller]
fn expect_err(r: gpu_nn::Result<Tensor>, op: &str, needles: &[&str]) {
    let msg = r.expect_err("must be a shape error").to_string();
    assert!(msg.contains(op), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "'{n}' missing from: {msg}");
    }
}

#[test]
fn conv2d_shape_errors_name_the_op_and_shapes() {
    let x = upload(&[0.0; 2 * 6 * 5 * 5], &[2, 6, 5, 5]);
    let w = upload(&[0.0; 4 * 3 * 3 * 3], &[4, 3, 3, 3]);
    let g4 = Conv2dOpts {
        groups: 4,
        ..Conv2dOpts::default()
    };
    expect_err(
        conv2d(&x, &w, None, g4),
        "conv2d",
        &["groups 4", "[2, 6, 5, 5]"],
    );
    // Cin/g = 6 but the weight has 3 input channels.
    expect_err(
        conv2d(&x, &w, None, Conv2dOpts::default()),
        "conv2d",
        &["[4, 3, 3, 3]"],
    );
    let g2 = Conv2dOpts {
        groups: 2,
        ..Conv2dOpts::default()
    };
    assert!(
        conv2d(&x, &w, None, g2).is_ok(),
        "the matching group count works"
    );
    let bad_b = upload(&[0.0; 3], &[3]);
    expect_err(conv2d(&x, &w, Some(&bad_b), g2), "conv2d", &["bias", "[3]"]);
    let big = Conv2dOpts {
        dilation: (3, 1),
        groups: 2,
        ..Conv2dOpts::default()
    };
    expect_err(
        conv2d(&x, &w, None, big),
        "conv2d",
        &["larger than the padded input", "[2, 6, 5, 5]"],
    );
    let zero_stride = Conv2dOpts {
        stride: (0, 1),
        groups: 2,
        ..Conv2dOpts::default()
    };
    expect_err(conv2d(&x, &w, None, zero_stride), "conv2d", &["stride"]);
    let x3 = upload(&[0.0; 6 * 5 * 5], &[6, 5, 5]);
    expect_err(conv2d(&x3, &w, None, g2), "conv2d", &["4-D", "[6, 5, 5]"]);
}

#[test]
fn conv_transpose2d_shape_errors_name_the_op_and_shapes() {
    let x = upload(&[0.0; 2 * 4 * 3 * 3], &[2, 4, 3, 3]);
    let w = upload(&[0.0; 4 * 2 * 3 * 3], &[4, 2, 3, 3]);
    let ok = ConvTranspose2dOpts::default();
    assert!(
        conv_transpose2d(&x, &w, None, ok).is_ok(),
        "valid arguments work"
    );
    let g3 = ConvTranspose2dOpts { groups: 3, ..ok };
    expect_err(
        conv_transpose2d(&x, &w, None, g3),
        "conv_transpose2d",
        &["groups 3"],
    );
    let w5 = upload(&[0.0; 5 * 2 * 3 * 3], &[5, 2, 3, 3]);
    expect_err(
        conv_transpose2d(&x, &w5, None, ok),
        "conv_transpose2d",
        &["[5, 2, 3, 3]", "[2, 4, 3, 3]"],
    );
    let op = ConvTranspose2dOpts {
        stride: (2, 2),
        output_padding: (2, 0),
        ..ok
    };
    expect_err(
        conv_transpose2d(&x, &w, None, op),
        "conv_transpose2d",
        &["output_padding"],
    );
    let shrink = ConvTranspose2dOpts {
        padding: (3, 0),
        ..ok
    };
    // (3-1) - 6 + 2 + 1 = -1 rows.
    expect_err(
        conv_transpose2d(&x, &w, None, shrink),
        "conv_transpose2d",
        &["output size", "not positive"],
    );
    // Bias must have Cout = 2 * groups = 2 entries.
    let bad_b = upload(&[0.0; 4], &[4]);
    expect_err(
        conv_transpose2d(&x, &w, Some(&bad_b), ok),
        "conv_transpose2d",
        &["bias", "[4]"],
    );
}
