//! The degradation race (He et al. 2015, Fig. 1 and Fig. 6): plain and residual nets of
//! two depths, the same seed, data order and schedule, their training and validation
//! error overlaid.

use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};

use super::info;
use crate::app::history::{Series, decimate};
use crate::app::lab::{Lab, color};
use crate::app::run::{Run, RunSettings};

const INFO: &str = "Four runs: a plain net and a ResNet of a shallow and a deep depth \
(6n+2 layers), built with the same seed, trained on the same batches in the same order with \
the same optimizer. Plotted: error = 1 - accuracy, on the training batches (solid, smoothed \
with a debiased EMA) and on the validation set (dashed), against epochs.\n\
Look for: the deeper plain net's TRAINING error stays above the shallower plain net's. That \
is degradation: not overfitting (the training error is worse too) and not vanishing \
gradients (batch norm keeps them in scale; see Gradient flow). The deeper ResNet trains at \
least as well as the shallower one. Reproduces He et al. 2015, 'Deep Residual Learning', \
Fig. 1 and Fig. 6 (CIFAR-10: plain-56 above plain-20; ResNet-56 below ResNet-20). On the \
bundled MNIST digits the gaps are small; Fashion-MNIST or CIFAR-10 show them better.";

/// The race's settings and runs.
pub struct DegradationView {
    /// Depth of the shallow pair (6n+2).
    pub shallow: usize,
    /// Depth of the deep pair.
    pub deep: usize,
    /// Channel multiplier (thinner nets for slow devices).
    pub width: f32,
    /// Images per step.
    pub batch: usize,
    /// The race's runs, once started.
    pub runs: Vec<u64>,
    /// Smoothing of the training error.
    smoothing: f32,
    error: Option<String>,
    /// Race runs paused by the race itself because they got ahead of the others.
    held: std::collections::BTreeSet<u64>,
}

/// Steps a race run may get ahead of the slowest before it waits: the runs must see the
/// same batches at the same time, whatever their speed.
const LEAD: u64 = 16;

impl DegradationView {
    /// Defaults: ResNet-20 against ResNet-56, full width on a GPU, a quarter on a CPU
    /// driver.
    pub fn new(cpu: bool) -> Self {
        Self {
            shallow: 20,
            deep: 56,
            width: if cpu { 0.25 } else { 1.0 },
            batch: 128,
            runs: Vec::new(),
            smoothing: 0.9,
            error: None,
            held: Default::default(),
        }
    }

    /// Keeps the race in step: a run that got [`LEAD`] steps ahead of the slowest waits for
    /// it (and goes on once it caught up). A run the user paused holds the whole race.
    pub fn advance(&mut self, lab: &mut Lab) {
        self.runs.retain(|id| lab.get(*id).is_some());
        let Some(min) = self
            .runs
            .iter()
            .filter_map(|id| lab.get(*id))
            .map(Run::steps)
            .min()
        else {
            return;
        };
        for id in &self.runs {
            let Some(r) = lab.get_mut(*id) else { continue };
            if r.error.is_some() {
                continue;
            }
            let ahead = r.steps() >= min + LEAD;
            if r.running && ahead {
                r.running = false;
                self.held.insert(*id);
            } else if !ahead && self.held.remove(id) {
                r.running = true;
            }
        }
    }

    /// The four runs' settings: plain and residual, shallow and deep. He et al.'s recipe:
    /// SGD, learning rate 0.1, momentum 0.9 (weight decay is left out here).
    pub fn settings(&self, data: &crate::app::data::DataChoice) -> Vec<RunSettings> {
        let mut out = Vec::new();
        for depth in [self.shallow, self.deep] {
            for plain in [true, false] {
                let model = if plain {
                    format!("resnet{depth}-plain")
                } else {
                    format!("resnet{depth}")
                };
                let mut s = RunSettings::for_model(&model);
                s.data = data.clone();
                s.batch = self.batch;
                s.opt = "sgd".into();
                s.lr = 0.1;
                s.momentum = 0.9;
                s.seed = 1;
                s.val_every = 35;
                s.variant.width = self.width;
                out.push(s);
            }
        }
        out
    }

    /// Creates and starts the race's four runs.
    pub fn start(&mut self, lab: &mut Lab, data: &crate::app::data::DataChoice) {
        self.error = None;
        let mut ids = Vec::new();
        for s in self.settings(data) {
            match lab.add(s) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    self.error = Some(format!("{e:#}"));
                    return;
                }
            }
        }
        for &id in &ids {
            if let Some(r) = lab.get_mut(id) {
                r.running = true;
            }
        }
        self.runs = ids;
    }

    fn error_line<'a>(r: &Run, s: &mut Series, smoothing: f32, val: bool) -> Line<'a> {
        let per_epoch = r.data.train.len().max(1) as f64;
        let values: Vec<f32> = if val {
            s.points().iter().map(|p| p.value).collect()
        } else {
            s.smooth(smoothing);
            s.smoothed_values().to_vec()
        };
        let pts = s.points();
        let line: PlotPoints = decimate(pts.len(), 2000)
            .map(|i| [pts[i].images as f64 / per_epoch, 1.0 - f64::from(values[i])])
            .collect();
        let l = Line::new(r.name.clone(), line)
            .color(color(r.id))
            .id((r.id, val));
        if val {
            l.style(LineStyle::dashed_loose())
        } else {
            l.width(1.5)
        }
    }

    /// Draws the settings, the start button and the race.
    pub fn ui(&mut self, ui: &mut egui::Ui, lab: &mut Lab, selected: &mut Option<u64>) {
        info(ui, "degradation", INFO);
        let depths = [20usize, 32, 44, 56];
        ui.horizontal_wrapped(|ui| {
            for (label, d) in [("shallow", &mut self.shallow), ("deep", &mut self.deep)] {
                egui::ComboBox::from_label(label)
                    .selected_text(d.to_string())
                    .show_ui(ui, |ui| {
                        for v in depths {
                            ui.selectable_value(d, v, v.to_string());
                        }
                    });
            }
            let l = ui.label("width");
            ui.add(
                egui::DragValue::new(&mut self.width)
                    .range(0.125..=1.0)
                    .speed(0.05),
            )
            .labelled_by(l.id);
            let l = ui.label("batch");
            ui.add(egui::DragValue::new(&mut self.batch).range(8..=512))
                .labelled_by(l.id);
            let data = selected
                .and_then(|id| lab.get(id))
                .map(|r| r.settings.data.clone())
                .unwrap_or_else(|| {
                    crate::app::data::DataChoice::bundled(crate::data::Bundled::Mnist)
                });
            if ui
                .button("Start the race")
                .on_hover_text(format!("Four runs on {}", data.label()))
                .clicked()
            {
                self.start(lab, &data);
                *selected = self.runs.first().copied();
            }
            let l = ui.label("smoothing");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99))
                .labelled_by(l.id);
        });
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::LIGHT_RED, e);
        }
        self.runs.retain(|id| lab.get(*id).is_some());
        if self.runs.is_empty() {
            ui.label("Press Start the race: four runs appear in the lab and train side by side.");
            return;
        }
        let mut lines = Vec::new();
        for id in &self.runs {
            let Some(r) = lab.get_mut(*id) else { continue };
            let mut h = std::mem::take(&mut r.history);
            lines.push(Self::error_line(r, &mut h.train_acc, self.smoothing, false));
            if !h.val_acc.is_empty() {
                lines.push(Self::error_line(r, &mut h.val_acc, self.smoothing, true));
            }
            r.history = h;
        }
        ui.label("error (1 - accuracy): training solid, validation dashed");
        Plot::new("degradation")
            .legend(Legend::default())
            .height(420.0)
            .x_axis_label("epoch")
            .include_y(0.0)
            .show(ui, |p| {
                for l in lines {
                    p.line(l);
                }
            });
    }
}
