//! The egui app, native and in the browser: train a classifier and watch its curves and
//! feature maps, classify dropped images, train a DCGAN.
//!
//! The engine runs on eframe's own wgpu device. Each frame submits a few training steps
//! (within a time budget and at most [`session::max_in_flight`] ahead of the GPU) and
//! collects finished readbacks with `try_take`: the UI never waits for the GPU.

pub mod dropped;
pub mod gan;
pub mod session;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;

use egui::{Color32, RichText};
use egui_plot::{Legend, Line, Plot};
use gpu_nn::Gpu;
use web_time::Instant;

use crate::data::Bundled;
use gan::GanSession;
use session::{Data, Inspection, ModelKind, OptKind, Session, Settings};
use view::Textures;

/// Time per frame spent submitting training steps; the rest is left to drawing.
const STEP_BUDGET_S: f64 = if cfg!(target_arch = "wasm32") {
    0.010
} else {
    0.025
};
/// How often a CPU adapter redraws while a step is out. In headless Chromium on SwiftShader
/// one egui frame at 800x600 costs about 250 ms of the two cores that also train: drawing at
/// 4 Hz left MnistCnn training at 17 img/s, at 1 Hz 41 img/s. In the browser readbacks wake
/// the UI themselves (`Gpu::set_readback_waker`), so this is only a fallback there; natively
/// their callbacks run inside `Gpu::poll`, which these frames call.
const CPU_POLL: std::time::Duration = if cfg!(target_arch = "wasm32") {
    std::time::Duration::from_millis(4000)
} else {
    std::time::Duration::from_millis(100)
};

/// Feature maps refresh at most this often while training (seconds).
const INSPECT_EVERY_S: f64 = 1.0;
/// Tags telling an inspection of the chosen sample from one of a dropped image.
const TAG_SAMPLE: u64 = 0;
const TAG_DROP: u64 = 1;

/// How the app starts (from the command line's environment or the page URL).
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Start training at once.
    pub autostart: bool,
    /// Open the GAN tab (and, with `autostart`, train the DCGAN instead of the classifier).
    pub gan: bool,
    /// Model to start with.
    pub model: Option<ModelKind>,
    /// Batch size to start with.
    pub batch: Option<usize>,
    /// Validation interval in steps to start with.
    pub val_every: Option<u64>,
    /// Optimizer to start with.
    pub opt: Option<OptKind>,
    /// Learning rate to start with.
    pub lr: Option<f32>,
    /// Save a screenshot here once this many steps are back and feature maps are shown,
    /// then close (native; used by scripts/app-screenshot).
    pub screenshot: Option<(std::path::PathBuf, u64)>,
}

impl Launch {
    /// Reads `NNLAB_AUTOSTART`, `NNLAB_TAB` (`gan`), `NNLAB_MODEL`, `NNLAB_BATCH`,
    /// `NNLAB_VAL_EVERY`, `NNLAB_OPT`, `NNLAB_LR`, `NNLAB_SCREENSHOT` and
    /// `NNLAB_SCREENSHOT_STEPS` (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let steps = var("NNLAB_SCREENSHOT_STEPS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        Self {
            autostart: var("NNLAB_AUTOSTART").is_some_and(|v| v != "0"),
            gan: var("NNLAB_TAB").is_some_and(|v| v == "gan"),
            model: var("NNLAB_MODEL").and_then(|m| ModelKind::from_name(&m)),
            batch: var("NNLAB_BATCH").and_then(|b| b.parse().ok()),
            val_every: var("NNLAB_VAL_EVERY").and_then(|b| b.parse().ok()),
            opt: var("NNLAB_OPT").and_then(|o| OptKind::from_name(&o)),
            lr: var("NNLAB_LR").and_then(|v| v.parse().ok()),
            screenshot: var("NNLAB_SCREENSHOT").map(|p| (p.into(), steps)),
        }
    }
}

/// The wgpu setup the app asks eframe for: every limit the adapter offers (eframe's default
/// device has `Limits::default()`, too little for big tensors), and in the browser WebGPU
/// only, since WebGL2 has no compute shaders.
pub fn wgpu_configuration() -> egui_wgpu::WgpuConfiguration {
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    if cfg!(target_arch = "wasm32") {
        setup.instance_descriptor.backends = wgpu::Backends::BROWSER_WEBGPU;
    }
    // The kernels want the adapter's limits (storage buffers per stage, binding sizes) and
    // its subgroups (the fast kernels on CPU drivers), not eframe's defaults.
    setup.device_descriptor = Arc::new(|adapter: &wgpu::Adapter| wgpu::DeviceDescriptor {
        label: Some("nnlab"),
        required_features: Gpu::wanted_features(adapter),
        required_limits: adapter.limits(),
        ..Default::default()
    });
    egui_wgpu::WgpuConfiguration {
        wgpu_setup: setup.into(),
        ..Default::default()
    }
}

use gpu_nn::wgpu;

/// Whether the page asked WebGPU for the `subgroups` feature on the app's device (the
/// script in web/index.html does, since wgpu does not forward that feature).
#[cfg(target_arch = "wasm32")]
fn page_enabled_subgroups() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
        .is_some_and(|e| e.has_attribute("data-nnlab-subgroups"))
}

/// Which dataset the next Reset uses.
#[derive(Clone, Debug, PartialEq)]
enum DataChoice {
    Bundled(Bundled),
    #[cfg(not(target_arch = "wasm32"))]
    Dir(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Train,
    Features,
    Gan,
}

/// Files the browser has finished reading: (name, bytes or error).
#[cfg(target_arch = "wasm32")]
type WebDrops = std::rc::Rc<std::cell::RefCell<Vec<(String, Result<Vec<u8>, String>)>>>;

/// What the drop zone shows.
#[derive(Default)]
struct Drop {
    name: String,
    prepared: Option<dropped::Prepared>,
    top3: Option<Vec<(String, f32)>>,
    /// An inspection of the prepared image should be submitted.
    wanted: bool,
    error: Option<String>,
}

/// The app. Public fields are what tests look at.
pub struct NnlabApp {
    gpu: Option<Gpu>,
    /// Why there is no engine (no adapter with compute), shown instead of the controls.
    pub gpu_error: Option<String>,
    /// Settings of the next Reset; lr and momentum apply at once.
    pub settings: Settings,
    data_choice: DataChoice,
    data: Option<Arc<Data>>,
    /// The classifier being trained.
    pub session: Option<Session>,
    /// Training advances every frame while true.
    pub running: bool,
    /// Last error (training, data loading), shown in red.
    pub error: Option<String>,
    tab: Tab,
    /// Validation-set index of the sample whose feature maps are shown.
    pub sample: usize,
    sample_changed: bool,
    /// Latest inspection of the sample.
    pub features: Option<Inspection>,
    last_inspect: f64,
    drop: Drop,
    #[cfg(target_arch = "wasm32")]
    web_drops: WebDrops,
    textures: Textures,
    /// eframe's renderer, to register the engine's pictures as egui textures.
    render_state: Option<egui_wgpu::RenderState>,
    /// Engine pictures registered with the renderer, by name.
    pictures: HashMap<String, (egui::TextureId, wgpu::Texture)>,
    gan: Option<GanSession>,
    gan_running: bool,
    gan_batch: usize,
    gan_width: f32,
    gan_samples_at: f64,
    frame_ms: f32,
    work_ms: f32,
    /// The engine runs on a CPU driver (lavapipe, SwiftShader): frames compete with steps.
    cpu_adapter: bool,
    launch: Launch,
    screenshot_taken: bool,
    #[cfg(target_arch = "wasm32")]
    published_at: f64,
}

impl NnlabApp {
    /// Builds the app on eframe's wgpu device (no device means a message, not a panic).
    pub fn new(cc: &eframe::CreationContext<'_>, launch: Launch) -> Self {
        let (gpu, gpu_error) = match cc.wgpu_render_state.as_ref() {
            None => (
                None,
                Some("eframe did not start its wgpu renderer".to_string()),
            ),
            Some(rs) => match gpu_nn::check_adapter(&rs.adapter) {
                Ok(()) => {
                    let gpu = Gpu::from_device(
                        rs.device.clone(),
                        rs.queue.clone(),
                        rs.adapter.get_info(),
                    );
                    #[cfg(target_arch = "wasm32")]
                    let gpu = if page_enabled_subgroups() {
                        gpu.with_page_subgroups()
                    } else {
                        gpu
                    };
                    (Some(gpu), None)
                }
                Err(e) => (None, Some(e.to_string())),
            },
        };
        if let Some(g) = &gpu {
            // Results arriving wake the UI (in the browser without any polling frame).
            let ctx = cc.egui_ctx.clone();
            g.set_readback_waker(Arc::new(move || ctx.request_repaint()));
        }
        let cpu_adapter = gpu
            .as_ref()
            .is_some_and(|g| g.adapter_info().device_type == wgpu::DeviceType::Cpu);
        let mut settings = Settings::default();
        if let Some(m) = launch.model {
            settings.model = m;
        }
        if let Some(b) = launch.batch {
            settings.batch = b.max(1);
        }
        if let Some(v) = launch.val_every {
            settings.val_every = v;
        }
        if let Some(o) = launch.opt {
            settings.opt = o;
        }
        if let Some(lr) = launch.lr.filter(|lr| lr.is_finite() && *lr > 0.0) {
            settings.lr = lr;
        }
        let mut app = Self {
            gpu,
            gpu_error,
            settings,
            data_choice: DataChoice::Bundled(Bundled::Mnist),
            data: None,
            session: None,
            running: false,
            error: None,
            tab: Tab::Train,
            sample: 0,
            sample_changed: true,
            features: None,
            last_inspect: f64::NEG_INFINITY,
            drop: Drop::default(),
            #[cfg(target_arch = "wasm32")]
            web_drops: Default::default(),
            textures: Textures::default(),
            render_state: cc.wgpu_render_state.clone(),
            pictures: HashMap::new(),
            gan: None,
            gan_running: false,
            gan_batch: 32,
            gan_width: 0.25,
            gan_samples_at: f64::NEG_INFINITY,
            frame_ms: 0.0,
            work_ms: 0.0,
            cpu_adapter,
            launch,
            screenshot_taken: false,
            #[cfg(target_arch = "wasm32")]
            published_at: f64::NEG_INFINITY,
        };
        app.reset();
        if app.launch.gan {
            app.tab = Tab::Gan;
            if app.launch.autostart {
                app.new_gan();
                app.gan_running = app.gan.is_some();
            }
        } else {
            app.running = app.launch.autostart && app.session.is_some();
        }
        app
    }

    /// The engine, if the adapter can run it.
    pub fn gpu(&self) -> Option<&Gpu> {
        self.gpu.as_ref()
    }

    /// Rebuilds data (if the choice changed) and the session from the current settings.
    pub fn reset(&mut self) {
        let Some(gpu) = self.gpu.clone() else { return };
        self.running = false;
        self.session = None;
        self.features = None;
        let result = (|| -> anyhow::Result<Session> {
            let data = match &self.data {
                Some(d) if self.data_matches(d) => Arc::clone(d),
                _ => {
                    let d = Arc::new(match &self.data_choice {
                        DataChoice::Bundled(b) => Data::bundled(*b)?,
                        #[cfg(not(target_arch = "wasm32"))]
                        DataChoice::Dir(p) => Data::from_dir(std::path::Path::new(p))?,
                    });
                    self.data = Some(Arc::clone(&d));
                    d
                }
            };
            Session::new(&gpu, data, self.settings.clone())
        })();
        match result {
            Ok(s) => {
                self.session = Some(s);
                self.error = None;
                self.sample_changed = true;
                if self.drop.prepared.is_some() {
                    self.drop.wanted = true;
                }
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }

    fn data_matches(&self, d: &Data) -> bool {
        match &self.data_choice {
            DataChoice::Bundled(b) => d.name.starts_with(b.name()) && d.name.contains("bundled"),
            #[cfg(not(target_arch = "wasm32"))]
            DataChoice::Dir(p) => d.name.starts_with(p.as_str()),
        }
    }

    /// The top-3 classes of the last dropped image, once known.
    pub fn drop_prediction(&self) -> Option<&[(String, f32)]> {
        self.drop.top3.as_deref()
    }

    /// The message about the last dropped file, if it could not be used.
    pub fn drop_error(&self) -> Option<&str> {
        self.drop.error.as_deref()
    }

    /// Classifies a file's bytes with the current model (what a drop does).
    pub fn classify_bytes(&mut self, name: &str, bytes: &[u8]) {
        self.drop = Drop {
            name: name.to_string(),
            ..Drop::default()
        };
        let norm = self
            .data
            .as_ref()
            .map_or(Bundled::Mnist.normalisation(), |d| d.norm);
        match dropped::prepare(bytes, 28, norm) {
            Ok(p) => {
                self.drop.prepared = Some(p);
                self.drop.wanted = true;
            }
            Err(e) => self.drop.error = Some(format!("{name}: {e:#}")),
        }
    }

    fn take_dropped_files(&mut self, ctx: &egui::Context) {
        let files = ctx.input(|i| i.raw.dropped_files.clone());
        for f in files {
            let name = f.path().file_name().map_or_else(
                || "dropped file".into(),
                |n| n.to_string_lossy().into_owned(),
            );
            #[cfg(not(target_arch = "wasm32"))]
            match f.bytes() {
                Ok(b) => self.classify_bytes(&name, &b),
                Err(e) => {
                    self.drop = Drop {
                        error: Some(format!("{name}: cannot read the file: {e}")),
                        ..Drop::default()
                    }
                }
            }
            #[cfg(target_arch = "wasm32")]
            {
                // Browsers read files asynchronously: the bytes arrive in a later frame.
                let slot = std::rc::Rc::clone(&self.web_drops);
                let ctx = ctx.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let r = f.bytes_async().await;
                    slot.borrow_mut().push((name, r));
                    ctx.request_repaint();
                });
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let done: Vec<_> = self.web_drops.borrow_mut().drain(..).collect();
            for (name, r) in done {
                match r {
                    Ok(b) => self.classify_bytes(&name, &b),
                    Err(e) => {
                        self.drop = Drop {
                            error: Some(format!("{name}: cannot read the file: {e}")),
                            ..Drop::default()
                        }
                    }
                }
            }
        }
    }

    /// Submits steps, inspections and GAN iterations, and collects what came back.
    /// Called once per frame; never waits for the GPU.
    pub fn advance(&mut self, now: f64) {
        let t0 = Instant::now();
        if let Err(e) = self.advance_classifier(now, t0) {
            self.error = Some(format!("{e:#}"));
            self.running = false;
        }
        if let Err(e) = self.advance_gan(now, t0) {
            self.error = Some(format!("GAN: {e:#}"));
            self.gan_running = false;
        }
        self.work_ms = t0.elapsed().as_secs_f32() * 1000.0;
    }

    fn advance_classifier(&mut self, now: f64, t0: Instant) -> anyhow::Result<()> {
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        // Live hyper-parameters: take effect at the next step.
        if s.settings().lr != self.settings.lr {
            s.set_lr(self.settings.lr)?;
        }
        if s.momentum().is_some_and(|m| m != self.settings.momentum) {
            s.set_momentum(self.settings.momentum)?;
        }
        // Collect first, then submit steps, then an inspection: on a CPU adapter the
        // inspection then runs right behind the burst and comes back with it, instead of
        // taking a wake-up (and a frame) of its own between bursts.
        if let Some((tag, insp)) = s.poll(now)? {
            match tag {
                TAG_DROP => {
                    let names = &s.data().class_names;
                    self.drop.top3 = Some(
                        dropped::top_k(&insp.probs, 3)
                            .into_iter()
                            .map(|(c, p)| {
                                (names.get(c).cloned().unwrap_or_else(|| c.to_string()), p)
                            })
                            .collect(),
                    );
                }
                _ => self.features = Some(insp),
            }
        }
        if self.running {
            let burst = s.burst();
            if self.cpu_adapter {
                // One readback for the burst: the UI wakes (and draws) once for all of it.
                s.step_many(now, burst)?;
            } else {
                for _ in 0..burst {
                    s.step(now)?;
                    if t0.elapsed().as_secs_f64() > STEP_BUDGET_S {
                        break;
                    }
                }
            }
        }
        if !s.inspecting() {
            if self.drop.wanted
                && let Some(p) = &self.drop.prepared
            {
                s.inspect(&p.input, TAG_DROP)?;
                self.drop.wanted = false;
            } else if self.sample_changed
                || (self.running && now - self.last_inspect > INSPECT_EVERY_S)
            {
                let val = &s.data().val;
                let per: usize = val.shape.iter().product();
                let i = self.sample.min(val.len().saturating_sub(1));
                let img = val.images[i * per..(i + 1) * per].to_vec();
                s.inspect(&img, TAG_SAMPLE)?;
                self.sample_changed = false;
                self.last_inspect = now;
            }
        }
        Ok(())
    }

    fn advance_gan(&mut self, now: f64, t0: Instant) -> anyhow::Result<()> {
        let Some(g) = self.gan.as_mut() else {
            return Ok(());
        };
        // Collect first: the frame in which an iteration comes back submits the next one.
        g.poll()?;
        if self.gan_running {
            while g.can_step() {
                g.step()?;
                if t0.elapsed().as_secs_f64() > STEP_BUDGET_S {
                    break;
                }
            }
            if now - self.gan_samples_at > INSPECT_EVERY_S {
                g.request_samples()?;
                self.gan_samples_at = now;
            }
        }
        Ok(())
    }
}

impl eframe::App for NnlabApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let (now, dt) = ctx.input(|i| (i.time, i.unstable_dt));
        self.frame_ms = 0.9 * self.frame_ms + 0.1 * dt * 1000.0;
        self.take_dropped_files(&ctx);
        self.advance(now);
        self.upload_textures(&ctx);
        self.draw(ui);
        self.maybe_screenshot(&ctx);
        #[cfg(target_arch = "wasm32")]
        self.publish(now);
        // Keep frames coming while anything is in flight: readbacks are polled per frame.
        let busy = self.running
            || self.gan_running
            || self
                .session
                .as_ref()
                .is_some_and(|s| s.in_flight() > 0 || s.inspecting());
        if busy && self.cpu_adapter {
            // On a CPU adapter every frame is drawn by the cores that run the steps: draw when
            // results come back (readbacks wake the UI, and that frame submits the next
            // burst) and otherwise only poll now and then. Input events still repaint at once.
            ctx.request_repaint_after(CPU_POLL);
        } else if busy {
            ctx.request_repaint();
        } else {
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }
}

impl NnlabApp {
    fn upload_textures(&mut self, ctx: &egui::Context) {
        if let Some(p) = &self.drop.prepared
            && self
                .textures
                .get(&format!("drop:{}", self.drop.name))
                .is_none()
        {
            self.textures.clear_prefix("drop:");
            let img = egui::ColorImage::from_gray([28, 28], &p.pixels);
            self.textures
                .set(ctx, &format!("drop:{}", self.drop.name), img);
        }
        self.register_pictures();
    }

    /// Hands the engine's feature-map textures to egui's renderer: registered once per
    /// texture, then redrawn in place by the engine (no CPU copy, no new texture per frame).
    fn register_pictures(&mut self) {
        let Some(rs) = &self.render_state else {
            return;
        };
        let features = self.features.iter().flat_map(|f| {
            f.layers
                .iter()
                .map(|(name, _, pic)| (format!("layer:{name}"), pic))
                .chain(
                    f.filters
                        .iter()
                        .map(|(_, pic)| ("filters".to_string(), pic)),
                )
        });
        let gan = self
            .gan
            .iter()
            .filter_map(|g| g.samples())
            .map(|(_, pic)| ("gan:samples".to_string(), pic));
        let wanted = features.chain(gan);
        let mut renderer = rs.renderer.write();
        for (key, pic) in wanted {
            if self
                .pictures
                .get(&key)
                .is_some_and(|(_, t)| t == pic.texture())
            {
                continue;
            }
            let id = renderer.register_native_texture(
                &rs.device,
                &pic.srgb_view(),
                wgpu::FilterMode::Nearest,
            );
            if let Some((old, _)) = self.pictures.insert(key, (id, pic.texture().clone())) {
                renderer.free_texture(&old);
            }
        }
    }

    /// Engine textures registered with egui's renderer (feature maps, filters, GAN samples).
    pub fn native_pictures(&self) -> usize {
        self.pictures.len()
    }

    /// Whether the engine texture `key` (`filters`, `layer:<name>`, `gan:samples`) is
    /// registered for drawing.
    pub fn has_picture(&self, key: &str) -> bool {
        self.pictures.contains_key(key)
    }

    /// GAN iterations whose losses came back.
    pub fn gan_losses(&self) -> usize {
        self.gan.as_ref().map_or(0, |g| g.d_loss.len())
    }

    fn forget_picture(&mut self, key: &str) {
        if let (Some((id, _)), Some(rs)) = (self.pictures.remove(key), &self.render_state) {
            rs.renderer.write().free_texture(&id);
        }
    }

    /// A registered picture and its size in pixels.
    fn picture(&self, key: &str) -> Option<egui::load::SizedTexture> {
        let (id, t) = self.pictures.get(key)?;
        let size = t.size();
        Some(egui::load::SizedTexture::new(
            *id,
            egui::vec2(size.width as f32, size.height as f32),
        ))
    }

    fn draw(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("top").show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.heading("nnlab");
                ui.selectable_value(&mut self.tab, Tab::Train, "Train");
                ui.selectable_value(&mut self.tab, Tab::Features, "Feature maps");
                ui.selectable_value(&mut self.tab, Tab::Gan, "GAN");
                ui.separator();
                ui.label(format!(
                    "frame {:.1} ms (steps {:.1} ms)",
                    self.frame_ms, self.work_ms
                ));
                if let Some(s) = &self.session {
                    let rate = s.img_per_s().map_or("-".into(), |r| format!("{r:.0}"));
                    let loss = s.last_loss.map_or("-".into(), |l| format!("{l:.4}"));
                    ui.label(format!(
                        "step {}  epoch {}  loss {loss}  {rate} img/s",
                        s.last_step_done,
                        s.epoch() + 1
                    ));
                }
                if let Some(g) = self.gpu() {
                    let a = g.adapter_info();
                    ui.label(RichText::new(format!("{} ({:?})", a.name, a.backend)).weak());
                }
            });
        });
        if let Some(e) = &self.gpu_error {
            egui::CentralPanel::default().show(ui, |ui| {
                ui.heading("No GPU with compute shaders");
                ui.colored_label(Color32::LIGHT_RED, e);
                ui.label(
                    "nnlab trains on the GPU with WebGPU compute shaders. Natively it needs \
                     Vulkan, Metal or DirectX 12 (Mesa's lavapipe works without a GPU).",
                );
            });
            return;
        }
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(250.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.controls(ui));
            });
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Train => self.train_tab(ui),
            Tab::Features => self.features_tab(ui),
            Tab::Gan => self.gan_tab(ui),
        });
    }

    fn controls(&mut self, ui: &mut egui::Ui) {
        ui.heading("Training");
        ui.horizontal(|ui| {
            let can = self.session.is_some();
            if self.running {
                if ui.button("Pause").clicked() {
                    self.running = false;
                }
            } else if ui.add_enabled(can, egui::Button::new("Start")).clicked() {
                self.running = true;
            }
            if ui
                .add_enabled(can && !self.running, egui::Button::new("Step"))
                .clicked()
                && let Some(s) = &mut self.session
            {
                let now = ui.input(|i| i.time);
                if let Err(e) = s.step(now) {
                    self.error = Some(format!("{e:#}"));
                }
                // Show the feature maps of the new weights.
                self.sample_changed = true;
            }
            if ui.button("Reset").clicked() {
                self.reset();
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        ui.separator();
        ui.label("Live (next step):");
        ui.horizontal(|ui| {
            let l = ui.label("Learning rate");
            ui.add(
                egui::DragValue::new(&mut self.settings.lr)
                    .speed(0.0005)
                    .range(0.0..=1.0)
                    .max_decimals(5),
            )
            .labelled_by(l.id)
            .on_hover_text("Takes effect at the next step");
        });
        if self.settings.opt == OptKind::Sgd {
            ui.horizontal(|ui| {
                let l = ui.label("Momentum");
                ui.add(
                    egui::DragValue::new(&mut self.settings.momentum)
                        .speed(0.01)
                        .range(0.0..=0.99),
                )
                .labelled_by(l.id);
            });
        }
        ui.separator();
        ui.label("Applied at Reset:");
        egui::ComboBox::from_label("Model")
            .selected_text(self.settings.model.name())
            .show_ui(ui, |ui| {
                for m in ModelKind::ALL {
                    ui.selectable_value(&mut self.settings.model, m, m.name());
                }
            });
        let data_text = match &self.data_choice {
            DataChoice::Bundled(b) => b.name().to_string(),
            #[cfg(not(target_arch = "wasm32"))]
            DataChoice::Dir(_) => "directory".to_string(),
        };
        egui::ComboBox::from_label("Data")
            .selected_text(data_text)
            .show_ui(ui, |ui| {
                for b in Bundled::ALL {
                    ui.selectable_value(&mut self.data_choice, DataChoice::Bundled(b), b.name());
                }
                #[cfg(not(target_arch = "wasm32"))]
                if ui
                    .selectable_label(matches!(self.data_choice, DataChoice::Dir(_)), "directory")
                    .clicked()
                {
                    self.data_choice = DataChoice::Dir(String::new());
                }
            });
        #[cfg(not(target_arch = "wasm32"))]
        if let DataChoice::Dir(p) = &mut self.data_choice {
            let l = ui.label("IDX directory (MNIST file names, raw or .gz):");
            ui.text_edit_singleline(p).labelled_by(l.id);
        }
        ui.horizontal(|ui| {
            let l = ui.label("Batch size");
            ui.add(egui::DragValue::new(&mut self.settings.batch).range(1..=512))
                .labelled_by(l.id);
        });
        ui.horizontal(|ui| {
            ui.label("Optimizer");
            ui.selectable_value(&mut self.settings.opt, OptKind::Sgd, "SGD");
            ui.selectable_value(&mut self.settings.opt, OptKind::Adam, "Adam");
        });
        ui.horizontal(|ui| {
            let l = ui.label("Validate every");
            ui.add(egui::DragValue::new(&mut self.settings.val_every).range(0..=10_000))
                .labelled_by(l.id);
            ui.label("steps");
        });
        if let Some(d) = &self.data {
            ui.label(RichText::new(&d.name).weak());
        }
        ui.separator();
        self.drop_zone(ui);
    }

    fn drop_zone(&mut self, ui: &mut egui::Ui) {
        ui.heading("Classify an image");
        ui.label("Drop an image file on the window.");
        if let Some(e) = &self.drop.error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        if let Some(p) = &self.drop.prepared {
            ui.label(format!(
                "{} ({}x{}{})",
                self.drop.name,
                p.original.0,
                p.original.1,
                if p.inverted { ", inverted" } else { "" }
            ));
            ui.horizontal(|ui| {
                if let Some(t) = self.textures.get(&format!("drop:{}", self.drop.name)) {
                    ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(84.0, 84.0)));
                }
                ui.vertical(|ui| match &self.drop.top3 {
                    Some(top) => {
                        for (name, p) in top {
                            ui.label(format!("{name}: {:.1}%", p * 100.0));
                        }
                    }
                    None => {
                        ui.spinner();
                    }
                });
            });
        }
    }

    fn train_tab(&mut self, ui: &mut egui::Ui) {
        if self.session.is_none() {
            ui.label("No model: see the message on the left.");
            return;
        }
        // Feature maps beside the curves: both change as the network learns.
        egui::Panel::right("train_features")
            .resizable(true)
            .default_size(380.0)
            .show(ui, |ui| self.features_tab(ui));
        let Some(s) = &self.session else { return };
        let h = &s.history;
        let half = (ui.available_height() / 2.0 - 20.0).max(120.0);
        ui.label(format!(
            "loss ({} training points, {} validation)",
            h.train_loss.len(),
            h.val_loss.len()
        ));
        Plot::new("loss")
            .height(half)
            .legend(Legend::default())
            .show(ui, |p| {
                p.line(Line::new("train loss", h.train_loss.clone()));
                p.line(Line::new("validation loss", h.val_loss.clone()));
            });
        ui.label("accuracy");
        Plot::new("acc")
            .height(half)
            .legend(Legend::default())
            .include_y(0.0)
            .include_y(1.0)
            .show(ui, |p| {
                p.line(Line::new("train accuracy", h.train_acc.clone()));
                p.line(Line::new("validation accuracy", h.val_acc.clone()));
            });
    }

    fn features_tab(&mut self, ui: &mut egui::Ui) {
        let Some(s) = &self.session else { return };
        let val = &s.data().val;
        let max = val.len().saturating_sub(1);
        ui.horizontal(|ui| {
            let l = ui.label("Validation sample");
            if ui
                .add(egui::DragValue::new(&mut self.sample).range(0..=max))
                .labelled_by(l.id)
                .changed()
            {
                self.sample_changed = true;
            }
            if let Some(&l) = val.labels.get(self.sample) {
                let names = &s.data().class_names;
                ui.label(format!(
                    "label: {}",
                    names.get(usize::from(l)).map_or("?", String::as_str)
                ));
            }
        });
        let Some(f) = &self.features else {
            ui.spinner();
            return;
        };
        let best = dropped::top_k(&f.probs, 1);
        if let Some(&(c, p)) = best.first() {
            let names = &s.data().class_names;
            ui.label(format!(
                "after step {}: predicted {} ({:.1}%)",
                f.step,
                names.get(c).map_or("?", String::as_str),
                p * 100.0
            ));
        }
        egui::ScrollArea::vertical().show(ui, |ui| {
            if let Some(t) = self.picture("filters") {
                ui.label("first-layer filters");
                ui.add(egui::Image::new(t).fit_to_exact_size(t.size * 6.0));
            }
            for (name, shape, _) in &f.layers {
                if let Some(t) = self.picture(&format!("layer:{name}")) {
                    ui.label(format!("{name} {shape:?}"));
                    let scale = (320.0 / t.size.x).clamp(1.0, 8.0);
                    ui.add(egui::Image::new(t).fit_to_exact_size(t.size * scale));
                }
            }
        });
    }

    fn gan_tab(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            match (&self.gan, self.gan_running) {
                (Some(_), true) => {
                    if ui.button("Pause GAN").clicked() {
                        self.gan_running = false;
                    }
                }
                _ => {
                    if ui.button("Start GAN").clicked() {
                        if self.gan.is_none() {
                            self.new_gan();
                        }
                        self.gan_running = self.gan.is_some();
                    }
                }
            }
            if ui.button("Reset GAN").clicked() {
                self.gan = None;
                self.gan_running = false;
                self.forget_picture("gan:samples");
            }
            let l = ui.label("batch");
            ui.add(egui::DragValue::new(&mut self.gan_batch).range(1..=256))
                .labelled_by(l.id);
            let l = ui.label("width");
            ui.add(
                egui::DragValue::new(&mut self.gan_width)
                    .range(0.1..=1.0)
                    .speed(0.05),
            )
            .labelled_by(l.id);
            if let Some(g) = &self.gan {
                ui.label(format!("iteration {}", g.steps()));
            }
        });
        ui.label("Samples from fixed noise (refreshed every second), discriminator and generator losses.");
        ui.horizontal(|ui| {
            if let Some(t) = self.picture("gan:samples") {
                ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(300.0, 300.0)));
            }
            if let Some(g) = &self.gan {
                Plot::new("gan")
                    .height(300.0)
                    .legend(Legend::default())
                    .show(ui, |p| {
                        p.line(Line::new("D loss", g.d_loss.clone()));
                        p.line(Line::new("G loss", g.g_loss.clone()));
                    });
            }
        });
    }

    fn new_gan(&mut self) {
        let Some(gpu) = self.gpu.clone() else { return };
        let data = match &self.data {
            Some(d) => Arc::clone(d),
            None => return,
        };
        match GanSession::new(&gpu, data, self.gan_batch, self.gan_width, 7) {
            Ok(g) => self.gan = Some(g),
            Err(e) => self.error = Some(format!("GAN: {e:#}")),
        }
    }

    fn maybe_screenshot(&mut self, ctx: &egui::Context) {
        let Some((path, steps)) = self.launch.screenshot.clone() else {
            return;
        };
        let ready = self
            .session
            .as_ref()
            .is_some_and(|s| s.last_step_done >= steps && !s.history.val_loss.is_empty())
            && self.features.is_some();
        if ready && !self.screenshot_taken {
            self.screenshot_taken = true;
            self.running = false;
            // Show the feature maps beside the curves: the screenshot has both.
            self.tab = Tab::Train;
            let c = ctx.clone();
            ctx.request_screenshot(move |img| {
                let [w, h] = img.size;
                let raw: Vec<u8> = img.pixels.iter().flat_map(|p| p.to_array()).collect();
                match image::RgbaImage::from_raw(w as u32, h as u32, raw) {
                    Some(buf) => match buf.save(&path) {
                        Ok(()) => log::info!("screenshot saved to {}", path.display()),
                        Err(e) => log::error!("cannot save {}: {e}", path.display()),
                    },
                    None => log::error!("screenshot has a wrong size"),
                }
                c.send_viewport_cmd(egui::ViewportCommand::Close);
            });
        }
    }

    /// Writes the training state into the page (`#nnlab-state`) for tests and benchmarks.
    #[cfg(target_arch = "wasm32")]
    fn publish(&mut self, now: f64) {
        if now - self.published_at < 0.25 {
            return;
        }
        self.published_at = now;
        let state = match (&self.gpu_error, &self.session) {
            (Some(e), _) => serde_json::json!({ "status": "no-gpu", "error": e }),
            (None, Some(s)) => serde_json::json!({
                "status": if self.running { "training" } else { "idle" },
                "model": s.settings().model.name(),
                "batch": s.settings().batch,
                "steps": s.last_step_done,
                "loss": s.last_loss,
                "first_loss": s.history.train_loss.first().map(|p| p[1]),
                "img_per_s": s.img_per_s(),
                "val_acc": s.history.val_acc.last().map(|p| p[1]),
                "frame_ms": self.frame_ms,
                "error": self.error,
                "drop": self.drop.top3.as_ref().map(|t| t.iter().map(|(n, p)| format!("{n}:{p:.3}")).collect::<Vec<_>>()),
                "drop_error": self.drop.error,
                "gan": self.gan.as_ref().map(|g| serde_json::json!({
                    "running": self.gan_running,
                    "steps": g.steps(),
                    "losses_back": g.d_loss.len(),
                    "d_loss": g.d_loss.last().map(|p| p[1]),
                    "g_loss": g.g_loss.last().map(|p| p[1]),
                    "samples_step": g.samples().map(|(step, _)| step),
                    "samples_shown": self.picture("gan:samples").is_some(),
                })),
            }),
            (None, None) => serde_json::json!({ "status": "error", "error": self.error }),
        };
        if let Some(el) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("nnlab-state"))
        {
            el.set_text_content(Some(&state.to_string()));
        }
    }
}
