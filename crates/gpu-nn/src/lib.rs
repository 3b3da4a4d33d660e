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
pub mod error;
mod gpu;
mod kernel;
pub mod ops;
pub mod optim;
mod pool;
mod readback;
mod tensor;

pub use autograd::{Grads, NoGradGuard, is_grad_enabled, no_grad};
pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions, check_adapter};
pub use ops::elementwise::Unary;
pub use pool::PoolStats;
pub use readback::Readback;
pub use tensor::{Tensor, TensorId};
