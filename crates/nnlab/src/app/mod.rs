//! The egui app, native and in the browser: a lab of runs training side by side, their
//! curves, feature maps, GAN samples and dropped images classified.
//!
//! The engine runs on eframe's own wgpu device. Each frame collects what came back, submits
//! steps of the running runs (within a time budget, each at most a few steps ahead of the
//! GPU), then inspections: the UI never waits for the GPU.

pub mod data;
pub mod dropped;
pub mod files;
pub mod history;
pub mod lab;
pub mod launch;
pub mod pictures;
pub mod recovery;
pub mod run;
pub mod views;
#[cfg(target_arch = "wasm32")]
pub mod webcam;

use std::sync::Arc;

use egui::{Color32, RichText};
use gpu_nn::{Gpu, wgpu};
use web_time::Instant;

pub use lab::Lab;
pub use launch::Launch;
use pictures::{Pictures, Textures};
use views::{ClassifyView, CurvesView, FeaturesView, GanView, RunsPanel, Tab, runs::Action};

/// Time per frame spent submitting training steps; the rest is left to drawing.
const STEP_BUDGET_S: f64 = if cfg!(target_arch = "wasm32") {
    0.010
} else {
    0.025
};
/// How often a CPU adapter redraws while a step is out. In headless Chromium on SwiftShader
/// one egui frame costs a large share of the two cores that also train. In the browser
/// readbacks wake the UI themselves (`Gpu::set_readback_waker`), so this is only a fallback
/// there; natively their callbacks run inside `Gpu::poll`, which these frames call.
const CPU_POLL: std::time::Duration = if cfg!(target_arch = "wasm32") {
    std::time::Duration::from_millis(4000)
} else {
    std::time::Duration::from_millis(100)
};

/// Largest dropped image file read (natively its size is checked before reading).
#[cfg(not(target_arch = "wasm32"))]
const MAX_DROPPED_IMAGE: u64 = 256 << 20;
/// Largest dropped checkpoint read (VGG-16's with Adam state is about 1.6 GB).
#[cfg(not(target_arch = "wasm32"))]
const MAX_DROPPED_CHECKPOINT: u64 = 4 << 30;
/// Largest dropped `.zip` of an image folder read.
#[cfg(not(target_arch = "wasm32"))]
const MAX_DROPPED_ARCHIVE: u64 = 4 << 30;

fn is_checkpoint(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".safetensors")
}

fn is_archive(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".zip")
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

/// Whether the page asked WebGPU for the `subgroups` feature on the app's device (the
/// script in web/index.html does, since wgpu does not forward that feature).
#[cfg(target_arch = "wasm32")]
fn page_enabled_subgroups() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
        .is_some_and(|e| e.has_attribute("data-nnlab-subgroups"))
}

/// The app: the lab and its views. Public fields are what tests look at.
pub struct NnlabApp {
    gpu: Option<Gpu>,
    /// Why there is no engine (no adapter with compute), shown instead of the controls.
    pub gpu_error: Option<String>,
    /// The runs (None without an engine).
    pub lab: Option<Lab>,
    /// The run the feature-map, classify and GAN views show.
    pub selected: Option<u64>,
    /// The open tab.
    pub tab: Tab,
    /// The runs panel (and its new-run form).
    pub runs_panel: RunsPanel,
    /// The curves view.
    pub curves: CurvesView,
    /// The feature-map view.
    pub features: FeaturesView,
    /// The GAN view.
    pub gan: GanView,
    /// The classify view.
    pub classify: ClassifyView,
    /// The confusion matrix and its images.
    pub confusion: views::ConfusionView,
    /// The model graph.
    pub graph: views::graph::GraphView,
    /// The study views (why residual and inception networks work).
    pub study: views::study::StudyViews,
    /// Engine pictures registered with egui's renderer.
    pub pictures: Pictures,
    textures: Textures,
    /// Checkpoint saves and loads, CSV export.
    pub files: files::Files,
    /// The last app-level error (a launch setting, a file), shown in the top bar.
    pub error: Option<String>,
    frame_ms: f32,
    work_ms: f32,
    /// The engine runs on a CPU driver (lavapipe, SwiftShader): frames compete with steps.
    cpu_adapter: bool,
    launch: Launch,
    screenshot_taken: bool,
    /// What to do with the runs when the device is lost (start a new app on a new device);
    /// without it they stay in `recovery`.
    restart: Option<recovery::Restart>,
    /// The runs of a lost device, when nothing restarted them.
    pub recovery: Option<recovery::Recovery>,
    /// Restarts on a new device before this app.
    restarts: u32,
    /// The device was lost and its runs handed on.
    lost: bool,
    #[cfg(target_arch = "wasm32")]
    published_at: f64,
}

impl NnlabApp {
    /// Builds the app on eframe's wgpu device (no device means a message, not a panic) and
    /// starts what `launch` asks for.
    pub fn new(cc: &eframe::CreationContext<'_>, launch: Launch) -> Self {
        let mut app = Self::bare(cc, launch);
        #[cfg(target_arch = "wasm32")]
        if app.launch.webcam {
            app.classify.start_webcam();
        }
        app.start_launch_runs();
        if app.launch.export_onnx
            && let (Some(lab), Some(id)) = (&app.lab, app.selected)
            && let Err(e) = app.files.save(lab, id, files::Format::Onnx)
        {
            app.error = Some(format!("{e:#}"));
        }
        app
    }

    /// The app on eframe's device, without runs.
    fn bare(cc: &eframe::CreationContext<'_>, launch: Launch) -> Self {
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
                        Ok(gpu)
                    };
                    #[cfg(not(target_arch = "wasm32"))]
                    let gpu: gpu_nn::Result<Gpu> = Ok(gpu);
                    match gpu {
                        Ok(g) => (Some(g), None),
                        Err(e) => (None, Some(e.to_string())),
                    }
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
        let mut app = Self {
            lab: gpu.as_ref().map(Lab::new),
            gpu,
            gpu_error,
            selected: None,
            tab: match (launch.tab, launch.study) {
                (_, Some(_)) => Tab::Study,
                (Some(t), None) => t,
                (None, None) => Tab::Curves,
            },
            runs_panel: RunsPanel::default(),
            curves: CurvesView::default(),
            features: FeaturesView::default(),
            gan: GanView::default(),
            classify: ClassifyView::default(),
            confusion: views::ConfusionView::default(),
            graph: views::graph::GraphView::default(),
            study: views::study::StudyViews::new(cpu_adapter),
            pictures: Pictures::new(cc.wgpu_render_state.clone()),
            textures: Textures::default(),
            files: files::Files::default(),
            error: None,
            frame_ms: 0.0,
            work_ms: 0.0,
            cpu_adapter,
            launch,
            screenshot_taken: false,
            restart: None,
            recovery: None,
            restarts: 0,
            lost: false,
            #[cfg(target_arch = "wasm32")]
            published_at: f64::NEG_INFINITY,
        };
        if let Some(t) = app.launch.study {
            app.study.tab = t;
        }
        app.confusion.opened = app.launch.explain;
        #[cfg(target_arch = "wasm32")]
        app.files.listen_for_folder_drops(&cc.egui_ctx);
        app
    }

    fn start_launch_runs(&mut self) {
        let Some(lab) = &mut self.lab else { return };
        let mut errors = Vec::new();
        for s in self.launch.run_settings() {
            match lab.add(s) {
                Ok(id) => {
                    self.selected.get_or_insert(id);
                    if let Some(r) = lab.get_mut(id) {
                        r.running = self.launch.autostart;
                    }
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if let Some(s) = self.launch.run_settings().first() {
            self.runs_panel.form = s.clone();
        }
        self.runs_panel.autostart = self.launch.autostart;
        self.runs_panel.folder_side = self.launch.image_size;
        if !errors.is_empty() {
            self.error = Some(errors.join("; "));
        }
    }

    /// The engine, if the adapter can run it.
    pub fn gpu(&self) -> Option<&Gpu> {
        self.gpu.as_ref()
    }

    /// The lab, if there is an engine.
    pub fn lab(&self) -> Option<&Lab> {
        self.lab.as_ref()
    }

    /// Removes run `id`: its GPU memory goes back to the driver, its pictures are
    /// unregistered from egui.
    pub fn remove_run(&mut self, id: u64) {
        if let Some(lab) = &mut self.lab
            && let Err(e) = lab.remove(id)
        {
            self.error = Some(format!("{e:#}"));
        }
        self.forget_run(id);
    }

    /// Starts run `id` over from fresh weights; its pictures are made anew.
    pub fn reset_run(&mut self, id: u64) {
        if let Some(lab) = &mut self.lab
            && let Err(e) = lab.reset(id)
        {
            self.error = Some(format!("{e:#}"));
        }
        self.forget_run(id);
    }

    fn forget_run(&mut self, id: u64) {
        self.pictures.forget_prefix(&format!("run{id}/"));
        self.features.forget(id);
        let exists = self.lab.as_ref().is_some_and(|l| l.get(id).is_some());
        if self.selected == Some(id) && !exists {
            self.selected = self.lab.as_ref().and_then(|l| l.runs.first()).map(|r| r.id);
        }
    }

    /// Loads checkpoint bytes as a new run and selects it.
    pub fn load_checkpoint(&mut self, name: &str, bytes: &[u8]) {
        let Some(lab) = &mut self.lab else { return };
        match lab.add_checkpoint(name, bytes) {
            Ok(id) => {
                self.selected = Some(id);
                self.files.message = Some(format!("loaded {name} as run {id}"));
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }

    /// Makes an image folder the next run's data: the new-run form shows what it holds.
    pub fn open_folder(&mut self, files: crate::folder::FolderFiles) {
        self.files.message = Some(format!(
            "{}: {} images found; see New run",
            files.name,
            files.len()
        ));
        self.runs_panel.set_folder(files);
    }

    /// Routes a dropped or picked file: checkpoints become runs, a `.zip` is an image
    /// folder for the next run, images get classified.
    pub fn open_file(&mut self, name: &str, bytes: &[u8]) {
        if is_checkpoint(name) && crate::checkpoint::has_nnlab_metadata(bytes) == Some(false) {
            // A state dict without nnlab's metadata: torchvision weights for the next run.
            self.runs_panel.set_weights(crate::weights::Pretrained {
                name: name.rsplit(['/', '\\']).next().unwrap_or(name).to_string(),
                bytes: bytes.into(),
            });
            self.files.message = Some(format!("{name}: weights for the next run; see New run"));
        } else if is_checkpoint(name) {
            self.load_checkpoint(name, bytes);
        } else if is_archive(name) {
            match crate::folder::FolderFiles::from_zip(bytes, name) {
                Ok(f) => self.open_folder(f),
                Err(e) => self.error = Some(format!("{e:#}")),
            }
        } else if let Some(lab) = &self.lab {
            self.classify.set_image(name, bytes, lab, self.selected);
            self.tab = Tab::Classify;
        }
    }

    fn take_dropped_files(&mut self, ctx: &egui::Context) {
        let files = ctx.input(|i| i.raw.dropped_files.clone());
        let name_of = |f: &dyn egui::DroppedFile| {
            f.path().file_name().map_or_else(
                || "dropped file".into(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        // Every checkpoint becomes a run, every archive an image folder; of the images only
        // the last one is shown, so only that one is read and decoded.
        let image = |n: &str| !is_checkpoint(n) && !is_archive(n);
        let last_image = files.iter().rposition(|f| image(&name_of(f.as_ref())));
        for (i, f) in files.iter().enumerate() {
            let name = name_of(f.as_ref());
            if image(&name) && Some(i) != last_image {
                continue;
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                if f.path().is_dir() {
                    match crate::folder::FolderFiles::from_dir(f.path()) {
                        Ok(files) => self.open_folder(files),
                        Err(e) => self.error = Some(format!("{e:#}")),
                    }
                    continue;
                }
                let max = if is_checkpoint(&name) {
                    MAX_DROPPED_CHECKPOINT
                } else if is_archive(&name) {
                    MAX_DROPPED_ARCHIVE
                } else {
                    MAX_DROPPED_IMAGE
                };
                match std::fs::metadata(f.path()) {
                    Ok(m) if m.len() > max => {
                        self.error = Some(format!(
                            "{name}: {} MiB is more than nnlab opens ({} MiB)",
                            m.len() >> 20,
                            max >> 20
                        ));
                        continue;
                    }
                    _ => {}
                }
                match f.bytes() {
                    Ok(b) => self.open_file(&name, &b),
                    Err(e) => self
                        .classify
                        .set_error(format!("{name}: cannot read the file: {e}")),
                }
            }
            #[cfg(target_arch = "wasm32")]
            {
                // Browsers read files asynchronously: the bytes arrive in a later frame.
                let slot = std::rc::Rc::clone(&self.files.incoming);
                let ctx = ctx.clone();
                let f = std::sync::Arc::clone(f);
                wasm_bindgen_futures::spawn_local(async move {
                    let r = f.bytes_async().await;
                    slot.borrow_mut().push((name, r));
                    ctx.request_repaint();
                });
            }
        }
        for (name, r) in self.files.take_incoming() {
            match r {
                Ok(b) => self.open_file(&name, &b),
                Err(e) => self.error = Some(format!("{name}: {e}")),
            }
        }
        for r in self.files.take_folders() {
            match r {
                Ok(f) => self.open_folder(f),
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// Collects what came back, submits steps, then inspections and samples. Called once
    /// per frame; never waits for the GPU.
    pub fn advance(&mut self, now: f64) {
        let t0 = Instant::now();
        self.files.poll(self.lab.as_ref());
        let Some(lab) = &mut self.lab else { return };
        if let Some(n) = self.launch.lose_device_after
            && lab.runs.iter().any(|r| r.steps_back() >= n)
        {
            // Fault injection (NNLAB_LOSE_DEVICE_AFTER): what a driver reset does.
            self.launch.lose_device_after = None;
            lab.gpu().device().destroy();
        }
        lab.poll(now);
        if lab.gpu().is_lost() {
            self.device_lost();
            return;
        }
        let mut errors = Vec::new();
        if let Err(e) = self.features.poll() {
            errors.push(e);
        }
        if let Err(e) = self.classify.poll(lab) {
            errors.push(e);
        }
        if let Err(e) = self.confusion.poll(lab) {
            errors.push(e);
        }
        lab.submit(now, STEP_BUDGET_S);
        // Behind the steps: on a CPU adapter they come back with the burst.
        if let Err(e) = self.features.maybe_inspect(lab, self.selected, now) {
            errors.push(e);
        }
        if let Err(e) = self.classify.maybe_classify(lab, self.selected) {
            errors.push(e);
        }
        if self.tab == Tab::Gan
            && let Err(e) = self.gan.maybe_sample(lab, self.selected, now)
        {
            errors.push(e);
        }
        if let Err(e) = self.study.advance(lab, self.selected, now) {
            errors.push(e);
        }
        if let Some(e) = errors.first() {
            self.error = Some(format!("{e:#}"));
        }
        self.work_ms = t0.elapsed().as_secs_f32() * 1000.0;
    }

    fn draw(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        egui::Panel::top("top").show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.heading("nnlab");
                ui.selectable_value(&mut self.tab, Tab::Curves, "Curves");
                ui.selectable_value(&mut self.tab, Tab::Features, "Feature maps");
                ui.selectable_value(&mut self.tab, Tab::Gan, "GAN");
                ui.selectable_value(&mut self.tab, Tab::Classify, "Classify");
                ui.selectable_value(&mut self.tab, Tab::Mistakes, "Mistakes");
                ui.selectable_value(&mut self.tab, Tab::Model, "Model");
                ui.selectable_value(&mut self.tab, Tab::Study, "Why it works");
                ui.separator();
                ui.label(format!(
                    "frame {:.1} ms (steps {:.1} ms)",
                    self.frame_ms, self.work_ms
                ));
                if let Some(g) = self.gpu() {
                    let a = g.adapter_info();
                    ui.label(RichText::new(format!("{} ({:?})", a.name, a.backend)).weak());
                    let mib = g.pool_stats().allocated_bytes as f64 / (1 << 20) as f64;
                    ui.label(RichText::new(format!("{mib:.0} MiB")).weak())
                        .on_hover_text("GPU memory the engine holds (buffer pool)");
                }
                if let Some(m) = &self.files.message {
                    ui.label(RichText::new(m).weak());
                }
            });
            if let Some(e) = &self.error {
                ui.colored_label(Color32::LIGHT_RED, e);
            }
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
        let now = ctx.input(|i| i.time);
        let mut actions = Vec::new();
        egui::Panel::left("runs")
            .resizable(true)
            .default_size(320.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    if let Some(lab) = &mut self.lab {
                        actions = self.runs_panel.ui(ui, lab, &mut self.selected, now);
                    }
                });
            });
        for a in actions {
            match a {
                Action::Save(id, format) => {
                    if let Some(lab) = &self.lab
                        && let Err(e) = self.files.save(lab, id, format)
                    {
                        self.error = Some(format!("{e:#}"));
                    }
                }
                Action::Load => self.files.pick(&ctx),
                Action::PickFolder => self.files.pick_folder(&ctx),
                Action::Reset(id) => self.reset_run(id),
                Action::Remove(id) => self.remove_run(id),
            }
        }
        let Some(lab) = &mut self.lab else { return };
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Curves => {
                egui::Panel::right("curve_features")
                    .resizable(true)
                    .default_size(360.0)
                    .show(ui, |ui| {
                        self.features.ui(ui, lab, self.selected, &mut self.pictures)
                    });
                if self.curves.ui(ui, lab) {
                    self.files.export_csv(lab);
                }
            }
            Tab::Features => self.features.ui(ui, lab, self.selected, &mut self.pictures),
            Tab::Gan => self.gan.ui(ui, lab, self.selected, &mut self.pictures),
            Tab::Classify => {
                if let Err(e) = self.classify.ui(ui, lab, self.selected, &mut self.textures) {
                    self.error = Some(format!("{e:#}"));
                }
            }
            Tab::Model => {
                let r = self
                    .graph
                    .ui(ui, lab, self.selected, &self.features, &mut self.pictures);
                if let Err(e) = r {
                    self.error = Some(format!("{e:#}"));
                }
            }
            Tab::Mistakes => {
                let r = egui::ScrollArea::vertical()
                    .show(ui, |ui| {
                        self.confusion
                            .ui(ui, lab, self.selected, &mut self.textures)
                    })
                    .inner;
                if let Err(e) = r {
                    self.error = Some(format!("{e:#}"));
                }
            }
            Tab::Study => {
                egui::ScrollArea::vertical()
                    .show(ui, |ui| {
                        self.study
                            .ui(ui, lab, &mut self.selected, &mut self.pictures)
                    })
                    .inner
            }
        });
    }

    fn maybe_screenshot(&mut self, ctx: &egui::Context) {
        let Some((path, steps)) = self.launch.screenshot.clone() else {
            return;
        };
        let Some(lab) = &mut self.lab else { return };
        let ready = !lab.runs.is_empty()
            && lab
                .runs
                .iter()
                .all(|r| r.steps_back() >= steps && (r.is_gan() || !r.history.val_loss.is_empty()))
            && (self.tab != Tab::Curves || self.features.latest.is_some());
        if ready && !self.screenshot_taken {
            self.screenshot_taken = true;
            lab.set_all_running(false);
            let c = ctx.clone();
            ctx.request_screenshot(move |img| {
                let [w, h] = img.size;
                let raw: Vec<u8> = img.pixels.iter().flat_map(|p| p.to_array()).collect();
                match image::RgbaImage::from_raw(w as u32, h as u32, raw) {
                    Some(buf) => match buf.save(&path) {
                        Ok(()) => eprintln!("nnlab: screenshot saved to {}", path.display()),
                        Err(e) => eprintln!("nnlab: cannot save {}: {e}", path.display()),
                    },
                    None => eprintln!("nnlab: the screenshot has a wrong size"),
                }
                c.send_viewport_cmd(egui::ViewportCommand::Close);
            });
        }
    }

    /// Writes every run's state into the page (`#nnlab-state`) for tests and demos.
    #[cfg(target_arch = "wasm32")]
    fn publish(&mut self, now: f64) {
        if now - self.published_at < 0.25 {
            return;
        }
        self.published_at = now;
        let state = match (&self.gpu_error, &self.lab) {
            (Some(e), _) => serde_json::json!({ "status": "no-gpu", "error": e }),
            (None, Some(lab)) => serde_json::json!({
                "status": if lab.runs.iter().any(|r| r.running) { "training" } else { "idle" },
                "frame_ms": self.frame_ms,
                "error": self.error,
                "restarts": self.restarts,
                "recovery_points": lab.runs.iter().map(|r| lab.recovery.step_of(r.id)).collect::<Vec<_>>(),
                "runs": lab.runs.iter().map(|r| serde_json::json!({
                    "id": r.id,
                    "name": r.name,
                    "model": r.settings.model,
                    "data": r.settings.data.label(),
                    "classes": r.data.class_names,
                    "weights": r.settings.weights.as_ref().map(|w| w.name.clone()),
                    "trainable": r.classifier().map(|c| gpu_nn::nn::parameters(c.net.as_ref()).iter().map(|t| t.numel()).sum::<usize>()),
                    "batch": r.settings.batch,
                    "running": r.running,
                    "step": r.steps_back(),
                    "loss": r.last_loss(),
                    "first_loss": r.history.train_loss.points().first().map(|p| p.value),
                    "second": r.history.train_acc.last(),
                    "val_acc": r.history.val_acc.last(),
                    "img_per_s": r.img_per_s(),
                    "error": r.error,
                    "samples_step": r.samples().map(|(s, _)| s),
                    "samples_shown": self.pictures.has(&format!("run{}/gan:samples", r.id)),
                    "validated": r.last_val.as_ref().map(|v| serde_json::json!({
                        "step": v.step, "images": v.confusion.total(),
                        "accuracy": v.confusion.accuracy(),
                    })),
                })).collect::<Vec<_>>(),
                "saliency": self.confusion.saliency.latest().map(|(class, map, size)| serde_json::json!({
                    "class": class, "size": [size.0, size.1],
                    "max": map.iter().copied().fold(0.0f32, f32::max),
                })),
                "graph": self.graph.outline.map(|(run, o)| serde_json::json!({
                    "run": run, "layers": o.layers, "residual_adds": o.residual_adds,
                    "concats": o.concats,
                })),
                "folder": self.runs_panel.folder.as_ref().map(|f| f.state()),
                "form": serde_json::json!({
                    "model": self.runs_panel.form.model,
                    "data": self.runs_panel.form.data.label(),
                    "weights": self.runs_panel.form.weights.as_ref().map(|w| w.name.clone()),
                    "finetune": self.runs_panel.form.finetune,
                    "error": self.runs_panel.form_error,
                }),
                "buttons": self.runs_panel.buttons.iter().map(|(k, (p, enabled))| (k.to_string(), serde_json::json!({
                    "x": p.x, "y": p.y, "enabled": enabled,
                }))).collect::<serde_json::Map<_, _>>(),
                "drop": self.classify.top3.as_ref().map(|(_, t)| t.iter().map(|(n, p)| format!("{n}:{p:.3}")).collect::<Vec<_>>()),
                "drop_error": self.classify.error,
                "webcam": self.classify.webcam_state(),
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

impl eframe::App for NnlabApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let (now, dt) = ctx.input(|i| (i.time, i.unstable_dt));
        self.frame_ms = 0.9 * self.frame_ms + 0.1 * dt * 1000.0;
        self.take_dropped_files(&ctx);
        self.advance(now);
        if self.lost && self.restart.is_some() {
            // The runs went to a new app: draw nothing, since egui-wgpu's painter panics
            // when it uploads vertices to a lost device.
            return;
        }
        self.draw(ui);
        self.maybe_screenshot(&ctx);
        #[cfg(target_arch = "wasm32")]
        self.publish(now);
        // Keep frames coming while anything is in flight: readbacks are polled per frame.
        let busy =
            self.lab.as_ref().is_some_and(Lab::busy) || self.files.saving() || self.study.busy();
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
