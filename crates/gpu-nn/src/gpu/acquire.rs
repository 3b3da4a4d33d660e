//! Acquiring a device: adapter checks, device creation, builder options. Which kernels it
//! runs is `kernel_set.rs`'s decision.

use super::*;

/// A smaller storage-binding limit than the device's, from `GPU_NN_MAX_BINDING_BYTES`:
/// a test hook that makes a CPU driver behave like a device with less memory per binding.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn binding_cap() -> Option<u64> {
    static CAP: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var("GPU_NN_MAX_BINDING_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

#[cfg(target_arch = "wasm32")]
pub(super) fn binding_cap() -> Option<u64> {
    None
}

/// Options for acquiring a device.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Prefer a discrete GPU over an integrated one.
    pub power_preference: wgpu::PowerPreference,
    /// Backends to consider; `None` honours the `WGPU_BACKEND` environment variable.
    pub backends: Option<wgpu::Backends>,
    /// The kernels to run: `None` decides by adapter (see [`KernelSet`]). `Some` narrows
    /// that choice: [`KernelSet::Portable`] runs the GPU kernels anywhere, and a CPU-driver
    /// set with 4 lanes or without textures runs where the adapter would run the CPU-driver
    /// set at all (tests cover SwiftShader's layout on lavapipe that way).
    pub kernels: Option<KernelSet>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            power_preference: wgpu::PowerPreference::HighPerformance,
            backends: None,
            kernels: None,
        }
    }
}

/// Checks that an adapter can run our kernels, naming what is missing if not.
pub fn check_adapter(adapter: &wgpu::Adapter) -> Result<()> {
    let info = adapter.get_info();
    let caps = adapter.get_downlevel_capabilities();
    let limits = adapter.limits();
    let missing = if !caps.flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS) {
        Some("no compute shader support (WebGL2 has none)".to_string())
    } else if limits.max_storage_buffers_per_shader_stage < 8 {
        Some(format!(
            "only {} storage buffers per shader stage (8 needed)",
            limits.max_storage_buffers_per_shader_stage
        ))
    } else if limits.max_compute_invocations_per_workgroup < 256 {
        Some(format!(
            "only {} invocations per workgroup (256 needed)",
            limits.max_compute_invocations_per_workgroup
        ))
    } else {
        None
    };
    match missing {
        Some(missing) => Err(Error::NoCompute {
            adapter: info.name,
            backend: format!("{:?}", info.backend),
            missing,
        }),
        None => Ok(()),
    }
}

impl Gpu {
    /// Finds an adapter and creates a device with default options. Async so that it works in
    /// the browser; natively wrap it in `pollster::block_on`.
    pub async fn new() -> Result<Self> {
        Self::with_options(GpuOptions::default()).await
    }

    /// Finds an adapter and creates a device.
    pub async fn with_options(opts: GpuOptions) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(b) = opts.backends {
            desc.backends = b;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: opts.power_preference,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let subgroups = opts.kernels != Some(KernelSet::Portable);
        let mut gpu = Self::from_adapter_with(&adapter, subgroups).await?;
        if let Some(wanted) = opts.kernels {
            let inner = Self::unshared(&mut gpu, "with_options")?;
            inner.kernels = inner.kernels.narrowed(wanted);
            log::info!(
                "gpu-nn on {}: {}",
                inner.info.name,
                inner.kernels.describe()
            );
        }
        Ok(gpu)
    }

    /// Creates a device on a given adapter, requesting every limit the adapter offers so that
    /// large tensors fit in one binding.
    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        Self::from_adapter_with(adapter, true).await
    }

    pub(super) async fn from_adapter_with(
        adapter: &wgpu::Adapter,
        subgroups: bool,
    ) -> Result<Self> {
        check_adapter(adapter)?;
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gpu-nn"),
                required_features: if subgroups {
                    Self::wanted_features(adapter)
                } else {
                    wgpu::Features::empty()
                },
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::default(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|source| Error::RequestDevice {
                adapter: info.name.clone(),
                source,
            })?;
        Ok(Self::from_device(device, queue, info))
    }

    /// For a device created with WebGPU's `subgroups` feature by means wgpu cannot see:
    /// wgpu 30's browser backend does not forward that feature, so the web page requests it
    /// itself (web/index.html) and the app calls this. The CPU-driver kernels then run where
    /// the adapter qualifies (a CPU adapter such as SwiftShader). Call before any op.
    /// Fails on a `Gpu` already cloned: its clones would not see the change.
    pub fn with_page_subgroups(mut self) -> Result<Self> {
        let inner = Self::unshared(&mut self, "with_page_subgroups")?;
        inner.kernels = KernelSet::for_adapter(&inner.info, true);
        log::info!(
            "gpu-nn on {}: {}",
            inner.info.name,
            inner.kernels.describe()
        );
        Ok(self)
    }

    /// The device state for a builder method, which must come before the `Gpu` is shared.
    pub(super) fn unshared<'a>(gpu: &'a mut Gpu, method: &str) -> Result<&'a mut GpuInner> {
        Arc::get_mut(&mut gpu.0).ok_or_else(|| {
            Error::Usage(format!(
                "Gpu::{method} must be called before the Gpu is cloned: its clones would not see it"
            ))
        })
    }

    /// Optional features the kernels use when `adapter` has them (subgroups); request them
    /// when creating a device for [`Gpu::from_device`].
    pub fn wanted_features(adapter: &wgpu::Adapter) -> wgpu::Features {
        adapter.features() & wgpu::Features::SUBGROUP
    }

    /// Wraps an existing device and queue (the app hands in eframe's, so tensors can be shown
    /// as textures without a CPU round trip). The CPU-driver kernels run where the adapter
    /// qualifies and the device was created with [`Gpu::wanted_features`].
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = Arc::clone(&error);
        // The device may be eframe's: only errors about gpu-nn's objects (their labels start
        // with LABEL) are the engine's, returned from the next flush; the UI's are logged.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let msg = e.to_string();
            if !msg.contains(LABEL) {
                log::error!("wgpu error outside gpu-nn: {msg}");
                return;
            }
            log::error!("wgpu: {msg}");
            let mut s = lock(&slot);
            if s.is_none() {
                *s = Some(msg);
            }
        }));
        // A lost device (driver reset, browser GPU process killed) fails every later
        // readback: record why, so the error the caller sees names the cause.
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, msg| {
            log::error!("wgpu device lost ({reason:?}): {msg}");
            *lock(&slot) = Some(format!("{reason:?}: {msg}"));
        });
        let limits = device.limits();
        let kernels =
            KernelSet::for_adapter(&info, device.features().contains(wgpu::Features::SUBGROUP));
        log::info!("gpu-nn on {}: {}", info.name, kernels.describe());
        Self(Arc::new(GpuInner {
            device,
            queue,
            info,
            limits,
            kernels,
            layouts: Mutex::default(),
            pipelines: Mutex::default(),
            pool: Mutex::new(BufferPool::default()),
            rec: Mutex::default(),
            #[cfg(operand_textures)]
            operands: Mutex::default(),
            error,
            lost,
            recording: AtomicBool::new(false),
            submissions: AtomicU64::new(0),
            last_submission: Mutex::new(None),
            waker: Mutex::default(),
            profile: None,
            #[cfg(not(target_arch = "wasm32"))]
            wait_timeout: super::WAIT_TIMEOUT,
        }))
    }
}
