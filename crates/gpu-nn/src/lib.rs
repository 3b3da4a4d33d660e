//! # gpu-nn
//!
//! Train convolutional networks on WebGPU: WGSL compute kernels run through `wgpu`, reverse-mode
//! autodiff over them, layers with PyTorch's initialisations and names, and optimizers as GPU
//! kernels. Works natively and in the browser (wasm32).
//!
//! Ops record GPU work into one open command buffer; [`Gpu::flush`] (or a readback) submits it,
//! so a whole training step is one submission. Readbacks are asynchronous.
//!
//! Every kernel has a CPU reference in the `cpu` module next to its launcher.

// wgpu's handles are Send + Sync natively but not on wasm32 (single-threaded there). We use
// Arc so that native code can move tensors to a training thread; on wasm it is an Rc in effect.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod autograd;
mod buffer_pool;
pub mod error;
mod gpu;
pub mod init;
mod kernel;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
mod readback;
mod tensor;
pub mod trace;

/// The build-time WGSL variant generator (`build.rs`), unit-tested with the crate.
#[cfg(test)]
#[path = "../build/wgsl.rs"]
mod build_wgsl;

/// The wgpu this crate is built on, so that users share one version (and one device).
pub use wgpu;

pub use autograd::{Grads, NoGradGuard, is_grad_enabled, no_grad};
pub use buffer_pool::PoolStats;
pub use error::{Error, Result};
#[cfg(feature = "cpu-drivers")]
pub use gpu::CpuSubgroup;
#[cfg(not(target_arch = "wasm32"))]
pub use gpu::WAIT_TIMEOUT;
pub use gpu::{Gpu, GpuOptions, KernelSet, KernelTime, Waker, check_adapter};
pub use ops::elementwise::Unary;
pub use readback::{Readback, read_all};
pub use tensor::{Tensor, TensorId};

pub use ops::batchnorm::batch_norm;
pub use ops::concat::cat_channels;
pub use ops::conv::{Conv2dOpts, ConvTranspose2dOpts, conv_transpose2d, conv2d};
pub use ops::dropout::{dropout, dropout2d};
pub use ops::loss::{argmax, bce_with_logits, correct_count, cross_entropy, nll_loss};
pub use ops::matmul::linear;
pub use ops::pool::{
    AvgPool2dOpts, MaxPool2dOpts, adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d,
};
pub use ops::visual::{TileImage, TileLayout};
pub use optim::{Adam, AdamConfig, CosineAnnealingLr, Optimizer, Sgd, SgdConfig, StepLr};
