//! Feature maps of the selected classifier run: every layer's activations for a chosen
//! validation image and the first-layer filters, drawn on the GPU and refreshed as the
//! network learns.

use anyhow::Result;

use crate::app::dropped;
use crate::app::lab::Lab;
use crate::app::pictures::Pictures;
use crate::app::run::{Inspection, PendingInspect};

/// Feature maps refresh at most this often while training (seconds).
pub const INSPECT_EVERY_S: f64 = 1.0;

/// The view's own state.
#[derive(Default)]
pub struct FeaturesView {
    /// Validation-set index of the image whose maps are shown.
    pub sample: usize,
    /// The run and sample the shown maps belong to.
    shown_for: Option<(u64, usize)>,
    pending: Option<(u64, usize, PendingInspect)>,
    /// The latest inspection and its run.
    pub latest: Option<(u64, Inspection)>,
    last_inspect: f64,
    /// Steps back when the last inspection was asked for (a manual step refreshes it).
    asked_at_step: u64,
}

impl FeaturesView {
    /// The run this view shows: the selected one if it is a classifier, else the first.
    pub fn run_id(lab: &Lab, selected: Option<u64>) -> Option<u64> {
        selected
            .and_then(|id| lab.get(id))
            .filter(|r| !r.is_gan())
            .or_else(|| lab.runs.iter().find(|r| !r.is_gan()))
            .map(|r| r.id)
    }

    /// Collects a finished inspection (never waits).
    pub fn poll(&mut self) -> Result<()> {
        if let Some((id, sample, p)) = &mut self.pending
            && let Some(insp) = p.try_take()?
        {
            self.shown_for = Some((*id, *sample));
            self.latest = Some((*id, insp));
            self.pending = None;
        }
        Ok(())
    }

    /// Submits an inspection when the run, the sample or its weights changed (at most once
    /// a second while it trains). Called after the frame's steps, so that on a CPU adapter
    /// it rides behind them.
    pub fn maybe_inspect(&mut self, lab: &mut Lab, selected: Option<u64>, now: f64) -> Result<()> {
        if self.pending.is_some() {
            return Ok(());
        }
        let Some(id) = Self::run_id(lab, selected) else {
            self.latest = None;
            return Ok(());
        };
        let Some(run) = lab.get_mut(id) else {
            return Ok(());
        };
        let val = &run.data.val;
        if val.is_empty() {
            return Ok(());
        }
        let sample = self.sample.min(val.len() - 1);
        let moved = run.steps_back() != self.asked_at_step && !run.running;
        let due = run.running && now - self.last_inspect > INSPECT_EVERY_S;
        if self.shown_for != Some((id, sample)) || moved || due {
            let img = val.input(sample);
            self.asked_at_step = run.steps_back();
            self.pending = Some((id, sample, run.inspect(&img)?));
            self.last_inspect = now;
        }
        Ok(())
    }

    /// Draws the sample chooser, the prediction, the filters and every layer's maps.
    pub fn ui(&mut self, ui: &mut egui::Ui, lab: &Lab, selected: Option<u64>, pics: &mut Pictures) {
        let Some(run) = Self::run_id(lab, selected).and_then(|id| lab.get(id)) else {
            ui.label("No classifier run: add one on the left.");
            return;
        };
        let val = &run.data.val;
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new(&run.name).strong());
            let l = ui.label("Validation image");
            ui.add(egui::DragValue::new(&mut self.sample).range(0..=val.len().saturating_sub(1)))
                .labelled_by(l.id);
            if let Some(&l) = val.labels.get(self.sample) {
                let names = &run.data.class_names;
                ui.label(format!(
                    "label: {}",
                    names.get(usize::from(l)).map_or("?", String::as_str)
                ));
            }
        });
        let Some((id, f)) = self.latest.as_ref().filter(|(id, _)| *id == run.id) else {
            ui.spinner();
            return;
        };
        if let Some(&(c, p)) = dropped::top_k(&f.probs, 1).first() {
            ui.label(format!(
                "after step {}: predicted {} ({:.1}%)",
                f.step,
                run.data.class_names.get(c).map_or("?", String::as_str),
                p * 100.0
            ));
        }
        egui::ScrollArea::vertical().show(ui, |ui| {
            if let Some((shape, pic)) = &f.filters
                && let Some(t) = pics.texture(&format!("run{id}/filters"), pic)
            {
                ui.label(format!("first-layer filters {shape:?}"));
                ui.add(egui::Image::new(t).fit_to_exact_size(t.size * 6.0));
            }
            for (name, shape, pic) in &f.layers {
                if let Some(t) = pics.texture(&format!("run{id}/layer:{name}"), pic) {
                    ui.label(format!("{name} {shape:?}"));
                    let scale = (320.0 / t.size.x).clamp(1.0, 8.0);
                    ui.add(egui::Image::new(t).fit_to_exact_size(t.size * scale));
                }
            }
        });
    }

    /// Forgets what belongs to run `id` (removed).
    pub fn forget(&mut self, id: u64) {
        if self.latest.as_ref().is_some_and(|(r, _)| *r == id) {
            self.latest = None;
        }
        if self.pending.as_ref().is_some_and(|(r, _, _)| *r == id) {
            self.pending = None;
        }
        if self.shown_for.is_some_and(|(r, _)| r == id) {
            self.shown_for = None;
        }
    }
}
