//! The runs panel: every run with its status and controls (start, pause, step, duplicate,
//! save, remove, live learning rate), and the form that adds a run.

use egui::{Color32, RichText};

use crate::app::data::DataChoice;
use crate::app::files::Format;
use crate::app::lab::{Lab, color};
use crate::app::run::{Run, RunSettings};
use crate::data::Bundled;
use crate::registry::{self, MODELS};

/// What the panel asks the app to do (file dialogs and downloads live there).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Save run `id` as a checkpoint or as ONNX.
    Save(u64, Format),
    /// Load a checkpoint as a new run.
    Load,
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
                if let Some(id) = self.form(ui, lab) {
                    *selected = Some(id);
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

    fn form(&mut self, ui: &mut egui::Ui, lab: &mut Lab) -> Option<u64> {
        if let Some((from, _)) = &self.duplicate_of {
            ui.label(
                RichText::new(format!(
                    "Duplicating run {from}: change a setting, then Add run."
                ))
                .italics(),
            );
        }
        let f = &mut self.form;
        let info = registry::find(&f.model).ok();
        egui::ComboBox::from_label("Model")
            .selected_text(&f.model)
            .show_ui(ui, |ui| {
                for m in MODELS {
                    // The bundled sets are 1x28x28: 224x224 layouts need an image folder.
                    let fits = m.accepts([1, 28, 28]);
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
        egui::ComboBox::from_label("Data")
            .selected_text(f.data.label())
            .show_ui(ui, |ui| {
                for b in Bundled::ALL {
                    ui.selectable_value(&mut f.data, DataChoice::bundled(b), b.name());
                }
            });
        #[cfg(not(target_arch = "wasm32"))]
        {
            ui.horizontal(|ui| {
                let l = ui.label("or an IDX directory:");
                ui.text_edit_singleline(&mut self.dir_text)
                    .labelled_by(l.id);
                if ui.button("Use").clicked() && !self.dir_text.trim().is_empty() {
                    self.form.data = DataChoice::Dir(self.dir_text.trim().into());
                }
            });
        }
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
        let added = if ui.button("Add run").clicked() {
            self.add(lab)
        } else {
            None
        };
        if let Some(e) = &self.form_error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        added
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
