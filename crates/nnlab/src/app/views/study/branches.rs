//! The Inception branch lens: one module's four branches for a sample, side by side and
//! colour-coded, each branch's share of the module's output energy over training, and
//! test-time branch ablation.

use std::collections::BTreeMap;

use anyhow::Result;
use egui::Color32;
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};

use super::info;
use crate::app::lab::Lab;
use crate::app::pictures::Pictures;
use crate::app::run::{Inspection, PendingInspect};
use crate::core::study::{PendingShares, Shares, branch_shares, inception_modules};
use crate::core::{EVAL_BATCH, Evaluation};

const INFO: &str = "An Inception module runs four branches on the same input and \
concatenates their outputs on channels: a 1x1 conv, a 1x1 then 3x3, a 1x1 then '5x5' (a 3x3 \
in torchvision and googlenet-small; a true 5x5 in inception-small), and a 3x3 max pool then \
1x1. Within the module they see 1, 3, 5 (or 3) and 3 pixels across. Shown for a chosen module \
and validation image: each branch's feature maps; each branch's share of the module's \
output energy, ||branch||^2 / ||module||^2 over 32 validation images, as training goes on; \
and the change in validation accuracy when one branch is zeroed at test time.\n\
Look for: branches that take different shares and whose ablation costs differently, that \
is, the module uses its receptive fields for different things. Szegedy et al. 2015, 'Going \
Deeper with Convolutions' (GoogLeNet).";

/// Branch colours, in branch order.
const BRANCH_COLOURS: [Color32; 4] = [
    Color32::from_rgb(230, 97, 1),
    Color32::from_rgb(94, 60, 153),
    Color32::from_rgb(27, 158, 119),
    Color32::from_rgb(86, 180, 233),
];

/// Per run: energy shares over training, and the latest branch ablation.
#[derive(Default)]
struct RunLens {
    shares: Vec<(u64, Shares)>,
    pending_shares: Option<(u64, PendingShares)>,
    /// Accuracy with each branch zeroed: overall and per class.
    ablation: BTreeMap<String, (f64, Vec<f64>)>,
    baseline: Option<(f64, Vec<f64>)>,
    ablating: Vec<(Option<String>, Evaluation)>,
}

/// The view's state.
#[derive(Default)]
pub struct BranchesView {
    /// The module shown.
    pub module: usize,
    /// Validation image shown.
    pub sample: usize,
    lens: BTreeMap<u64, RunLens>,
    pending: Option<(u64, usize, usize, PendingInspect)>,
    /// The latest branch maps: (run, module, sample, inspection).
    shown: Option<(u64, usize, usize, Inspection)>,
}

/// Receptive field of branch `b` (1-based) within a module whose third branch has a
/// `k5`-wide kernel.
fn receptive_field(b: usize, k5: usize) -> usize {
    match b {
        1 => 1,
        3 => k5,
        _ => 3,
    }
}

impl BranchesView {
    /// The run shown: the selected one if it has Inception modules, else the first that has.
    pub fn run_id(lab: &Lab, selected: Option<u64>) -> Option<u64> {
        let has = |r: &crate::app::run::Run| {
            r.classifier()
                .is_some_and(|c| !inception_modules(c.net.as_ref()).is_empty())
        };
        selected
            .and_then(|id| lab.get(id))
            .filter(|r| has(r))
            .or_else(|| lab.runs.iter().find(|r| has(r)))
            .map(|r| r.id)
    }

    /// Collects and submits the branch maps, shares and ablations (never waits).
    pub fn advance(&mut self, lab: &mut Lab, selected: Option<u64>, _now: f64) -> Result<()> {
        self.lens.retain(|id, _| lab.get(*id).is_some());
        if let Some((id, m, s, p)) = &mut self.pending
            && let Some(insp) = p.try_take()?
        {
            self.shown = Some((*id, *m, *s, insp));
            self.pending = None;
        }
        let Some(id) = Self::run_id(lab, selected) else {
            return Ok(());
        };
        let Some(run) = lab.get_mut(id) else {
            return Ok(());
        };
        let Some(c) = run.classifier() else {
            return Ok(());
        };
        let modules = inception_modules(c.net.as_ref());
        let m = self.module.min(modules.len().saturating_sub(1));
        let step = run.steps_back();
        let val = &run.data.val;
        let lens = self.lens.entry(id).or_default();
        // Shares every 50 steps (and at once for a run not measured yet).
        if let Some((at, p)) = &mut lens.pending_shares
            && let Some(s) = p.try_take()?
        {
            lens.shares.push((*at, s));
            lens.pending_shares = None;
        }
        let due = lens.shares.last().is_none_or(|(at, _)| step >= at + 50);
        if due && lens.pending_shares.is_none() && !val.is_empty() {
            let n = val.len().min(32);
            let idx: Vec<usize> = (0..n).collect();
            let (x, _) = val.batch(c.gpu(), &idx)?;
            lens.pending_shares = Some((step, branch_shares(c.net.as_ref(), &x)?));
        }
        // Ablations, one evaluation at a time.
        if let Some((which, e)) = lens.ablating.last_mut()
            && let Some(r) = e.try_take()?
        {
            let per_class = r.confusion(&val.labels, val.classes).per_class_accuracy();
            match which.take() {
                Some(b) => {
                    lens.ablation.insert(b, (r.acc, per_class));
                }
                None => lens.baseline = Some((r.acc, per_class)),
            }
            lens.ablating.pop();
        }
        // Branch maps of the sample: when the run, module, sample or weights changed.
        let sample = self.sample.min(val.len().saturating_sub(1));
        let stale = self.shown.as_ref().is_none_or(|(r, mm, s, i)| {
            *r != id || *mm != m || *s != sample || i.step != c.progress.step
        });
        if stale && self.pending.is_none() && !val.is_empty() && !modules.is_empty() {
            let img = val.input(sample);
            let branches = modules[m].1.clone();
            let p = run.inspect_where(&img, &|name| branches.iter().any(|b| b == name), false)?;
            self.pending = Some((id, m, sample, p));
        }
        Ok(())
    }

    /// Starts the ablation of every branch of module `m` of run `id`.
    fn ablate(&mut self, lab: &mut Lab, id: u64, m: usize) -> Result<()> {
        let Some(run) = lab.get_mut(id) else {
            return Ok(());
        };
        run.running = false;
        let Some(c) = run.classifier() else {
            return Ok(());
        };
        let modules = inception_modules(c.net.as_ref());
        let Some((_, branches)) = modules.get(m) else {
            return Ok(());
        };
        let lens = self.lens.entry(id).or_default();
        lens.ablation.clear();
        lens.ablating.clear();
        let val = &run.data.val;
        // Popped from the back: the baseline last.
        lens.ablating.push((
            None,
            Evaluation::start(c.gpu(), c.net.as_ref(), val, EVAL_BATCH, 0)?,
        ));
        for b in branches {
            let e = Evaluation::start_lesioned(
                c.gpu(),
                c.net.as_ref(),
                val,
                EVAL_BATCH,
                0,
                std::slice::from_ref(b),
            )?;
            lens.ablating.push((Some(b.clone()), e));
        }
        Ok(())
    }

    /// Draws the module chooser, the branch maps, the shares over training and the ablation.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &mut Lab,
        selected: Option<u64>,
        pics: &mut Pictures,
    ) {
        info(ui, "branches", INFO);
        let Some(id) = Self::run_id(lab, selected) else {
            ui.label("No run with Inception modules: add googlenet-small or inception-small.");
            return;
        };
        let Some(run) = lab.get(id) else { return };
        let Some(c) = run.classifier() else { return };
        let modules = inception_modules(c.net.as_ref());
        let k5 = if run.settings.model == "inception-small" {
            5
        } else {
            3
        };
        let mut ablate = false;
        ui.horizontal_wrapped(|ui| {
            ui.label(egui::RichText::new(&run.name).strong());
            egui::ComboBox::from_label("module")
                .selected_text(modules.get(self.module).map_or("-", |(m, _)| m.as_str()))
                .show_ui(ui, |ui| {
                    for (i, (m, _)) in modules.iter().enumerate() {
                        ui.selectable_value(&mut self.module, i, m);
                    }
                });
            let l = ui.label("validation image");
            ui.add(
                egui::DragValue::new(&mut self.sample)
                    .range(0..=run.data.val.len().saturating_sub(1)),
            )
            .labelled_by(l.id);
            ablate = ui
                .button("Ablate each branch")
                .on_hover_text("Pauses the run; validation accuracy with one branch zeroed")
                .clicked();
        });
        let m = self.module.min(modules.len().saturating_sub(1));
        if let Some((rid, mm, _, insp)) = &self.shown
            && *rid == id
            && *mm == m
        {
            ui.horizontal(|ui| {
                for (b, (name, shape, pic)) in insp.layers.iter().enumerate() {
                    ui.vertical(|ui| {
                        let rf = receptive_field(b + 1, k5);
                        ui.colored_label(
                            BRANCH_COLOURS[b % 4],
                            format!("branch{} ({rf}x{rf}) {:?}", b + 1, &shape[1..]),
                        );
                        if let Some(t) = pics.texture(&format!("run{id}/layer:{name}"), pic) {
                            let scale = (200.0 / t.size.x).clamp(0.5, 4.0);
                            let r = ui.add(egui::Image::new(t).fit_to_exact_size(t.size * scale));
                            ui.painter().rect_stroke(
                                r.rect,
                                0.0,
                                egui::Stroke::new(2.0, BRANCH_COLOURS[b % 4]),
                                egui::StrokeKind::Outside,
                            );
                        }
                    });
                }
            });
        } else {
            ui.spinner();
        }
        let lens = self.lens.get(&id);
        let module_name = modules.get(m).map(|(n, _)| n.clone()).unwrap_or_default();
        let half = (ui.available_height() / 2.0 - 24.0).max(100.0);
        let mut lines: Vec<Line> = Vec::new();
        if let Some(l) = lens {
            for (b, colour) in BRANCH_COLOURS.iter().enumerate() {
                let pts: PlotPoints = l
                    .shares
                    .iter()
                    .filter_map(|(step, s)| {
                        let (_, v) = s.iter().find(|(n, _)| *n == module_name)?;
                        v.get(b).map(|(_, x)| [*step as f64, f64::from(*x)])
                    })
                    .collect();
                let rf = receptive_field(b + 1, k5);
                lines.push(Line::new(format!("branch{} ({rf}x{rf})", b + 1), pts).color(*colour));
            }
        }
        ui.label(format!(
            "{module_name}: each branch's share of the output energy"
        ));
        Plot::new("branch-shares")
            .legend(Legend::default())
            .height(half)
            .x_axis_label("step")
            .include_y(0.0)
            .show(ui, |p| {
                for l in lines {
                    p.line(l);
                }
            });
        if let Some(l) = lens
            && let Some((base, base_class)) = &l.baseline
            && !l.ablation.is_empty()
        {
            let base = *base;
            ui.label(format!(
                "change in validation accuracy (points) with one branch zeroed (baseline {:.1}%)",
                100.0 * base
            ));
            let bars: Vec<Bar> = l
                .ablation
                .iter()
                .enumerate()
                .map(|(i, (b, (a, _)))| {
                    Bar::new(i as f64, 100.0 * (a - base))
                        .name(b)
                        .fill(BRANCH_COLOURS[i % 4])
                })
                .collect();
            Plot::new("branch-ablation")
                .height(half)
                .show(ui, |p| p.bar_chart(BarChart::new("ablation", bars)));
            ui.label("per class: change in accuracy (points) with the branch zeroed");
            let names = &run.data.class_names;
            egui::Grid::new("branch-ablation-classes").show(ui, |ui| {
                ui.label("");
                for (k, _) in base_class.iter().enumerate() {
                    ui.label(names.get(k).map_or(k.to_string(), Clone::clone));
                }
                ui.end_row();
                for (i, (b, (_, per))) in l.ablation.iter().enumerate() {
                    ui.colored_label(BRANCH_COLOURS[i % 4], b);
                    for (a, a0) in per.iter().zip(base_class) {
                        let d = 100.0 * (a - a0);
                        let text = if d.is_finite() {
                            format!("{d:+.0}")
                        } else {
                            "-".into()
                        };
                        // Red as the class suffers: the branch it needed.
                        let red = (d.abs().min(60.0) / 60.0 * 200.0) as u8;
                        let c = if d < 0.0 {
                            egui::Color32::from_rgb(255, 255 - red, 255 - red)
                        } else {
                            egui::Color32::from_gray(200)
                        };
                        ui.colored_label(c, text);
                    }
                    ui.end_row();
                }
            });
        }
        if ablate && let Err(e) = self.ablate(lab, id, m) {
            log::error!("{e:#}");
        }
    }
}
