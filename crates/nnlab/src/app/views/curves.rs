//! Curves of every run, overlaid: loss and accuracy (the GAN: its two losses), training and
//! validation, a colour and one legend entry per run. Smoothed with TensorBoard's debiased
//! EMA (raw faint, smoothed solid), by step, epoch or images seen, loss on a log scale if
//! asked; long histories are decimated for drawing.

use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints, Points};

use crate::app::history::{Series, decimate};
use crate::app::lab::{Lab, color};
use crate::app::run::Run;

/// Points drawn per line at most.
const MAX_POINTS: usize = 2000;

/// What the x axis counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    /// Optimizer steps.
    Step,
    /// Passes over the training set.
    Epoch,
    /// Training images seen.
    Images,
}

/// The curves view's own settings.
pub struct CurvesView {
    /// What the x axis counts.
    pub x: XAxis,
    /// EMA weight in [0, 1): 0 draws the raw curves only.
    pub smoothing: f32,
    /// Loss on a logarithmic axis.
    pub log_loss: bool,
}

impl Default for CurvesView {
    fn default() -> Self {
        Self {
            x: XAxis::Step,
            smoothing: 0.6,
            log_loss: false,
        }
    }
}

impl CurvesView {
    fn x(&self, r: &Run, p: &crate::app::history::Point) -> f64 {
        match self.x {
            XAxis::Step => p.step as f64,
            XAxis::Images => p.images as f64,
            XAxis::Epoch => p.images as f64 / r.data.train.len().max(1) as f64,
        }
    }

    fn y(&self, v: f32, log: bool) -> f64 {
        if log {
            f64::from(v.max(1e-6)).log10()
        } else {
            f64::from(v)
        }
    }

    /// Training curve of one run: raw (faint) and smoothed (solid).
    fn train_lines<'a>(
        &self,
        r: &Run,
        s: &mut Series,
        log: bool,
        tag: &str,
        style: LineStyle,
    ) -> Vec<Line<'a>> {
        let c = color(r.id);
        if self.smoothing > 0.0 {
            s.smooth(self.smoothing);
        }
        let pts = s.points();
        let idx: Vec<usize> = decimate(pts.len(), MAX_POINTS).collect();
        let raw: PlotPoints = idx
            .iter()
            .map(|&i| [self.x(r, &pts[i]), self.y(pts[i].value, log)])
            .collect();
        let mut lines = Vec::new();
        if self.smoothing > 0.0 {
            let sm = s.smoothed_values();
            let smooth: PlotPoints = idx
                .iter()
                .map(|&i| [self.x(r, &pts[i]), self.y(sm[i], log)])
                .collect();
            lines.push(
                Line::new(r.name.clone(), raw)
                    .color(c.gamma_multiply(0.3))
                    .style(style)
                    .id((r.id, tag, "raw")),
            );
            lines.push(
                Line::new(r.name.clone(), smooth)
                    .color(c)
                    .width(1.5)
                    .style(style)
                    .id((r.id, tag, "smooth")),
            );
        } else {
            lines.push(
                Line::new(r.name.clone(), raw)
                    .color(c)
                    .style(style)
                    .id((r.id, tag, "raw")),
            );
        }
        lines
    }

    /// Validation curve of one run: dashed, with a dot per validation pass.
    fn val_items<'a>(&self, r: &Run, s: &Series, log: bool, tag: &str) -> (Line<'a>, Points<'a>) {
        let c = color(r.id);
        let pts: Vec<[f64; 2]> = s
            .points()
            .iter()
            .map(|p| [self.x(r, p), self.y(p.value, log)])
            .collect();
        (
            Line::new(r.name.clone(), PlotPoints::from(pts.clone()))
                .color(c)
                .style(LineStyle::dashed_loose())
                .id((r.id, tag, "val")),
            Points::new(r.name.clone(), PlotPoints::from(pts))
                .color(c)
                .radius(2.5)
                .id((r.id, tag, "valpts")),
        )
    }

    /// Draws the controls and both plots.
    pub fn ui(&mut self, ui: &mut egui::Ui, lab: &mut Lab) -> bool {
        let mut export = false;
        ui.horizontal_wrapped(|ui| {
            ui.label("x:");
            ui.selectable_value(&mut self.x, XAxis::Step, "step");
            ui.selectable_value(&mut self.x, XAxis::Epoch, "epoch");
            ui.selectable_value(&mut self.x, XAxis::Images, "images");
            ui.separator();
            let l = ui.label("Smoothing");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99))
                .labelled_by(l.id)
                .on_hover_text(
                    "Exponential moving average, debiased as TensorBoard does: \
                     s_t = w s_(t-1) + (1 - w) x_t, shown as s_t / (1 - w^t)",
                );
            ui.checkbox(&mut self.log_loss, "log loss");
            ui.separator();
            export = ui
                .button("Export CSV")
                .on_hover_text("Every run's history, one file per run")
                .clicked();
        });
        ui.label(
            egui::RichText::new(
                "solid: training (smoothed; raw faint) · dashed with dots: validation · \
                 GAN runs: discriminator loss above, generator loss below",
            )
            .weak()
            .small(),
        );
        let half = (ui.available_height() / 2.0 - 24.0).max(120.0);
        let log = self.log_loss;
        let x_label = match self.x {
            XAxis::Step => "step",
            XAxis::Epoch => "epoch",
            XAxis::Images => "images",
        };
        let mut loss_lines = Vec::new();
        let mut acc_lines = Vec::new();
        let mut val_items = Vec::new();
        for r in &mut lab.runs {
            let mut h = std::mem::take(&mut r.history);
            loss_lines.extend(self.train_lines(
                r,
                &mut h.train_loss,
                log,
                "loss",
                LineStyle::Solid,
            ));
            // The GAN's second curve is its generator loss, a loss like the first.
            acc_lines.extend(self.train_lines(r, &mut h.train_acc, false, "acc", LineStyle::Solid));
            if !h.val_loss.is_empty() {
                val_items.push((
                    self.val_items(r, &h.val_loss, log, "loss"),
                    self.val_items(r, &h.val_acc, false, "acc"),
                ));
            }
            r.history = h;
        }
        let (val_loss, val_acc): (Vec<_>, Vec<_>) = val_items.into_iter().unzip();
        ui.label(if log { "loss (log10)" } else { "loss" });
        Plot::new("curves-loss")
            .height(half)
            .legend(Legend::default())
            .x_axis_label(x_label)
            .show(ui, |p| {
                for l in loss_lines {
                    p.line(l);
                }
                for (l, pts) in val_loss {
                    p.line(l);
                    p.points(pts);
                }
            });
        ui.label("accuracy (GAN runs: generator loss)");
        Plot::new("curves-acc")
            .height(half)
            .legend(Legend::default())
            .x_axis_label(x_label)
            .include_y(0.0)
            .include_y(1.0)
            .show(ui, |p| {
                for l in acc_lines {
                    p.line(l);
                }
                for (l, pts) in val_acc {
                    p.line(l);
                    p.points(pts);
                }
            });
        export
    }
}
