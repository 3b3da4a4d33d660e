//! The GAN view: samples of the selected DCGAN run from fixed noise, drawn on the GPU and
//! refreshed every second, beside its discriminator and generator losses.

use anyhow::Result;
use egui_plot::{Legend, Line, Plot, PlotPoints};

use crate::app::history::{Series, decimate};
use crate::app::lab::Lab;
use crate::app::pictures::Pictures;

/// Samples refresh at most this often while training (seconds).
const SAMPLES_EVERY_S: f64 = 1.0;

/// The view's own state.
#[derive(Default)]
pub struct GanView {
    samples_at: f64,
    sampled: Option<(u64, u64)>,
}

impl GanView {
    /// The run this view shows: the selected one if it is a GAN, else the first GAN run.
    pub fn run_id(lab: &Lab, selected: Option<u64>) -> Option<u64> {
        selected
            .and_then(|id| lab.get(id))
            .filter(|r| r.is_gan())
            .or_else(|| lab.runs.iter().find(|r| r.is_gan()))
            .map(|r| r.id)
    }

    /// Draws new samples when due (every second while training, or once after a change).
    pub fn maybe_sample(&mut self, lab: &mut Lab, selected: Option<u64>, now: f64) -> Result<()> {
        let Some(id) = Self::run_id(lab, selected) else {
            return Ok(());
        };
        let Some(run) = lab.get_mut(id) else {
            return Ok(());
        };
        let stale = self.sampled != Some((id, run.steps()));
        if stale && (now - self.samples_at > SAMPLES_EVERY_S || !run.running) {
            run.request_samples()?;
            self.samples_at = now;
            self.sampled = Some((id, run.steps()));
        }
        Ok(())
    }

    /// Draws the samples and the two loss curves.
    pub fn ui(&mut self, ui: &mut egui::Ui, lab: &Lab, selected: Option<u64>, pics: &mut Pictures) {
        let Some(run) = Self::run_id(lab, selected).and_then(|id| lab.get(id)) else {
            ui.label("No GAN run: add one with the model `dcgan` on the left.");
            return;
        };
        ui.label(egui::RichText::new(&run.name).strong());
        ui.label(
            "Samples from fixed noise (refreshed every second), discriminator and generator losses.",
        );
        ui.horizontal(|ui| {
            if let Some((step, pic)) = run.samples()
                && let Some(t) = pics.texture(&format!("run{}/gan:samples", run.id), pic)
            {
                ui.vertical(|ui| {
                    ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(300.0, 300.0)));
                    ui.label(format!("after step {step}"));
                });
            }
            let line = |s: &Series, name: &str| {
                let pts = s.points();
                let p: PlotPoints = decimate(pts.len(), 2000)
                    .map(|i| [pts[i].step as f64, f64::from(pts[i].value)])
                    .collect();
                Line::new(name.to_string(), p)
            };
            Plot::new("gan")
                .height(300.0)
                .legend(Legend::default())
                .x_axis_label("step")
                .show(ui, |p| {
                    p.line(line(&run.history.train_loss, "D loss"));
                    p.line(line(&run.history.train_acc, "G loss"));
                });
        });
    }
}
