use gpu_nn::{Error, Gpu, GpuOptions, Tensor};

use crate::common::*;

#[test]
fn no_adapter_is_an_error_with_advice_not_a_panic() {
    let opts = GpuOptions {
        backends: Some(wgpu::Backends::empty()),
        ..GpuOptions::default()
    };
    match pollster::block_on(Gpu::with_options(opts)) {
        Err(e @ Error::NoAdapter(_)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("no GPU adapter") && msg.contains("WebGPU"),
                "{msg}"
            );
        }
        Err(e) => panic!("expected NoAdapter, got {e}"),
        Ok(_) => panic!("a device without any backend"),
    }
}

#[test]
fn device_reports_adapter_and_limits() {
    let gpu = gpu();
    assert!(!gpu.adapter_info().name.is_empty());
    // Requested limits must be at least WebGPU's defaults that the kernels assume.
    assert!(gpu.limits().max_compute_invocations_per_workgroup >= 256);
    assert!(gpu.max_binding_bytes() >= 128 << 20);
}

#[test]
fn readback_is_asynchronous_and_polls_without_blocking() {
    let gpu = fresh_gpu();
    let x = gpu_nn::Tensor::full(&gpu, &[1000], 0.5).expect("full");
    let y = x.sum().expect("sum");
    let mut r = y.read().expect("start");
    // Poll until ready; each poll returns immediately.
    let mut polls = 0;
    let v = loop {
        if let Some(v) = r.try_take().expect("poll") {
            break v;
        }
        polls += 1;
        assert!(polls < 1_000_000, "readback never completed");
        std::thread::yield_now();
    };
    assert_eq!(v, vec![500.0]);
}

#[test]
fn arriving_readbacks_run_the_waker() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let gpu = fresh_gpu();
    let woken = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&woken);
    gpu.set_readback_waker(Arc::new(move || {
        count.fetch_add(1, Ordering::SeqCst);
    }));
    let x = gpu_nn::Tensor::full(&gpu, &[10], 2.0).expect("full");
    let r = x.read().expect("start");
    let v = r.wait_blocking().expect("readback");
    assert_eq!(v, vec![2.0; 10]);
    assert_eq!(woken.load(Ordering::SeqCst), 1);
}

#[test]
fn a_profiling_device_books_time_per_kernel() {
    let shared = fresh_gpu();
    let _clone = shared.clone();
    // A builder on a shared Gpu would change it for some holders only: refused.
    let e = shared.with_profiling().err().expect("refused on a clone");
    assert!(e.to_string().contains("before the Gpu is cloned"), "{e}");
    let gpu = fresh_gpu().with_profiling().expect("profiling");
    assert!(gpu.is_profiling());
    let x = Tensor::from_slice(&gpu, &[-1.0, 2.0, -3.0, 4.0, 5.0], &[5]).expect("upload");
    let y = x.relu().expect("relu");
    let z = y.add(&y).expect("add");
    let _ = z.add(&x).expect("add");
    gpu.sync().expect("sync");
    let times = gpu.kernel_times();
    let calls = |entry: &str| times.iter().find(|t| t.entry == entry).map(|t| t.calls);
    assert_eq!(calls("unary_fwd"), Some(1), "{times:?}");
    assert_eq!(calls("binary"), Some(2), "{times:?}");
    assert!(times.iter().all(|t| t.seconds > 0.0), "{times:?}");
    assert!(
        times.windows(2).all(|w| w[0].seconds >= w[1].seconds),
        "slowest first: {times:?}"
    );
    // Each dispatch waited for: nothing is left recorded, so no submission is pending.
    let before = gpu.submission_count();
    gpu.flush().expect("flush");
    assert_eq!(gpu.submission_count(), before);
    gpu.reset_kernel_times();
    assert!(gpu.kernel_times().is_empty());
    // An ordinary device books nothing.
    let plain = crate::common::gpu();
    let _ = Tensor::from_slice(&plain, &[1.0], &[1])
        .expect("upload")
        .relu()
        .expect("relu");
    assert!(!plain.is_profiling() && plain.kernel_times().is_empty());
}

#[test]
fn a_lost_device_is_an_error_that_says_so_from_then_on() {
    let gpu = fresh_gpu();
    let x = Tensor::full(&gpu, &[64], 1.5).expect("full");
    assert_eq!(x.sum().expect("sum").item_blocking().expect("before"), 96.0);
    let y = x.relu().expect("relu");
    gpu.device().destroy();
    let e = y
        .read()
        .and_then(|r| r.wait_blocking())
        .expect_err("a lost device");
    assert!(matches!(e, Error::DeviceLost(_)), "{e}");
    assert!(e.to_string().contains("device was lost"), "{e}");
    assert!(gpu.is_lost());
    // And every later flush says so too, not only the first.
    let _ = x.relu();
    assert!(matches!(gpu.flush(), Err(Error::DeviceLost(_))));
    assert!(matches!(gpu.flush(), Err(Error::DeviceLost(_))));
}

#[test]
fn a_wait_past_its_timeout_is_an_error_not_a_hang() {
    let gpu = fresh_gpu()
        .with_wait_timeout(std::time::Duration::from_micros(1))
        .expect("unshared");
    // Far more than a microsecond of work on any device.
    let a = Tensor::full(&gpu, &[512, 512], 0.01).expect("full");
    let mut y = a.matmul(&a).expect("matmul");
    for _ in 0..7 {
        y = y.matmul(&a).expect("matmul");
    }
    let e = y
        .read()
        .and_then(|r| r.wait_blocking())
        .expect_err("waited past the timeout");
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    assert!(
        e.to_string().contains("did not finish its work within"),
        "{e}"
    );
    // The setting belongs to a device not shared yet: a clone cannot change it unseen.
    let shared = gpu.clone();
    assert!(shared.with_wait_timeout(gpu_nn::WAIT_TIMEOUT).is_err());
}

#[test]
fn a_validation_error_comes_back_from_the_next_flush_once_and_only_the_engines() {
    let gpu = fresh_gpu();
    let invalid = |label| wgpu::BufferDescriptor {
        label: Some(label),
        size: 16,
        // Mappable for reading and a storage buffer at once: not allowed.
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    };
    let _b = gpu.device().create_buffer(&invalid("gpu-nn test buffer"));
    match gpu.flush() {
        Err(Error::Gpu(m)) => assert!(m.contains("gpu-nn test buffer"), "{m}"),
        other => panic!("expected a GPU error, got {other:?}"),
    }
    // Reported once: the next flush is clean, and the engine still computes.
    assert!(gpu.flush().is_ok());
    // An error about someone else's object (the UI's, on eframe's device) is not the
    // engine's to report.
    let _c = gpu.device().create_buffer(&invalid("egui texture"));
    assert!(gpu.flush().is_ok());
    let x = Tensor::full(&gpu, &[8], 2.0).expect("full");
    assert_eq!(x.sum().expect("sum").item_blocking().expect("sum"), 16.0);
}
