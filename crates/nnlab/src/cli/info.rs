//! `nnlab info`: the adapter nnlab uses, and a small kernel run on it.

use anyhow::Result;

use super::gpu;

/// Runs `nnlab info`.
pub fn info() -> Result<()> {
    let gpu = gpu()?;
    let a = gpu.adapter_info();
    println!("adapter: {} ({:?}, {:?})", a.name, a.backend, a.device_type);
    println!("driver:  {} {}", a.driver, a.driver_info);
    println!(
        "max storage binding: {} MiB",
        gpu.max_binding_bytes() / (1024 * 1024)
    );
    let x = gpu_nn::Tensor::from_slice(&gpu, &[-1.0, 2.0, -3.0, 4.0], &[4])?;
    let y = x.relu()?.sum()?.item_blocking()?;
    anyhow::ensure!(y == 6.0, "self-test: relu-sum gave {y}, expected 6");
    println!("self-test: ok (relu + sum on the GPU)");
    Ok(())
}
