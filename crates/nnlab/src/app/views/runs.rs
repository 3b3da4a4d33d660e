//! The runs panel: every run with its status and controls (start, pause, step, duplicate,
//! save, remove, live learning rate), and the form that adds a run.

use egui::{Color32, RichText};

use crate::app::data::DataChoice;
use crate::app::files::Format;
use crate::app::lab::{Lab, color};
use crate::app::run::{Run, RunSettings};
use crate::app::views::folder::FolderImport;
use crate::data::Bundled;
use crate::registry::{self, MODELS};

/// What the panel asks the app to do (file dialogs and downloads live there).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Save run `id` as a checkpoint or as ONNX.
    Save(u64, Format),
    /// Load a checkpoint as a new run.
    Load,
    /// Choose an image folder for the next run.
    PickFolder,
    /// Start run `id` over from fresh weights.
    Reset(u64),
    /// Remove run `id`.
    Remove(u64),
}

/// The panel's own state: the new-run form.
#[derive(Default)]
pub struct RunsPanel {
    /// Settings of the next run added.
    pub form: RunSettings,
    /// The run the form was filled from (Duplicate), to name the copy by what changed.
    duplicate_of: Option<(u64, RunSettings)>,
    /// Why the last Add failed.
    pub form_error: Option<String>,
    form_open: bool,
    #[cfg(not(target_arch = "wasm32"))]
    dir_text: String,
    /// The image folder chosen for the form, decoding or decoded.
    pub folder: Option<FolderImport>,
    /// Runs added from the form start at once (the `autostart` launch setting).
    pub autostart: bool,
    /// Where the form's "Add run" and "Image folder…" were last drawn, and whether they
    /// could be clicked (the page state says so: a browser test clicks them there).
    pub buttons: std::collections::BTreeMap<&'static str, (egui::Pos2, bool)>,
    /// The side its images are converted to (None: the model's default).
    pub folder_side: Option<usize>,
}

/// One line of numbers about a run.
pub fn status(r: &Run) -> String {
    let loss = r.last_loss().map_or("-".into(), |l| format!("{l:.3}"));
    let rate = r.img_per_s().map_or("-".into(), |v| format!("{v:.0}"));
    let val = r
        .history
        .val_acc
        .last()
        .map_or(String::new(), |a| format!("  val {:.1}%", 100.0 * a));
    let what = if r.is_gan() { "D" } else { "loss" };
    format!(
        "step {}  epoch {}  {what} {loss}{val}  {rate} img/s",
        r.steps_back(),
        r.epoch() + 1
    )
}

/// A square of the run's colour, as in the legend.
pub fn swatch(ui: &mut egui::Ui, id: u64) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    ui.painter().rect_filled(rect, 2.0, color(id));
}

impl RunsPanel {
    /// Fills the form from run `r`'s settings: change one and press Add.
    pub fn duplicate(&mut self, r: &Run) {
        self.form = r.settings.clone();
        self.duplicate_of = Some((r.id, r.settings.clone()));
        self.form_open = true;
        self.form_error = None;
    }

    /// Makes an image folder the next run's data (and opens the form to show it).
    pub fn set_folder(&mut self, files: crate::folder::FolderFiles) {
        let import = FolderImport::new(files);
        self.form.data = import.choice(self.folder_shape());
        self.folder = Some(import);
        self.form_open = true;
        self.form_error = None;
    }

    /// Makes torchvision weights the next run's start, fine-tuning by default; the form
    /// takes the model the weights are for.
    pub fn set_weights(&mut self, w: crate::weights::Pretrained) {
        let model =
            crate::weights::tensor_shapes(&w.bytes).and_then(|k| registry::model_for_weights(&k));
        if let Some(m) = model
            && m != self.form.model
        {
            let data = self.form.data.clone();
            self.form = RunSettings::for_model(m);
            self.form.data = data;
        }
        self.form.weights = Some(w);
        self.form.finetune = true;
        self.form_open = true;
        self.form_error = None;
    }

    /// True when the form's data is the chosen image folder.
    fn folder_chosen(&self) -> bool {
        match (&self.form.data, &self.folder) {
            (DataChoice::Folder { files, .. }, Some(f)) => {
                std::sync::Arc::ptr_eq(&files.0, &f.files)
            }
            _ => false,
        }
    }

    /// The input the form's model takes from an image folder.
    fn folder_shape(&self) -> [usize; 3] {
        registry::find(&self.form.model)
            .map_or([3, 32, 32], |m| m.input.folder_shape(self.folder_side))
    }

    /// Decodes the chosen folder a little further, at the size the form's model takes.
    pub fn advance_folder(&mut self, lab: &mut Lab) {
        if !self.folder_chosen() {
            return;
        }
        let shape = self.folder_shape();
        if let Some(f) = &mut self.folder {
            f.advance(shape, lab);
            self.form.data = f.choice(shape);
        }
    }

    /// Adds a run of the form's settings; named after the run it duplicates by what changed.
    pub fn add(&mut self, lab: &mut Lab) -> Option<u64> {
        match lab.add(self.form.clone()) {
            Ok(id) => {
                if let Some((from, old)) = self.duplicate_of.take() {
                    let diff = self.form.difference(&old);
                    if let Some(r) = lab.get_mut(id) {
                        r.name = if diff.is_empty() {
                            format!("{id}: copy of {from}")
                        } else {
                            format!("{id}: {from} with {}", diff.join(", "))
                        };
                    }
                }
                if let Some(r) = lab.get_mut(id) {
                    r.running = self.autostart;
                }
                self.form_error = None;
                Some(id)
            }
            Err(e) => {
                self.form_error = Some(format!("{e:#}"));
                None
            }
        }
    }

    /// Draws the panel; returns what the app must do.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &mut Lab,
        selected: &mut Option<u64>,
        now: f64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        self.advance_folder(lab);
        ui.horizontal(|ui| {
            ui.heading("Runs");
            if ui.button("Start all").clicked() {
                lab.set_all_running(true);
            }
            if ui.button("Pause all").clicked() {
                lab.set_all_running(false);
            }
        });
        let mut duplicate = None;
        for r in &mut lab.runs {
            ui.separator();
            let is_sel = *selected == Some(r.id);
            ui.horizontal(|ui| {
                swatch(ui, r.id);
                if ui
                    .selectable_label(is_sel, RichText::new(&r.name).strong())
                    .on_hover_text("Select: the feature-map, classify and GAN views show it")
                    .clicked()
                {
                    *selected = Some(r.id);
                }
            });
            ui.label(RichText::new(status(r)).small());
            ui.horizontal_wrapped(|ui| {
                if r.running {
                    if ui.button("Pause").clicked() {
                        r.running = false;
                    }
                } else if ui
                    .add_enabled(r.error.is_none(), egui::Button::new("Start"))
                    .clicked()
                {
                    r.running = true;
                }
                if ui
                    .add_enabled(
                        !r.running && r.error.is_none() && r.can_step(),
                        egui::Button::new("Step"),
                    )
                    .on_hover_text("One training step")
                    .clicked()
                    && let Err(e) = r.submit(now, 1)
                {
                    r.error = Some(format!("{e:#}"));
                }
                if ui
                    .button("Duplicate")
                    .on_hover_text("A new run with these settings: change one, then Add run")
                    .clicked()
                {
                    duplicate = Some(r.id);
                }
                if ui
                    .button("Save")
                    .on_hover_text("Save a checkpoint")
                    .clicked()
                {
                    actions.push(Action::Save(r.id, Format::Checkpoint));
                }
                if ui
                    .button("ONNX")
                    .on_hover_text(
                        "Export the model as ONNX (eval mode), for Netron or onnxruntime",
                    )
                    .clicked()
                {
                    actions.push(Action::Save(r.id, Format::Onnx));
                }
                if ui
                    .button("Reset")
                    .on_hover_text("Start over from fresh weights (same settings and seed)")
                    .clicked()
                {
                    actions.push(Action::Reset(r.id));
                }
                if ui
                    .button("Remove")
                    .on_hover_text("Remove the run and free its GPU memory")
                    .clicked()
                {
                    actions.push(Action::Remove(r.id));
                }
            });
            if let Some(e) = &r.error {
                ui.colored_label(Color32::LIGHT_RED, e);
            }
            if is_sel && !r.is_gan() {
                live_settings(ui, &mut r.settings);
            }
        }
        if let Some(id) = duplicate
            && let Some(r) = lab.get(id)
        {
            self.duplicate(r);
        }
        ui.separator();
        let open = self.form_open || lab.runs.is_empty();
        egui::CollapsingHeader::new(RichText::new("New run").heading())
            .open(open.then_some(true))
            .show(ui, |ui| {
                let (mut pick, mut pick_weights) = (false, false);
                if let Some(id) = self.form(ui, lab, &mut pick, &mut pick_weights) {
                    *selected = Some(id);
                }
                if pick {
                    actions.push(Action::PickFolder);
                }
                if pick_weights {
                    actions.push(Action::Load);
                }
            });
        self.form_open = false;
        if ui
            .button("Load checkpoint…")
            .on_hover_text("A .safetensors checkpoint of nnlab train, nnlab gan or the app (or drop one on the window)")
            .clicked()
        {
            actions.push(Action::Load);
        }
        actions
    }

    fn form(
        &mut self,
        ui: &mut egui::Ui,
        lab: &mut Lab,
        pick: &mut bool,
        pick_weights: &mut bool,
    ) -> Option<u64> {
        if let Some((from, _)) = &self.duplicate_of {
            ui.label(
                RichText::new(format!(
                    "Duplicating run {from}: change a setting, then Add run."
                ))
                .italics(),
            );
        }
        let folder = self.folder_chosen();
        let f = &mut self.form;
        let side = &mut self.folder_side;
        let info = registry::find(&f.model).ok();
        egui::ComboBox::from_label("Model")
            .selected_text(&f.model)
            .show_ui(ui, |ui| {
                for m in MODELS {
                    // The bundled sets are 1x28x28: 224x224 layouts need an image folder,
                    // which is converted to whatever the model takes.
                    let fits = folder || m.accepts([1, 28, 28]);
                    let r = ui
                        .add_enabled(fits, egui::Button::selectable(f.model == m.name, m.name))
                        .on_hover_text(m.description)
                        .on_disabled_hover_text(format!(
                            "{} (takes {} images, at least {} pixels a side: not the \
                             bundled 28x28 sets)",
                            m.description,
                            m.input.describe(),
                            m.min_side()
                        ));
                    if r.clicked() && f.model != m.name {
                        let data = f.data.clone();
                        *f = RunSettings::for_model(m.name);
                        f.data = data;
                        *side = None;
                    }
                }
            });
        if let Some(info) = info {
            ui.label(RichText::new(info.description).weak().small());
            if info.has_variants() {
                let v = &mut f.variant;
                ui.horizontal(|ui| {
                    ui.checkbox(&mut v.batch_norm, "batch norm")
                        .on_hover_text("Without it, a deep plain net's gradients vanish");
                    ui.checkbox(&mut v.he_init, "He init").on_hover_text(
                        "He et al. 2015 (torchvision's); off: PyTorch's layer default, \
                         variance 1/(3 fan_in)",
                    );
                });
                ui.horizontal(|ui| {
                    let l = ui.label("Width");
                    ui.add(
                        egui::DragValue::new(&mut v.width)
                            .range(0.125..=2.0)
                            .speed(0.05),
                    )
                    .labelled_by(l.id)
                    .on_hover_text("Channel multiplier: 1 = 16/32/64 channels");
                });
            }
        }
        if !f.is_gan() {
            weights_row(ui, f, pick_weights);
        }
        let folder_choice = self.folder.as_ref().map(|i| i.choice(self.folder_shape()));
        let f = &mut self.form;
        let row = ui.horizontal(|ui| {
            egui::ComboBox::from_label("Data")
                .selected_text(f.data.label())
                .show_ui(ui, |ui| {
                    for b in Bundled::ALL {
                        ui.selectable_value(&mut f.data, DataChoice::bundled(b), b.name());
                    }
                    if let Some(c) = folder_choice {
                        let label = c.label();
                        ui.selectable_value(&mut f.data, c, label);
                    }
                });
            let b = ui.button("Image folder…").on_hover_text(
                "A folder with one sub-folder of images per class (optionally inside train/ \
                 and val/); or drop a folder or a .zip of one on the window",
            );
            *pick = b.clicked();
            b.rect.center()
        });
        self.buttons.insert("Image folder…", (row.inner, true));
        #[cfg(not(target_arch = "wasm32"))]
        {
            ui.horizontal(|ui| {
                let l = ui.label("or a directory:");
                ui.text_edit_singleline(&mut self.dir_text)
                    .labelled_by(l.id)
                    .on_hover_text("IDX files, CIFAR-10 batches or an image folder");
                if ui.button("Use").clicked() && !self.dir_text.trim().is_empty() {
                    let dir = std::path::PathBuf::from(self.dir_text.trim());
                    if crate::data::is_idx_or_cifar_dir(&dir) {
                        self.form.data = DataChoice::Dir(dir);
                    } else {
                        match crate::folder::FolderFiles::from_dir(&dir) {
                            Ok(files) => self.set_folder(files),
                            Err(e) => self.form_error = Some(format!("{e:#}")),
                        }
                    }
                }
            });
        }
        if self.folder_chosen() {
            let model_input = registry::find(&self.form.model).map(|m| m.input);
            if let Ok(input) = model_input
                && input != registry::Input::Mnist
            {
                ui.horizontal(|ui| {
                    let l = ui.label("Image size");
                    let mut s = self.folder_shape()[1];
                    if ui
                        .add(egui::DragValue::new(&mut s).range(28..=512))
                        .labelled_by(l.id)
                        .on_hover_text("Each image is resized and centre-cropped to this square")
                        .changed()
                    {
                        self.folder_side = Some(s);
                    }
                });
            }
            if let Some(f) = &mut self.folder {
                f.ui(ui);
            }
        }
        let busy = self.folder_chosen()
            && self
                .folder
                .as_ref()
                .is_some_and(|f| f.decoding() || f.error.is_some());
        let f = &mut self.form;
        ui.horizontal(|ui| {
            let l = ui.label("Batch size");
            ui.add(egui::DragValue::new(&mut f.batch).range(1..=1024))
                .labelled_by(l.id);
        });
        if f.is_gan() {
            ui.horizontal(|ui| {
                let l = ui.label("Width");
                ui.add(
                    egui::DragValue::new(&mut f.width)
                        .range(0.1..=1.0)
                        .speed(0.05),
                )
                .labelled_by(l.id)
                .on_hover_text("1 = the DCGAN of the paper; smaller trains faster");
            });
        } else {
            ui.horizontal(|ui| {
                ui.label("Optimizer");
                ui.selectable_value(&mut f.opt, "sgd".to_string(), "SGD");
                ui.selectable_value(&mut f.opt, "adam".to_string(), "Adam");
            });
            live_settings(ui, f);
            ui.horizontal(|ui| {
                let l = ui.label("Validate every");
                ui.add(egui::DragValue::new(&mut f.val_every).range(0..=100_000))
                    .labelled_by(l.id);
                ui.label("steps");
            });
        }
        ui.horizontal(|ui| {
            let l = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut f.seed)).labelled_by(l.id);
        });
        let add = ui.add_enabled(!busy, egui::Button::new("Add run"));
        self.buttons.insert("Add run", (add.rect.center(), !busy));
        let added = if add.clicked() { self.add(lab) } else { None };
        if let Some(e) = &self.form_error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        added
    }
}

/// The weights the next run starts from: fresh, or torchvision's (a `.safetensors` state
/// dict, picked or dropped), fine-tuned or trained throughout.
fn weights_row(ui: &mut egui::Ui, f: &mut RunSettings, pick: &mut bool) {
    ui.horizontal(|ui| {
        match &f.weights {
            Some(w) => {
                ui.label(format!("Weights: {}", w.name));
                if ui
                    .small_button("Clear")
                    .on_hover_text("Start from fresh weights")
                    .clicked()
                {
                    f.weights = None;
                }
            }
            None => {
                ui.label(RichText::new("Weights: fresh").weak());
            }
        }
        if ui
            .button("Pretrained weights…")
            .on_hover_text(
                "torchvision weights as .safetensors (a state dict; see README), or drop the \
                 file on the window",
            )
            .clicked()
        {
            *pick = true;
        }
    });
    if f.weights.is_some() {
        ui.checkbox(&mut f.finetune, "Fine-tune: only a new head trains")
            .on_hover_text(
                "The classifier layer is made anew for the data's classes; every other layer \
                 keeps its weights, frozen. Off: every layer starts from the weights and trains",
            );
    }
}

/// The learning rate (and SGD's momentum): in a run, they apply at its next step.
fn live_settings(ui: &mut egui::Ui, s: &mut RunSettings) {
    ui.horizontal(|ui| {
        let l = ui.label("Learning rate");
        ui.add(
            egui::DragValue::new(&mut s.lr)
                .speed(0.0005)
                .range(0.0..=10.0)
                .max_decimals(5),
        )
        .labelled_by(l.id)
        .on_hover_text("In a running run it takes effect at the next step");
    });
    if s.opt == "sgd" {
        ui.horizontal(|ui| {
            let l = ui.label("Momentum");
            ui.add(
                egui::DragValue::new(&mut s.momentum)
                    .speed(0.01)
                    .range(0.0..=0.99),
            )
            .labelled_by(l.id);
        });
    }
}
