//! Residual response (He et al. 2015, Fig. 7): per block, the standard deviation of the
//! residual branch's output and how much a block changes its input, plain vs residual,
//! over training; and the anatomy of one block for one image.

use std::collections::BTreeMap;

use anyhow::Result;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use super::info;
use crate::app::lab::{Lab, color};
use crate::app::pictures::Pictures;
use crate::app::run::{Inspection, PendingInspect};
use crate::core::study::{PendingResponse, Response, block_parts, residual_response};

const INFO: &str = "Every 50 steps, on 32 validation images: for each block, the standard \
deviation of its residual branch's output F(x) (after the branch's last batch norm, before \
the add; in a plain net the same layer, before its relu), and rms(F(x)) / rms(x), how much \
the block changes what flows through it.\n\
Look for: the residual nets' responses are smaller than the plain nets', and smaller in the \
deeper ResNet: each block only nudges its input, close to identity, so the optimiser can \
find small corrections rather than whole new functions. Reproduces He et al. 2015, Fig. 7 \
(standard deviations of layer responses on CIFAR-10).\n\
Block anatomy below: for the chosen block and image, its input x, the branch F(x), the \
shortcut (the identity, or a 1x1 projection where the shape changes) and the output \
relu(F(x) + shortcut).";

/// The responses of every block at a step.
type Measured = (u64, Vec<Response>);

/// The view's state.
#[derive(Default)]
pub struct ResponseView {
    /// Per run: its name and (step, responses) measurements.
    history: BTreeMap<u64, (String, Vec<Measured>)>,
    pending: BTreeMap<u64, (u64, PendingResponse)>,
    /// The block shown in the anatomy.
    pub block: usize,
    /// The validation image of the anatomy.
    pub sample: usize,
    anatomy: Option<(u64, usize, usize, Inspection)>,
    anatomy_pending: Option<(u64, usize, usize, PendingInspect)>,
}

impl ResponseView {
    /// Measures runs due a measurement, collects what came back, and the anatomy (never
    /// waits).
    pub fn advance(&mut self, lab: &mut Lab, selected: Option<u64>) -> Result<()> {
        self.history.retain(|id, _| lab.get(*id).is_some());
        self.pending.retain(|id, _| lab.get(*id).is_some());
        for r in &lab.runs {
            let Some(c) = r.classifier() else { continue };
            if block_parts(c.net.as_ref()).is_empty() || r.data.val.is_empty() {
                continue;
            }
            let entry = self
                .history
                .entry(r.id)
                .or_insert_with(|| (r.name.clone(), Vec::new()));
            if let Some((step, p)) = self.pending.get_mut(&r.id)
                && let Some(v) = p.try_take()?
            {
                entry.1.push((*step, v));
                self.pending.remove(&r.id);
            }
            let step = r.steps_back();
            let due = entry.1.last().is_none_or(|(at, _)| step >= at + 50);
            if due && !self.pending.contains_key(&r.id) {
                let idx: Vec<usize> = (0..r.data.val.len().min(32)).collect();
                let (x, _) = r.data.val.batch(c.gpu(), &idx)?;
                self.pending
                    .insert(r.id, (step, residual_response(c.net.as_ref(), &x)?));
            }
        }
        if let Some((id, b, s, p)) = &mut self.anatomy_pending
            && let Some(i) = p.try_take()?
        {
            self.anatomy = Some((*id, *b, *s, i));
            self.anatomy_pending = None;
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
        let parts = block_parts(c.net.as_ref());
        let b = self.block.min(parts.len().saturating_sub(1));
        let s = self.sample.min(run.data.val.len().saturating_sub(1));
        let step = c.progress.step;
        let stale = self
            .anatomy
            .as_ref()
            .is_none_or(|(r, bb, ss, i)| *r != id || *bb != b || *ss != s || i.step != step);
        if stale && self.anatomy_pending.is_none() && !run.data.val.is_empty() {
            let (block, input, branch, proj) = parts[b].clone();
            let keep = move |n: &str| {
                n == block || n == input || n == branch || proj.as_deref() == Some(n)
            };
            let img = run.data.val.input(s);
            self.anatomy_pending = Some((id, b, s, run.inspect_where(&img, &keep, false)?));
        }
        Ok(())
    }

    /// True once the block anatomy is drawn.
    pub fn anatomy_ready(&self) -> bool {
        self.anatomy.is_some()
    }

    /// The run the anatomy shows: the selected ResNet-style run, else the first.
    pub fn run_id(lab: &Lab, selected: Option<u64>) -> Option<u64> {
        let is_resnet = |r: &crate::app::run::Run| {
            r.classifier()
                .is_some_and(|c| !block_parts(c.net.as_ref()).is_empty())
        };
        selected
            .and_then(|id| lab.get(id))
            .filter(|r| is_resnet(r))
            .or_else(|| lab.runs.iter().find(|r| is_resnet(r)))
            .map(|r| r.id)
    }

    /// Draws both plots and the block anatomy.
    pub fn ui(&mut self, ui: &mut egui::Ui, lab: &Lab, selected: Option<u64>, pics: &mut Pictures) {
        info(ui, "response", INFO);
        if self.history.values().all(|(_, h)| h.is_empty()) {
            ui.label("No ResNet-style run measured yet: add resnet20 and resnet20-plain.");
            return;
        }
        let mut std_lines = Vec::new();
        let mut ratio_lines = Vec::new();
        for (id, (name, h)) in &self.history {
            let Some((_, last)) = h.last() else { continue };
            let pts: Vec<[f64; 2]> = last
                .iter()
                .enumerate()
                .map(|(i, r)| [i as f64, f64::from(r.branch_std)])
                .collect();
            std_lines.push((
                Line::new(name.clone(), PlotPoints::from(pts.clone())).color(color(*id)),
                Points::new(name.clone(), PlotPoints::from(pts))
                    .color(color(*id))
                    .radius(2.0),
            ));
            let over: PlotPoints = h
                .iter()
                .map(|(step, rs)| {
                    let mean =
                        rs.iter().map(|r| f64::from(r.ratio)).sum::<f64>() / rs.len().max(1) as f64;
                    [*step as f64, mean]
                })
                .collect();
            ratio_lines.push(Line::new(name.clone(), over).color(color(*id)));
        }
        ui.label("std of each residual branch's output, latest measurement (block index)");
        Plot::new("response-std")
            .legend(Legend::default())
            .height(200.0)
            .x_axis_label("block")
            .include_y(0.0)
            .show(ui, |p| {
                for (l, pts) in std_lines {
                    p.line(l);
                    p.points(pts);
                }
            });
        ui.label("mean over blocks of rms(F(x)) / rms(x), over training");
        Plot::new("response-ratio")
            .legend(Legend::default())
            .height(200.0)
            .x_axis_label("step")
            .include_y(0.0)
            .show(ui, |p| {
                for l in ratio_lines {
                    p.line(l);
                }
            });
        self.anatomy_ui(ui, lab, selected, pics);
    }

    fn anatomy_ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &Lab,
        selected: Option<u64>,
        pics: &mut Pictures,
    ) {
        let Some(run) = Self::run_id(lab, selected).and_then(|id| lab.get(id)) else {
            return;
        };
        let Some(c) = run.classifier() else { return };
        let parts = block_parts(c.net.as_ref());
        ui.separator();
        ui.horizontal_wrapped(|ui| {
            ui.label(egui::RichText::new(format!("Block anatomy: {}", run.name)).strong());
            egui::ComboBox::from_label("block")
                .selected_text(parts.get(self.block).map_or("-", |p| p.0.as_str()))
                .show_ui(ui, |ui| {
                    for (i, p) in parts.iter().enumerate() {
                        ui.selectable_value(&mut self.block, i, &p.0);
                    }
                });
            let l = ui.label("validation image");
            ui.add(
                egui::DragValue::new(&mut self.sample)
                    .range(0..=run.data.val.len().saturating_sub(1)),
            )
            .labelled_by(l.id);
        });
        let Some((id, b, _, insp)) = &self.anatomy else {
            ui.spinner();
            return;
        };
        let Some((block, input, branch, proj)) = parts.get(*b) else {
            return;
        };
        let residual = !run.settings.model.ends_with("-plain");
        let shortcut = match (residual, proj) {
            (false, _) => "no shortcut (plain)".to_string(),
            (true, Some(_)) => "shortcut: 1x1 projection + BN".to_string(),
            (true, None) => "shortcut: identity (x itself)".to_string(),
        };
        let order = [
            (input.as_str(), "x: the block's input"),
            (branch.as_str(), "F(x): the residual branch"),
            (proj.as_deref().unwrap_or(""), "the projected shortcut"),
            (
                block.as_str(),
                if residual {
                    "relu(F(x) + shortcut)"
                } else {
                    "relu(F(x))"
                },
            ),
        ];
        ui.label(shortcut);
        ui.horizontal_wrapped(|ui| {
            for (name, caption) in order {
                let Some((_, shape, pic)) = insp.layers.iter().find(|(n, _, _)| n == name) else {
                    continue;
                };
                ui.vertical(|ui| {
                    ui.label(format!("{caption} {:?}", &shape[1..]));
                    if let Some(t) = pics.texture(&format!("run{id}/layer:{name}"), pic) {
                        let scale = (220.0 / t.size.x).clamp(0.5, 4.0);
                        ui.add(egui::Image::new(t).fit_to_exact_size(t.size * scale));
                    }
                });
            }
        });
    }
}
