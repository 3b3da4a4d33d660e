//! The one error type of `gpu-nn`.

use thiserror::Error;

/// Everything that can go wrong in `gpu-nn`. Nothing in this crate panics on bad input:
/// shapes are checked before any GPU work is recorded, so wgpu never sees an invalid call.
#[derive(Debug, Error)]
pub enum Error {
    /// No adapter was found at all (no GPU, no software rasterizer, no WebGPU in the browser).
    #[error(
        "no GPU adapter found: {0}. Natively install a Vulkan driver (e.g. Mesa's lavapipe: \
         `apt-get install mesa-vulkan-drivers`); in a browser use one with WebGPU enabled \
         (Chrome/Edge 113+, or Chromium with --enable-unsafe-webgpu)"
    )]
    NoAdapter(String),
    /// An adapter exists but cannot run compute shaders (e.g. WebGL2).
    #[error(
        "the GPU adapter '{adapter}' ({backend}) cannot run compute shaders: {missing}. \
         nnlab needs WebGPU or a native Vulkan/Metal/DX12 driver"
    )]
    NoCompute {
        /// Adapter name as reported by the driver.
        adapter: String,
        /// Backend name (Vulkan, Gl, BrowserWebGpu, ...).
        backend: String,
        /// What is missing.
        missing: String,
    },
    /// The adapter refused to create a device.
    #[error("could not create a device on '{adapter}': {source}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's reason.
        #[source]
        source: wgpu::RequestDeviceError,
    },
    /// Input shapes do not fit the operation.
    #[error("{op}: {msg}")]
    Shape {
        /// The operation that refused its inputs.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        msg: String,
    },
    /// A tensor would not fit in one storage binding of this device.
    #[error(
        "{op}: tensor of shape {shape:?} needs {bytes} bytes, more than this device's maximum \
         storage binding of {max} bytes"
    )]
    TooLarge {
        /// The operation.
        op: &'static str,
        /// The shape that is too large.
        shape: Vec<usize>,
        /// Bytes needed.
        bytes: u64,
        /// Device limit.
        max: u64,
    },
    /// A readback of GPU memory failed.
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    /// The GPU device reported an error (validation, out of memory, device lost).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The device was lost (driver reset, GPU removed, browser GPU process gone, or
    /// `destroy`): nothing recorded since runs, and every later call reports this.
    #[error(
        "the GPU device was lost ({0}): work since the last checkpoint is gone; restart to \
         continue from it"
    )]
    DeviceLost(String),
    /// A native blocking wait gave up: the GPU did not finish in time.
    #[error("the GPU did not finish its work within {0:?} (a hung driver or a lost device)")]
    Timeout(std::time::Duration),
    /// Gradients were asked of something that was not recorded for autodiff.
    #[error("autodiff: {0}")]
    Autograd(String),
    /// A parameter, buffer or state file did not match what was expected.
    #[error("{0}")]
    State(String),
    /// The API was used in an order it does not allow (a builder on a shared `Gpu`).
    #[error("{0}")]
    Usage(String),
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error::Shape`].
pub(crate) fn shape_err(op: &'static str, msg: impl Into<String>) -> Error {
    Error::Shape {
        op,
        msg: msg.into(),
    }
}

/// Returns a shape error from the current function unless `cond` holds.
macro_rules! ensure_shape {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::error::shape_err($op, format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure_shape;
