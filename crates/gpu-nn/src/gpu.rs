//! The GPU context: device acquisition, pipeline cache, buffer pool and the command recorder.
//!
//! Every op records its dispatch into one open command encoder. Nothing is submitted until
//! [`Gpu::flush`] (or a readback) is called, so a whole training step is one submission.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::buffer_pool::{BufferPool, PoolStats, PooledBuffer};
use crate::error::{Error, Result};
use crate::kernel::{Access, Kernel};
use crate::tensor::Tensor;

/// Size of one parameter slot in the params arena. WebGPU's
/// `minUniformBufferOffsetAlignment` is at most 256, so every slot is correctly aligned.
pub(crate) const PARAM_SLOT: u64 = 256;
/// Slots per arena chunk (64 KiB chunks).
const SLOTS_PER_CHUNK: u64 = 256;

/// Texels per row of the operand textures ([`Gpu::dispatch_texels`]): 16 KiB rows, a
/// multiple of the 256 bytes a buffer-to-texture copy needs per row. `OPERAND_W` in WGSL.
pub(crate) const OPERAND_W: u32 = 1024;

fn log_kernels(info: &wgpu::AdapterInfo, lanes: u32, textures: bool) {
    let operands = if textures { "textures" } else { "buffers" };
    match lanes {
        0 => log::info!("gpu-nn on {}: portable kernels", info.name),
        l => log::info!(
            "gpu-nn on {}: subgroup kernels, {l}-row blocks, operands in {operands}",
            info.name
        ),
    }
}

/// The WGSL a browser gets for `source`. Browsers compile WGSL themselves and want subgroup
/// operations enabled by a directive that naga (which validates the files natively) does not
/// parse yet; the uniformity rule is relaxed because the kernels broadcast inside loops
/// whose bounds are uniform but which Tint's analysis cannot always prove so.
#[cfg(target_arch = "wasm32")]
fn wgsl_source(
    source: std::borrow::Cow<'static, str>,
    subgroups: bool,
) -> std::borrow::Cow<'static, str> {
    if subgroups {
        format!("enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n{source}").into()
    } else {
        source
    }
}

/// The WGSL wgpu gets for `source` natively: the file as it is (naga enables subgroup
/// operations from the device's features).
#[cfg(not(target_arch = "wasm32"))]
fn wgsl_source(
    source: std::borrow::Cow<'static, str>,
    _subgroups: bool,
) -> std::borrow::Cow<'static, str> {
    source
}

/// `source` with its operand textures (`var NAME: texture_2d<f32>;`) declared as storage
/// buffers of texels (`array<vec4<f32>>`, the layout the textures copy) and its `texel` and
/// `texel4` calls on them reading those buffers: the WGSL of a kernel with
/// [`Access::Texels`] bindings on a device without operand textures. The kernels reach
/// their operands only through those helpers, so the rewrite needs no parser.
fn operands_as_buffers(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 1024);
    let mut names = Vec::new();
    for line in source.lines() {
        // A comment after the declaration stays out of the match.
        let code = line
            .split_once("//")
            .map_or(line, |(code, _)| code)
            .trim_end();
        let decl = code.split_once(" var ").and_then(|(head, rest)| {
            rest.strip_suffix(": texture_2d<f32>;")
                .map(|name| (head, name))
        });
        match decl {
            Some((head, name)) => {
                out.push_str(&format!(
                    "{head} var<storage, read> {name}: array<vec4<f32>>;\n"
                ));
                names.push(name);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for n in names {
        out = out
            .replace(&format!("texel({n}, "), &format!("texel_{n}("))
            .replace(&format!("texel4({n}, "), &format!("texel4_{n}("));
        out.push_str(&format!(
            "fn texel_{n}(e: u32) -> f32 {{ return {n}[e >> 2u][e & 3u]; }}\n\
             fn texel4_{n}(i: u32) -> vec4<f32> {{ return {n}[i]; }}\n"
        ));
    }
    out
}

/// What every label of gpu-nn's wgpu objects starts with.
pub(crate) const LABEL: &str = "gpu-nn";

/// The longest a native blocking wait waits for the GPU. Generous: one training step of a
/// 224x224 network on a CPU driver takes minutes.
#[cfg(not(target_arch = "wasm32"))]
pub const WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// A smaller storage-binding limit than the device's, from `GPU_NN_MAX_BINDING_BYTES`:
/// a test hook that makes a CPU driver behave like a device with less memory per binding.
#[cfg(not(target_arch = "wasm32"))]
fn binding_cap() -> Option<u64> {
    static CAP: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var("GPU_NN_MAX_BINDING_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

#[cfg(target_arch = "wasm32")]
fn binding_cap() -> Option<u64> {
    None
}

/// A callback run when readback data arrives, e.g. an egui `request_repaint`.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Whole texels holding `floats` values (at least one).
fn texel_count(floats: usize) -> u64 {
    floats.div_ceil(4).max(1) as u64
}

/// Options for acquiring a device.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Prefer a discrete GPU over an integrated one.
    pub power_preference: wgpu::PowerPreference,
    /// Backends to consider; `None` honours the `WGPU_BACKEND` environment variable.
    pub backends: Option<wgpu::Backends>,
    /// Use subgroup kernels where the adapter is a CPU driver with subgroups of 4+ lanes;
    /// `false` forces the portable kernels (tests compare the two).
    pub subgroups: bool,
    /// Rows that one lane group shares in the subgroup kernels: 8 where subgroups have 8+
    /// lanes, else 4. `Some(4)` forces 4-lane blocks on 8-lane subgroups (tests cover the
    /// SwiftShader layout on lavapipe that way).
    pub subgroup_lanes: Option<u32>,
    /// Copy the operands of the kernels that read texels into textures (`Some(true)`) or
    /// let them read the buffers (`Some(false)`); `None` decides by driver (see
    /// [`Gpu::operand_textures`]). Tests cover both paths on one driver this way.
    pub operand_textures: Option<bool>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            power_preference: wgpu::PowerPreference::HighPerformance,
            backends: None,
            subgroups: true,
            subgroup_lanes: None,
            operand_textures: None,
        }
    }
}

/// A handle on one wgpu device and queue plus everything `gpu-nn` keeps per device.
/// Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub struct Gpu(pub(crate) Arc<GpuInner>);

pub(crate) struct GpuInner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Lanes per row block of the subgroup kernels (4 or 8); 0 when they are not used.
    lanes: u32,
    /// Operands of [`Access::Texels`] bindings are copied into textures (else the kernels
    /// read their buffers; see [`operand_textures`]).
    textures: bool,
    layouts: Mutex<HashMap<Vec<Access>, Arc<Layout>>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<wgpu::ComputePipeline>>>,
    pub(crate) pool: Mutex<BufferPool>,
    rec: Mutex<Recorder>,
    /// Operand textures by slot (see [`Gpu::dispatch_texels`]); each grows to the largest
    /// operand it has held, so steady-state training allocates none.
    operands: Mutex<Vec<Option<wgpu::Texture>>>,
    /// First uncaptured wgpu error since the last flush; reported by [`Gpu::flush`].
    error: Arc<Mutex<Option<String>>>,
    /// Why the device was lost, once it was: every later flush and readback reports it.
    lost: Arc<Mutex<Option<String>>>,
    /// True while commands are recorded but not submitted: buffers released then must wait
    /// for the submission before they are reused (see `buffer_pool.rs`).
    pub(crate) recording: AtomicBool,
    submissions: AtomicU64,
    /// The last submission, so a readback can wait for its own work and nothing after it.
    pub(crate) last_submission: Mutex<Option<wgpu::SubmissionIndex>>,
    /// Called whenever a readback's data has arrived (see [`Gpu::set_readback_waker`]).
    pub(crate) waker: Mutex<Option<Waker>>,
    /// Calls and seconds per kernel entry point; `Some` only on a profiling device.
    profile: Option<Mutex<HashMap<&'static str, (u64, f64)>>>,
}

/// Where the time of a profiled device went, per kernel entry point (see
/// [`Gpu::with_profiling`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// WGSL entry point.
    pub entry: &'static str,
    /// Dispatches recorded.
    pub calls: u64,
    /// Wall time from recording to completion, summed over the calls (operand copies
    /// included).
    pub seconds: f64,
}

pub(crate) struct Layout {
    bind: wgpu::BindGroupLayout,
    pipeline: wgpu::PipelineLayout,
}

/// The open command encoder plus the params arena of the current submission.
#[derive(Default)]
struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Uniform chunks, reused across submissions.
    chunks: Vec<wgpu::Buffer>,
    /// CPU copy of the params written in the current submission (one Vec per used chunk).
    staged: Vec<Vec<u8>>,
    dispatches: u64,
}

/// Lock a mutex, recovering from poisoning: our state stays consistent across panics in
/// user callbacks because every critical section is short and does not call out.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

/// Lanes per row block when the subgroup kernels run on this device, else 0. They run where
/// the device has the feature with subgroups of 4+ lanes and is a CPU driver (lavapipe: 8,
/// SwiftShader: 4), where they were measured 3-10x faster than the workgroup-tiled kernels.
/// GPUs keep the tiled kernels, which were designed for them.
fn subgroup_lanes(has_feature: bool, info: &wgpu::AdapterInfo) -> u32 {
    let usable =
        has_feature && info.subgroup_min_size >= 4 && info.device_type == wgpu::DeviceType::Cpu;
    match usable {
        false => 0,
        true if info.subgroup_min_size >= 8 => 8,
        true => 4,
    }
}

/// Whether kernels with [`Access::Texels`] bindings read textures on this adapter: only on
/// Mesa's lavapipe (llvmpipe), where a storage load with a per-lane address runs as a loop
/// over the lanes and a texel fetch is one gather (1.3-2.6x per kernel). Elsewhere they read
/// the buffers: SwiftShader trained MnistCnn 1.3x faster that way, natively and in Chrome
/// (whose robustness pass also clamps every texel coordinate), and GPUs skip the copy.
fn operand_textures(info: &wgpu::AdapterInfo) -> bool {
    info.name.contains("llvmpipe") || info.driver.contains("llvmpipe")
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
        let gpu = Self::from_adapter_with(&adapter, opts.subgroups).await?;
        let gpu = match opts.subgroup_lanes {
            Some(l) if gpu.0.lanes > 0 => gpu.with_lanes(if l >= 8 { 8 } else { 4 }),
            _ => gpu,
        };
        Ok(match opts.operand_textures {
            Some(t) => gpu.with_operand_textures(t),
            None => gpu,
        })
    }

    /// Creates a device on a given adapter, requesting every limit the adapter offers so that
    /// large tensors fit in one binding.
    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        Self::from_adapter_with(adapter, true).await
    }

    async fn from_adapter_with(adapter: &wgpu::Adapter, subgroups: bool) -> Result<Self> {
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
    /// itself (web/index.html) and the app calls this. The subgroup kernels then run where
    /// the adapter qualifies (a CPU adapter such as SwiftShader). Call before any op.
    /// Fails on a `Gpu` already cloned: its clones would not see the change.
    pub fn with_page_subgroups(mut self) -> Result<Self> {
        let inner = Self::unshared(&mut self, "with_page_subgroups")?;
        inner.lanes = subgroup_lanes(true, &inner.info);
        log_kernels(&inner.info, inner.lanes, inner.textures);
        Ok(self)
    }

    /// The device state for a builder method, which must come before the `Gpu` is shared.
    fn unshared<'a>(gpu: &'a mut Gpu, method: &str) -> Result<&'a mut GpuInner> {
        Arc::get_mut(&mut gpu.0).ok_or_else(|| {
            Error::Usage(format!(
                "Gpu::{method} must be called before the Gpu is cloned: its clones would not see it"
            ))
        })
    }

    /// This device with operand textures on or off; called before any pipeline exists.
    fn with_operand_textures(mut self, textures: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.textures = textures;
        }
        self
    }

    /// This device with `lanes` (4, or 8 where subgroups have 8+ lanes) per row block of the
    /// subgroup kernels; called before any pipeline exists.
    fn with_lanes(mut self, lanes: u32) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.lanes = lanes.min(inner.lanes);
        }
        self
    }

    /// A profiling device: every dispatch is submitted and waited for on its own, and its
    /// time is added to its kernel's total ([`Gpu::kernel_times`]). That serialises all work,
    /// so use it to see where a step's time goes, not to measure throughput. Call before any
    /// op. Native only: the browser must never wait for the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    /// Fails on a `Gpu` already cloned.
    pub fn with_profiling(mut self) -> Result<Self> {
        Self::unshared(&mut self, "with_profiling")?.profile = Some(Mutex::default());
        Ok(self)
    }

    /// Whether this device profiles its kernels (see [`Gpu::with_profiling`]).
    pub fn is_profiling(&self) -> bool {
        self.0.profile.is_some()
    }

    /// Time per kernel since the last [`Gpu::reset_kernel_times`], the slowest first; empty
    /// unless profiling.
    pub fn kernel_times(&self) -> Vec<KernelTime> {
        let Some(p) = &self.0.profile else {
            return Vec::new();
        };
        let mut v: Vec<KernelTime> = lock(p)
            .iter()
            .map(|(&entry, &(calls, seconds))| KernelTime {
                entry,
                calls,
                seconds,
            })
            .collect();
        v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.entry.cmp(b.entry)));
        v
    }

    /// Clears the totals of [`Gpu::kernel_times`].
    pub fn reset_kernel_times(&self) {
        if let Some(p) = &self.0.profile {
            lock(p).clear();
        }
    }

    /// Runs `record` (which records one dispatch of `entry`); on a profiling device, waits
    /// for the work before it first and for the dispatch after, and books the time.
    fn profiled<R>(&self, entry: &'static str, record: impl FnOnce() -> R) -> R {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(p) = &self.0.profile {
            // Errors surface at the caller's next flush; the profile only loses accuracy.
            let _ = self.sync();
            let start = std::time::Instant::now();
            let r = record();
            let _ = self.sync();
            let mut totals = lock(p);
            let e = totals.entry(entry).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += start.elapsed().as_secs_f64();
            return r;
        }
        let _ = entry;
        record()
    }

    /// Optional features the kernels use when `adapter` has them (subgroups); request them
    /// when creating a device for [`Gpu::from_device`].
    pub fn wanted_features(adapter: &wgpu::Adapter) -> wgpu::Features {
        adapter.features() & wgpu::Features::SUBGROUP
    }

    /// Wraps an existing device and queue (the app hands in eframe's, so tensors can be shown
    /// as textures without a CPU round trip). Subgroup kernels are used when the device was
    /// created with [`Gpu::wanted_features`].
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
        let lanes = subgroup_lanes(device.features().contains(wgpu::Features::SUBGROUP), &info);
        let textures = operand_textures(&info);
        log_kernels(&info, lanes, textures);
        Self(Arc::new(GpuInner {
            device,
            queue,
            info,
            limits,
            lanes,
            textures,
            layouts: Mutex::default(),
            pipelines: Mutex::default(),
            pool: Mutex::new(BufferPool::default()),
            rec: Mutex::default(),
            operands: Mutex::default(),
            error,
            lost,
            recording: AtomicBool::new(false),
            submissions: AtomicU64::new(0),
            last_submission: Mutex::new(None),
            waker: Mutex::default(),
            profile: None,
        }))
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.0.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.0.queue
    }

    /// What the driver says about the adapter.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.0.info
    }

    /// True when the subgroup kernels (CPU drivers with subgroups of 4+ lanes) run on this
    /// device.
    pub fn uses_subgroups(&self) -> bool {
        self.0.lanes > 0
    }

    /// Rows per lane block of the subgroup kernels (4 or 8; 0 when they do not run).
    pub fn subgroup_lanes(&self) -> usize {
        self.0.lanes as usize
    }

    /// Whether memory-bound kernels should use their twins that read operands a texel (four
    /// values) at a time through [`Gpu::dispatch_texels`]: on the CPU drivers the subgroup
    /// kernels serve. On lavapipe the texels come from textures, whose gathers cost less than
    /// storage loads with per-lane addresses; on SwiftShader from the buffers, still faster
    /// than the scalar kernels.
    pub(crate) fn texel_operands(&self) -> bool {
        self.uses_subgroups()
    }

    /// Whether [`Gpu::dispatch_texels`] copies operands into textures on this device (see
    /// [`GpuOptions::operand_textures`]); otherwise the kernels read the buffers.
    pub fn operand_textures(&self) -> bool {
        self.0.textures
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.limits
    }

    /// Largest tensor, in bytes, that one storage binding can hold on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        let device = self
            .0
            .limits
            .max_storage_buffer_binding_size
            .min(self.0.limits.max_buffer_size);
        binding_cap().map_or(device, |cap| cap.min(device))
    }

    /// Buffer pool statistics (bytes allocated, live, free).
    pub fn pool_stats(&self) -> PoolStats {
        lock(&self.0.pool).stats()
    }

    /// Runs `waker` each time a readback's data arrives. In the browser that happens in a
    /// promise callback, with no polling, so a UI can sleep until results are there instead
    /// of redrawing to poll (natively the callbacks run inside [`Gpu::poll`]).
    pub fn set_readback_waker(&self, waker: Waker) {
        *lock(&self.0.waker) = Some(waker);
    }

    /// Number of command buffers submitted since the device was created.
    pub fn submission_count(&self) -> u64 {
        self.0.submissions.load(Ordering::Relaxed)
    }

    /// Number of dispatches recorded since the device was created.
    pub fn dispatch_count(&self) -> u64 {
        lock(&self.0.rec).dispatches
    }

    /// Takes a buffer of `bytes` bytes from the pool. Never returns a buffer that commands
    /// of the still-open recording use, so writing it with `queue.write_buffer` is safe.
    pub(crate) fn alloc(&self, bytes: u64) -> PooledBuffer {
        BufferPool::take(self, bytes)
    }

    fn layout(&self, bindings: &[Access]) -> Arc<Layout> {
        let mut layouts = lock(&self.0.layouts);
        if let Some(l) = layouts.get(bindings) {
            return Arc::clone(l);
        }
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform)];
        for (i, a) in bindings.iter().enumerate() {
            let binding = i as u32 + 1;
            entries.push(match a {
                Access::Read | Access::Write => entry(
                    binding,
                    wgpu::BufferBindingType::Storage {
                        read_only: matches!(a, Access::Read),
                    },
                ),
                Access::Texels if !self.0.textures => entry(
                    binding,
                    wgpu::BufferBindingType::Storage { read_only: true },
                ),
                Access::Texels => wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                Access::Image => wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: wgpu::TextureFormat::Rgba8Unorm,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                    count: None,
                },
            });
        }
        let bind = self
            .0
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &entries,
            });
        let pipeline = self
            .0
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&bind)],
                immediate_size: 0,
            });
        let l = Arc::new(Layout { bind, pipeline });
        layouts.insert(bindings.to_vec(), Arc::clone(&l));
        l
    }

    fn pipeline(&self, k: &Kernel, layout: &Layout) -> Arc<wgpu::ComputePipeline> {
        let key = (k.file, k.name);
        if let Some(p) = lock(&self.0.pipelines).get(&key) {
            return Arc::clone(p);
        }
        let subgroup_file = k.file.ends_with("_subgroup.wgsl");
        // Labels name gpu-nn, so that its errors are told apart from the UI's (see
        // `from_device`) and a pipeline that failed is evicted (see `take_error`).
        let (module_label, pipeline_label) = (
            format!("{LABEL} {}", k.file),
            format!("{LABEL} {} {}", k.file, k.name),
        );
        let module = self
            .0
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&module_label),
                source: wgpu::ShaderSource::Wgsl(wgsl_source(
                    if !self.0.textures && k.bindings.contains(&Access::Texels) {
                        operands_as_buffers(k.source).into()
                    } else {
                        k.source.into()
                    },
                    subgroup_file,
                )),
            });
        // The subgroup kernels' row blocks follow the device's subgroup size.
        let mut constants = k.constants.to_vec();
        if subgroup_file {
            constants.push(("LANES", f64::from(self.0.lanes.max(4))));
        }
        let p = Arc::new(
            self.0
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&pipeline_label),
                    layout: Some(&layout.pipeline),
                    module: &module,
                    entry_point: Some(k.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        ..Default::default()
                    },
                    cache: None,
                }),
        );
        lock(&self.0.pipelines).insert(key, Arc::clone(&p));
        p
    }

    /// Records one dispatch of `k` with uniform `params` and storage `buffers` (in binding
    /// order 1..). `groups` is the number of workgroups; more than the per-dimension limit
    /// spills into y (kernels recover the linear index from `num_workgroups`).
    pub(crate) fn dispatch(
        &self,
        k: &Kernel,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        let resources: Vec<_> = buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.dispatch_with(k, params, resources, groups);
    }

    /// [`Gpu::dispatch`] with any binding resources (texture views for `Image` bindings).
    pub(crate) fn dispatch_with(
        &self,
        k: &Kernel,
        params: &[u32],
        resources: Vec<wgpu::BindingResource<'_>>,
        groups: [u32; 3],
    ) {
        self.profiled(k.entry, || {
            let mut rec = lock(&self.0.rec);
            self.record(&mut rec, k, params, resources, groups);
        });
    }

    fn record(
        &self,
        rec: &mut Recorder,
        k: &Kernel,
        params: &[u32],
        resources: Vec<wgpu::BindingResource<'_>>,
        groups: [u32; 3],
    ) {
        debug_assert_eq!(resources.len(), k.bindings.len(), "{}", k.entry);
        let layout = self.layout(k.bindings);
        let pipeline = self.pipeline(k, &layout);
        self.0.recording.store(true, Ordering::Release);
        let (chunk, offset) = rec.push_params(&self.0.device, params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rec.chunks[chunk],
                offset,
                size: wgpu::BufferSize::new(PARAM_SLOT),
            }),
        }];
        for (i, resource) in resources.into_iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource,
            });
        }
        let bind = self.0.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout.bind,
            entries: &entries,
        });
        let max = self.0.limits.max_compute_workgroups_per_dimension.max(1);
        let [mut x, mut y, z] = groups;
        if x > max {
            y = y.saturating_mul(x.div_ceil(max));
            x = max;
        }
        let pass = rec.pass(&self.0.device);
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(x.max(1), y.max(1), z.max(1));
        rec.dispatches += 1;
    }

    /// Whether tensors can be [`Access::Texels`] operands of [`Gpu::dispatch_texels`]: each
    /// fits the device's texture height limit and its buffer holds whole texels.
    pub(crate) fn texels_fit(&self, operands: &[&Tensor]) -> bool {
        let max = u64::from(self.0.limits.max_texture_dimension_2d);
        operands.iter().all(|t| {
            let texels = texel_count(t.numel());
            let rows_fit = !self.0.textures || texels.div_ceil(u64::from(OPERAND_W)) <= max;
            rows_fit && t.buf().size() >= texels * 16
        })
    }

    /// Dispatches a kernel that has a texel twin: with `texels`, `kernels.1` on `grids.1`
    /// with `inputs` as operand textures, else `kernels.0` on `grids.0` with them as storage
    /// buffers; `rest` follow either way. Callers decide `texels` with
    /// [`Gpu::texel_operands`] and [`Gpu::texels_fit`].
    pub(crate) fn dispatch_either(
        &self,
        texels: bool,
        kernels: (&Kernel, &Kernel),
        params: &[u32],
        inputs: &[&Tensor],
        rest: &[&wgpu::Buffer],
        grids: ([u32; 3], [u32; 3]),
    ) -> Result<()> {
        if texels {
            return self.dispatch_texels(kernels.1, params, inputs, rest, grids.1);
        }
        let bufs: Vec<&wgpu::Buffer> = inputs
            .iter()
            .map(|t| t.buf())
            .chain(rest.iter().copied())
            .collect();
        self.dispatch(kernels.0, params, &bufs, grids.0);
        Ok(())
    }

    /// Records a dispatch of `k` whose first bindings are [`Access::Texels`] operands: each
    /// tensor of `texels` is copied into an operand texture first, then `buffers` follow in
    /// binding order. Value `e` of an operand lands in texel `t = e / 4` at
    /// `(t % OPERAND_W, t / OPERAND_W)`, component `e % 4` (`texel` in the WGSL). Copies
    /// and dispatch are recorded under one lock, so threads sharing the device cannot
    /// refill a texture in between; a later op may refill it, since commands run in order.
    /// Without operand textures ([`Gpu::operand_textures`]) the tensors' buffers are bound
    /// instead, as arrays of texels (see `operands_as_buffers`).
    /// Callers check [`Gpu::texels_fit`] first (and use a buffer kernel otherwise).
    pub(crate) fn dispatch_texels(
        &self,
        k: &Kernel,
        params: &[u32],
        texels: &[&Tensor],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        if !self.texels_fit(texels) {
            return Err(Error::Gpu(format!(
                "{}: an operand does not fit an operand texture",
                k.entry
            )));
        }
        if !self.0.textures {
            let resources = texels
                .iter()
                .map(|t| t.buf().as_entire_binding())
                .chain(buffers.iter().map(|b| b.as_entire_binding()))
                .collect();
            self.dispatch_with(k, params, resources, groups);
            return Ok(());
        }
        self.profiled(k.entry, || {
            let mut rec = lock(&self.0.rec);
            let views: Vec<wgpu::TextureView> = texels
                .iter()
                .enumerate()
                .map(|(slot, t)| self.fill_operand(&mut rec, slot, t.buf(), texel_count(t.numel())))
                .collect();
            let mut resources: Vec<wgpu::BindingResource<'_>> = views
                .iter()
                .map(wgpu::BindingResource::TextureView)
                .collect();
            resources.extend(buffers.iter().map(|b| b.as_entire_binding()));
            self.record(&mut rec, k, params, resources, groups);
        });
        Ok(())
    }

    /// Copies `texels` whole texels of `buf` into operand texture `slot` (created or grown
    /// as needed) and returns its view.
    fn fill_operand(
        &self,
        rec: &mut Recorder,
        slot: usize,
        buf: &wgpu::Buffer,
        texels: u64,
    ) -> wgpu::TextureView {
        let w = u64::from(OPERAND_W);
        let height = texels.div_ceil(w);
        let max = u64::from(self.0.limits.max_texture_dimension_2d);
        let mut textures = lock(&self.0.operands);
        if textures.len() <= slot {
            textures.resize(slot + 1, None);
        }
        let texture = match &textures[slot] {
            Some(t) if u64::from(t.height()) >= height => t.clone(),
            old => {
                // Doubling bounds the number of re-creations while operands grow.
                let h = height.next_power_of_two().min(max) as u32;
                let bytes = |height: u32| u64::from(OPERAND_W) * u64::from(height) * 16;
                let old_bytes = old.as_ref().map_or(0, |t| bytes(t.height()));
                lock(&self.0.pool).texture_resized(old_bytes, bytes(h));
                let t = self.0.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some("gpu-nn operand"),
                    size: wgpu::Extent3d {
                        width: OPERAND_W,
                        height: h,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: wgpu::TextureFormat::Rgba32Float,
                    usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                });
                // Commands recorded with the old texture keep it alive until they ran.
                textures[slot] = Some(t.clone());
                t
            }
        };
        drop(textures);
        self.0.recording.store(true, Ordering::Release);
        rec.pass = None;
        let enc = rec.encoder(&self.0.device);
        let full = texels / w;
        let rest = texels % w;
        let copy = |enc: &mut wgpu::CommandEncoder, row: u64, width: u64, rows: u64| {
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: buf,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: row * w * 16,
                        bytes_per_row: Some(OPERAND_W * 16),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: row as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: width as u32,
                    height: rows as u32,
                    depth_or_array_layers: 1,
                },
            );
        };
        if full > 0 {
            copy(enc, 0, w, full);
        }
        if rest > 0 {
            copy(enc, full, rest, 1);
        }
        texture.create_view(&wgpu::TextureViewDescriptor::default())
    }

    /// Drops the operand textures (they are made again at the next dispatch that needs
    /// them) and returns their bytes. Commands already recorded keep theirs alive.
    pub(crate) fn drop_operand_textures(&self) -> u64 {
        let mut textures = lock(&self.0.operands);
        let bytes = textures
            .iter()
            .flatten()
            .map(|t| u64::from(OPERAND_W) * u64::from(t.height()) * 16)
            .sum();
        textures.clear();
        bytes
    }

    /// Records a buffer-to-buffer copy in order with the recorded dispatches.
    pub(crate) fn copy(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer, bytes: u64) {
        let mut rec = lock(&self.0.rec);
        self.0.recording.store(true, Ordering::Release);
        rec.pass = None;
        let enc = rec.encoder(&self.0.device);
        enc.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
    }

    /// Submits everything recorded so far as one command buffer. Cheap when nothing was
    /// recorded. Never waits for the GPU.
    pub fn flush(&self) -> Result<()> {
        let mut rec = lock(&self.0.rec);
        rec.pass = None;
        if let Some(enc) = rec.encoder.take() {
            // Params first: queue writes land before the command buffer submitted after them.
            let staged = std::mem::take(&mut rec.staged);
            for (i, data) in staged.iter().enumerate() {
                if !data.is_empty() {
                    self.0.queue.write_buffer(&rec.chunks[i], 0, data);
                }
            }
            rec.staged = staged
                .into_iter()
                .map(|mut v| {
                    v.clear();
                    v
                })
                .collect();
            let index = self.0.queue.submit([enc.finish()]);
            *lock(&self.0.last_submission) = Some(index);
            self.0.submissions.fetch_add(1, Ordering::Relaxed);
        }
        self.0.recording.store(false, Ordering::Release);
        drop(rec);
        // Buffers released while their commands were being recorded may be reused now.
        lock(&self.0.pool).end_submission();
        self.take_error()
    }

    /// Returns (and clears) a wgpu error reported since the last check. A lost device is
    /// reported every time, not cleared.
    pub fn take_error(&self) -> Result<()> {
        if lock(&self.0.error).is_some() {
            // An error may come from a device that was lost just now: a poll runs the
            // device-lost callback, so the error says what really happened.
            let _ = self.0.device.poll(wgpu::PollType::Poll);
        }
        if let Some(why) = lock(&self.0.lost).clone() {
            return Err(Error::DeviceLost(why));
        }
        match lock(&self.0.error).take() {
            Some(e) => {
                // A pipeline named in the error may be invalid: make it anew at next use
                // rather than keep a broken one.
                lock(&self.0.pipelines).retain(|(file, _), _| !e.contains(file));
                Err(Error::Gpu(e))
            }
            None => Ok(()),
        }
    }

    /// True once the device was lost (nothing submitted to it runs any more).
    pub fn is_lost(&self) -> bool {
        lock(&self.0.lost).is_some()
    }

    /// Non-blocking: lets wgpu run completed callbacks (readbacks). Call once per frame.
    pub fn poll(&self) {
        // A poll error means the device is lost; the uncaptured-error handler records it.
        let _ = self.0.device.poll(wgpu::PollType::Poll);
    }

    /// Blocks until the GPU is idle, at most [`WAIT_TIMEOUT`]. Native only: the browser
    /// must never block.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait_for(None)
    }

    /// Blocks until submission `index` (`None`: the latest) has finished and its callbacks
    /// ran, at most [`WAIT_TIMEOUT`]; a hung driver is an error, not a hang.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wait_for(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let poll = wgpu::PollType::Wait {
            submission_index: index,
            timeout: Some(WAIT_TIMEOUT),
        };
        match self.0.device.poll(poll) {
            Ok(_) => self.take_error(),
            Err(wgpu::PollError::Timeout) => Err(Error::Timeout(WAIT_TIMEOUT.as_secs())),
            Err(e) => {
                // A lost device also reports through the error handler; prefer its words.
                self.take_error()?;
                Err(Error::Gpu(e.to_string()))
            }
        }
    }
}

impl Recorder {
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gpu-nn step"),
            })
        })
    }

    fn pass(&mut self, device: &wgpu::Device) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self
                .encoder(device)
                .begin_compute_pass(&wgpu::ComputePassDescriptor::default())
                .forget_lifetime();
            self.pass = Some(pass);
        }
        // Just inserted above when absent.
        self.pass.as_mut().expect("compute pass present")
    }

    /// Appends one params slot and returns (chunk index, byte offset).
    fn push_params(&mut self, device: &wgpu::Device, params: &[u32]) -> (usize, u64) {
        // A kernel whose params outgrow a slot would overwrite its neighbour's: a bug in a
        // launcher, caught in release builds too.
        assert!(
            params.len() * 4 <= PARAM_SLOT as usize,
            "kernel params of {} bytes exceed the {PARAM_SLOT}-byte slot",
            params.len() * 4
        );
        let chunk_bytes = (PARAM_SLOT * SLOTS_PER_CHUNK) as usize;
        let idx = match self.staged.iter().position(|v| v.len() < chunk_bytes) {
            Some(i) => i,
            None => {
                self.staged.push(Vec::with_capacity(chunk_bytes));
                self.staged.len() - 1
            }
        };
        while self.chunks.len() <= idx {
            self.chunks
                .push(device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gpu-nn params"),
                    size: chunk_bytes as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }));
        }
        let v = &mut self.staged[idx];
        let offset = v.len() as u64;
        v.extend_from_slice(bytemuck::cast_slice(params));
        v.resize(offset as usize + PARAM_SLOT as usize, 0);
        (idx, offset)
    }
}
