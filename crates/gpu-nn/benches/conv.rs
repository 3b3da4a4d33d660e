//! Convolution throughput (FLOP/s, one multiply-add = 2 FLOP): the tiled implicit-GEMM
//! forward next to the naive one-output-per-invocation kernel, plus the backward pass (input
//! and weight gradients, 2x the forward FLOPs), at the shapes of the example models.
//! Each iteration records the dispatches and then blocks on `Gpu::sync`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gpu_nn::ops::conv::{Conv2dOpts, ConvTranspose2dOpts, conv_transpose2d, conv2d, conv2d_naive};
use gpu_nn::{Gpu, Tensor};

fn gpu() -> Gpu {
    match pollster::block_on(Gpu::new()) {
        Ok(g) => g,
        Err(e) => panic!("the benchmark needs a GPU adapter: {e}"),
    }
}

fn random(gpu: &Gpu, shape: &[usize], seed: u64, param: bool) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let t = Tensor::from_slice(gpu, &data, shape).expect("upload");
    if param { t.requires_grad() } else { t }
}

fn conv_case(
    c: &mut Criterion,
    gpu: &Gpu,
    name: &str,
    xs: [usize; 4],
    ws: [usize; 4],
    o: Conv2dOpts,
) {
    let x = random(gpu, &xs, 1, true);
    let w = random(gpu, &ws, 2, true);
    let b = random(gpu, &[ws[0]], 3, true);
    let y = conv2d(&x, &w, Some(&b), o).expect("conv2d");
    let [_, _, ho, wo] = y.shape() else {
        panic!("4-D output")
    };
    let flops = 2 * xs[0] * ws[0] * ho * wo * ws[1] * ws[2] * ws[3];
    let r = random(gpu, y.shape(), 4, false);
    gpu.sync().expect("sync");

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function("forward tiled", |bench| {
        bench.iter(|| {
            let _ng = gpu_nn::no_grad();
            black_box(conv2d(&x, &w, Some(&b), o).expect("conv2d"));
            gpu.sync().expect("sync");
        });
    });
    g.bench_function("forward naive", |bench| {
        bench.iter(|| {
            black_box(conv2d_naive(&x, &w, Some(&b), o).expect("naive"));
            gpu.sync().expect("sync");
        });
    });
    g.throughput(Throughput::Elements(2 * flops as u64));
    g.bench_function("backward (dx+dw+db)", |bench| {
        bench.iter(|| {
            black_box(y.backward_with(&r).expect("backward"));
            gpu.sync().expect("sync");
        });
    });
    g.finish();
}

fn transpose_case(
    c: &mut Criterion,
    gpu: &Gpu,
    name: &str,
    xs: [usize; 4],
    ws: [usize; 4],
    o: ConvTranspose2dOpts,
) {
    let x = random(gpu, &xs, 1, true);
    let w = random(gpu, &ws, 2, true);
    let b = random(gpu, &[ws[1] * o.groups], 3, true);
    let y = conv_transpose2d(&x, &w, Some(&b), o).expect("conv_transpose2d");
    // Same count as the direct convolution it is the adjoint of.
    let flops = 2 * xs.iter().product::<usize>() * ws[1] * ws[2] * ws[3];
    let r = random(gpu, y.shape(), 4, false);
    gpu.sync().expect("sync");

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function("forward tiled", |bench| {
        bench.iter(|| {
            let _ng = gpu_nn::no_grad();
            black_box(conv_transpose2d(&x, &w, Some(&b), o).expect("forward"));
            gpu.sync().expect("sync");
        });
    });
    g.throughput(Throughput::Elements(2 * flops as u64));
    g.bench_function("backward (dx+dw+db)", |bench| {
        bench.iter(|| {
            black_box(y.backward_with(&r).expect("backward"));
            gpu.sync().expect("sync");
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let gpu = gpu();
    eprintln!("adapter: {:?}", gpu.adapter_info().name);
    let d = Conv2dOpts::default();
    conv_case(
        c,
        &gpu,
        "mnist conv1 1->10 k5 28x28 b64",
        [64, 1, 28, 28],
        [10, 1, 5, 5],
        d,
    );
    conv_case(
        c,
        &gpu,
        "mnist conv2 10->20 k5 12x12 b64",
        [64, 10, 12, 12],
        [20, 10, 5, 5],
        d,
    );
    let p1 = Conv2dOpts {
        padding: (1, 1),
        ..d
    };
    conv_case(
        c,
        &gpu,
        "resnet18 64->64 k3 p1 32x32 b8",
        [8, 64, 32, 32],
        [64, 64, 3, 3],
        p1,
    );
    let t = ConvTranspose2dOpts {
        stride: (2, 2),
        padding: (1, 1),
        ..ConvTranspose2dOpts::default()
    };
    transpose_case(
        c,
        &gpu,
        "dcgan convT 256->128 k4 s2 7->14 b16",
        [16, 256, 7, 7],
        [256, 128, 4, 4],
        t,
    );
    transpose_case(
        c,
        &gpu,
        "dcgan convT 128->64 k4 s2 14->28 b16",
        [16, 128, 14, 14],
        [128, 64, 4, 4],
        t,
    );
}

criterion_group! {
    name = conv;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(conv);
