//! Tiled vs naive matmul kernels, as FLOP/s (criterion's "elements" are 2*M*N*K flops).
//! Each iteration records the dispatch and waits for the GPU (`Gpu::sync`), so the time
//! includes one submission. Shapes: 1024^3 and the MNIST CNN's fc layer at batch 64
//! (64x320 @ 320x50 forward, and its two backward products).
//!
//! `cargo bench -p gpu-nn --bench matmul -- --quick`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gpu_nn::ops::matmul::matmul_naive;
use gpu_nn::{Gpu, Tensor};

/// op(A) [m, k] @ op(B) [k, n] with the stored operands transposed where flagged.
struct Case {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "1024x1024x1024",
        m: 1024,
        k: 1024,
        n: 1024,
        trans_a: false,
        trans_b: false,
    },
    // y = x W^T: x [64, 320], W [50, 320].
    Case {
        name: "fc_fwd_64x320x50",
        m: 64,
        k: 320,
        n: 50,
        trans_a: false,
        trans_b: true,
    },
    // dx = dy W: dy [64, 50], W [50, 320].
    Case {
        name: "fc_dx_64x50x320",
        m: 64,
        k: 50,
        n: 320,
        trans_a: false,
        trans_b: false,
    },
    // dW = dy^T x: dy [64, 50], x [64, 320].
    Case {
        name: "fc_dw_50x64x320",
        m: 50,
        k: 64,
        n: 320,
        trans_a: true,
        trans_b: false,
    },
];

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn bench(c: &mut Criterion) {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe works)");
    eprintln!("adapter: {:?}", gpu.adapter_info().name);
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for case in &CASES {
        let (m, k, n) = (case.m, case.k, case.n);
        let sa = if case.trans_a { [k, m] } else { [m, k] };
        let sb = if case.trans_b { [n, k] } else { [k, n] };
        let a = Tensor::from_slice(&gpu, &data(m * k), &sa).expect("upload a");
        let b = Tensor::from_slice(&gpu, &data(k * n), &sb).expect("upload b");
        // The naive kernel has no transposes: it runs the same sizes untransposed.
        let an = Tensor::from_slice(&gpu, &data(m * k), &[m, k]).expect("upload a");
        let bn = Tensor::from_slice(&gpu, &data(k * n), &[k, n]).expect("upload b");
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::new("tiled", case.name), |bch| {
            bch.iter(|| {
                let out = a.matmul_t(&b, case.trans_a, case.trans_b).expect("tiled");
                gpu.sync().expect("sync");
                out
            });
        });
        group.bench_function(BenchmarkId::new("naive", case.name), |bch| {
            bch.iter(|| {
                let out = matmul_naive(&an, &bn).expect("naive");
                gpu.sync().expect("sync");
                out
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
