//! Gradient flow: per layer, ‖∇W‖ (or ‖∇W‖ / ‖W‖) as a layers x steps heatmap and as bars
//! at the latest probe, for every classifier run side by side.

use egui::{Color32, Rect, Sense, Stroke, pos2, vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use super::{info, viridis};
use crate::app::lab::{Lab, color};
use crate::app::run::RunSettings;
use crate::core::GradNorms;
use crate::registry::Variant;

const INFO: &str = "Every few steps the training step also reads back, per conv and linear \
weight W (input side first), the norm of its gradient ||dL/dW|| and ||W|| before the update. \
Lines: log10 of the chosen value at the latest probe, layer by layer; heatmaps: the same over \
training, layers down, probes across, on one colour scale for all runs shown.\n\
Three remedies, apart (Add the comparison runs: depth 56, one step each). Without batch norm \
and with PyTorch's default initialisation (weight variance 1/(3 fan_in), a sixth of what \
ReLU layers need), the plain net's signal shrinks at every layer: its gradients vanish at \
EVERY layer alike (about 1e-23 measured for plain-56), while the residual twin's identity \
paths keep them near 1e-2 (He et al. 2016, 'Identity Mappings'). He initialisation alone \
keeps the plain net's gradients in scale at initialisation (He et al. 2015, 'Delving Deep \
into Rectifiers'). With batch norm nothing vanishes (in plain-56 the gradients even grow \
towards the input, about 1000x at initialisation, as Yang et al. 2019 predict), and yet \
the deep plain net trains worse than the shallow one (the degradation race): degradation \
is an optimisation problem, not vanishing gradients (He et al. 2015, section 4.1). Not \
'ResNets fix vanishing gradients'.";

/// Which value the view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// ‖∇W‖.
    Grad,
    /// ‖∇W‖ / ‖W‖: how far a step moves the layer, relatively.
    Relative,
}

/// The view's state.
pub struct GradientsView {
    /// The value shown.
    pub measure: Measure,
    /// Depth of the runs the set-up button adds.
    pub depth: usize,
}

impl Default for GradientsView {
    fn default() -> Self {
        Self {
            measure: Measure::Grad,
            depth: 56,
        }
    }
}

fn values(n: &GradNorms, m: Measure) -> Vec<f32> {
    match m {
        Measure::Grad => n.grad.clone(),
        Measure::Relative => n.relative(),
    }
}

fn log10(v: f32) -> f32 {
    v.max(1e-38).log10()
}

impl GradientsView {
    /// The runs of the comparison at initialisation: plain and residual without batch norm
    /// (PyTorch's default initialisation), the plain one with He initialisation, and both
    /// with batch norm.
    pub fn experiment(&self) -> Vec<RunSettings> {
        let d = self.depth;
        let cases = [
            (true, false, false),
            (false, false, false),
            (true, false, true),
            (true, true, true),
            (false, true, true),
        ];
        cases
            .into_iter()
            .map(|(plain, bn, he)| {
                let model = if plain {
                    format!("resnet{d}-plain")
                } else {
                    format!("resnet{d}")
                };
                let mut s = RunSettings::for_model(&model);
                s.variant = Variant {
                    batch_norm: bn,
                    he_init: he,
                    width: 1.0,
                };
                s.opt = "sgd".into();
                s.lr = 0.01;
                s.momentum = 0.9;
                s.batch = 32;
                s.val_every = 0;
                s
            })
            .collect()
    }

    /// Draws the controls, one heatmap per run with probes and the latest probe's bars.
    pub fn ui(&mut self, ui: &mut egui::Ui, lab: &mut Lab, selected: &mut Option<u64>) {
        info(ui, "gradients", INFO);
        ui.horizontal_wrapped(|ui| {
            ui.selectable_value(&mut self.measure, Measure::Grad, "||dL/dW||");
            ui.selectable_value(&mut self.measure, Measure::Relative, "||dL/dW|| / ||W||");
            ui.separator();
            egui::ComboBox::from_label("depth")
                .selected_text(self.depth.to_string())
                .show_ui(ui, |ui| {
                    for d in [20usize, 32, 56, 110] {
                        ui.selectable_value(&mut self.depth, d, d.to_string());
                    }
                });
            if ui
                .button("Add the comparison runs")
                .on_hover_text(
                    "Plain and residual without batch norm (PyTorch init), plain with He \
                     init, both with batch norm; each takes one step so its gradients show",
                )
                .clicked()
            {
                for s in self.experiment() {
                    match lab.add(s) {
                        Ok(id) => {
                            if let Some(r) = lab.get_mut(id) {
                                r.set_probe_every(1);
                                let _ = r.submit(0.0, 1);
                            }
                            *selected = Some(id);
                        }
                        Err(e) => log::error!("{e:#}"),
                    }
                }
            }
        });
        let shown: Vec<(u64, String, Vec<GradNorms>)> = lab
            .runs
            .iter()
            .filter(|r| !r.grad_flow.is_empty())
            .map(|r| (r.id, r.name.clone(), r.grad_flow.iter().cloned().collect()))
            .collect();
        if shown.is_empty() {
            ui.label(
                "No gradients yet: classifier runs probe them every 10 steps; start one, or add \
                 the comparison runs.",
            );
            return;
        }
        // One colour scale for every run shown.
        let all = shown
            .iter()
            .flat_map(|(_, _, g)| g.iter().flat_map(|n| values(n, self.measure)))
            .map(log10);
        let (lo, hi) = all.fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let span = (hi - lo).max(1e-6);
        ui.label(format!(
            "colour: log10 of the value, from {lo:.1} (dark) to {hi:.1} (yellow)"
        ));
        let mut lines = Vec::new();
        for (id, name, probes) in &shown {
            if let Some(n) = probes.last() {
                let pts: Vec<[f64; 2]> = values(n, self.measure)
                    .iter()
                    .enumerate()
                    .map(|(l, x)| [l as f64, f64::from(log10(*x))])
                    .collect();
                lines.push((
                    Line::new(name.clone(), PlotPoints::from(pts.clone())).color(color(*id)),
                    Points::new(name.clone(), PlotPoints::from(pts))
                        .color(color(*id))
                        .radius(2.0),
                ));
            }
        }
        ui.label("latest probe: log10 of the value per layer (input side left)");
        Plot::new("gradient-layers")
            .legend(Legend::default())
            .height(260.0)
            .x_axis_label("layer")
            .show(ui, |p| {
                for (l, pts) in lines {
                    p.line(l);
                    p.points(pts);
                }
            });
        ui.label("per run: layers down (input side at the top), probes across");
        for (id, name, probes) in &shown {
            ui.horizontal(|ui| {
                let (r, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
                ui.painter().rect_filled(r, 2.0, color(*id));
                ui.label(name);
            });
            let layers = probes.last().map_or(0, |n| n.layers.len()).max(1);
            let cols: Vec<usize> = crate::app::history::decimate(probes.len(), 300).collect();
            // Columns of at most 12 pixels: a few probes make a narrow map.
            let width = ui
                .available_width()
                .min(900.0)
                .min(12.0 * cols.len() as f32);
            let height = (layers as f32 * 2.0).clamp(40.0, 110.0);
            let (rect, resp) = ui.allocate_exact_size(vec2(width, height), Sense::hover());
            let cw = width / cols.len().max(1) as f32;
            let rh = height / layers as f32;
            let painter = ui.painter_at(rect);
            for (c, &i) in cols.iter().enumerate() {
                for (l, x) in values(&probes[i], self.measure).iter().enumerate() {
                    let t = (log10(*x) - lo) / span;
                    let min = pos2(rect.left() + c as f32 * cw, rect.top() + l as f32 * rh);
                    painter.rect_filled(
                        Rect::from_min_size(min, vec2(cw + 0.5, rh + 0.5)),
                        0.0,
                        viridis(t),
                    );
                }
            }
            painter.rect_stroke(
                rect,
                0.0,
                Stroke::new(1.0, Color32::GRAY),
                egui::StrokeKind::Inside,
            );
            if let Some(p) = resp.hover_pos() {
                let c = (((p.x - rect.left()) / cw) as usize).min(cols.len().saturating_sub(1));
                let probe = &probes[cols[c]];
                let l =
                    (((p.y - rect.top()) / rh) as usize).min(probe.layers.len().saturating_sub(1));
                if let Some(name) = probe.layers.get(l) {
                    resp.on_hover_text(format!(
                        "{name} at step {}: ||dL/dW|| {:.3e}, ||W|| {:.3e}",
                        probe.step, probe.grad[l], probe.weight[l]
                    ));
                }
            }
        }
    }
}
