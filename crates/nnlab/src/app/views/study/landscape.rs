//! Loss landscapes of runs side by side (Li et al. 2018): the loss along the line from
//! the initial to the trained weights, and over a plane of two filter-normalised random
//! directions through the trained weights, computed on the GPU a few points a frame.

use std::collections::BTreeMap;

use anyhow::Result;
use egui::{Rect, Sense, pos2, vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints};
use gpu_nn::Tensor;
use gpu_nn::nn::{self, Module, PendingState};

use super::{info, viridis};
use crate::app::lab::{Lab, color};
use crate::core::landscape::Landscape;

const INFO: &str = "For a run, at the weights it has now (theta) and at its initial weights \
(theta0, rebuilt from its seed): the training loss on one fixed batch of 128 images (batch \
norm on the batch's statistics) along the line theta0 + t (theta - theta0), t from -0.25 to \
1.25, and over the plane theta + a d1 + b d2, a and b in [-1, 1], where d1 and d2 are random \
Gaussian directions rescaled filter by filter to the norms of the trained filters (biases \
and batch-norm parameters left out). The plane is drawn as log10 loss in 12 colour bands, \
whose edges are its contours.\n\
Look for: without skip connections a deep net's surface turns chaotic and non-convex; with \
them it is a wide, smooth basin around the trained weights. Reproduces Li, Xu, Taylor, \
Studer and Goldstein 2018, 'Visualizing the Loss Landscape of Neural Nets', Fig. 5 \
(ResNet-56 with and without skips).";

/// A landscape being prepared (weights being read back) or computed.
enum Job {
    Reading {
        theta: PendingState,
        theta0: PendingState,
        got: (Option<nn::HostState>, Option<nn::HostState>),
        scratch: Box<dyn Module>,
        batch: (Tensor, Tensor),
        _fresh: Box<dyn Module>,
    },
    Computing(Box<Landscape>),
}

/// The view's state: a landscape per run.
pub struct LandscapeView {
    jobs: BTreeMap<u64, (String, Job)>,
    /// Grid points a side.
    pub n: usize,
    /// Why the last landscape could not start.
    pub error: Option<String>,
}

impl LandscapeView {
    /// A 21x21 grid on a GPU, 11x11 on a CPU driver.
    pub fn new(cpu: bool) -> Self {
        Self {
            jobs: BTreeMap::new(),
            n: if cpu { 11 } else { 21 },
            error: None,
        }
    }

    /// Starts the landscape of run `id` at its current weights.
    pub fn compute(&mut self, lab: &mut Lab, id: u64) -> Result<()> {
        let Some(run) = lab.get(id) else {
            return Ok(());
        };
        let Some(c) = run.classifier() else {
            return Ok(());
        };
        let gpu = c.gpu().clone();
        let fresh = c.spec.build(&gpu, c.config.seed)?;
        let scratch = c.spec.build(&gpu, c.config.seed)?;
        let n = run.data.train.len().min(128);
        let idx: Vec<usize> = (0..n).collect();
        let batch = run.data.train.batch(&gpu, &idx)?;
        let job = Job::Reading {
            theta: nn::read_state(c.net.as_ref())?,
            theta0: nn::read_state(fresh.as_ref())?,
            got: (None, None),
            scratch,
            batch,
            _fresh: fresh,
        };
        self.jobs.insert(id, (run.name.clone(), job));
        Ok(())
    }

    /// Advances every landscape: weights read back, points submitted and collected.
    pub fn advance(&mut self, lab: &Lab) -> Result<()> {
        self.jobs.retain(|id, _| lab.get(*id).is_some());
        let per_frame = if lab.gpu().adapter_info().device_type == gpu_nn::wgpu::DeviceType::Cpu {
            1
        } else {
            8
        };
        let n = self.n;
        for (_, job) in self.jobs.values_mut() {
            if let Job::Reading {
                theta, theta0, got, ..
            } = job
            {
                if got.0.is_none() {
                    got.0 = theta.try_take()?;
                }
                if got.1.is_none() {
                    got.1 = theta0.try_take()?;
                }
            }
            if let Job::Reading {
                got: (Some(t), Some(t0)),
                scratch,
                batch,
                ..
            } = job
            {
                let scratch = std::mem::replace(scratch, Box::new(nn::Sequential::new()));
                let l = Landscape::new(scratch, batch.clone(), t.clone(), t0.clone(), (25, n, 11))?;
                *job = Job::Computing(Box::new(l));
            }
            if let Job::Computing(l) = job {
                l.poll()?;
                if !l.done() {
                    l.submit(per_frame)?;
                }
            }
        }
        Ok(())
    }

    /// True while a landscape is being computed.
    pub fn busy(&self) -> bool {
        self.jobs.values().any(|(_, j)| match j {
            Job::Reading { .. } => true,
            Job::Computing(l) => !l.done(),
        })
    }

    /// Draws a Compute button per classifier run, the line plot and each run's plane.
    pub fn ui(&mut self, ui: &mut egui::Ui, lab: &mut Lab) {
        info(ui, "landscape", INFO);
        let candidates: Vec<(u64, String)> = lab
            .runs
            .iter()
            .filter(|r| r.classifier().is_some())
            .map(|r| (r.id, r.name.clone()))
            .collect();
        if candidates.is_empty() {
            ui.label(
                "No classifier run: add resnet20 and resnet20-plain, train them, then compute.",
            );
            return;
        }
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("grid");
            ui.add(egui::DragValue::new(&mut self.n).range(3..=41))
                .labelled_by(l.id);
            for (id, name) in &candidates {
                if ui.button(format!("Compute {name}")).clicked()
                    && let Err(e) = self.compute(lab, *id)
                {
                    self.error = Some(format!("{e:#}"));
                }
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::LIGHT_RED, e);
        }
        let mut lines = Vec::new();
        for (id, (name, job)) in &self.jobs {
            let Job::Computing(l) = job else {
                ui.label(format!("{name}: reading its weights..."));
                continue;
            };
            let (done, total) = l.progress();
            if done < total {
                ui.add(
                    egui::ProgressBar::new(done as f32 / total as f32)
                        .text(format!("{name}: {done}/{total} points")),
                );
            }
            let pts: PlotPoints = l
                .line
                .iter()
                .map(|(t, v)| [f64::from(*t), f64::from(*v)])
                .collect();
            lines.push(Line::new(name.clone(), pts).color(color(*id)));
        }
        if self.jobs.is_empty() {
            return;
        }
        ui.label("loss on the batch from the initial (t = 0) to the current weights (t = 1)");
        Plot::new("landscape-line")
            .legend(Legend::default())
            .height(220.0)
            .x_axis_label("t")
            .show(ui, |p| {
                for l in lines {
                    p.line(l);
                }
            });
        // One colour scale for every plane: log10 loss, in bands.
        let all = self
            .jobs
            .values()
            .filter_map(|(_, j)| match j {
                Job::Computing(l) => Some(l.grid.iter().copied()),
                Job::Reading { .. } => None,
            })
            .flatten()
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(f32::log10);
        let (lo, hi) = all.fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
        if lo > hi {
            return;
        }
        ui.label(format!(
            "the plane through the current weights (centre): log10 loss from {lo:.2} (dark) to \
             {hi:.2} (yellow), 12 bands"
        ));
        ui.horizontal_wrapped(|ui| {
            for (name, job) in self.jobs.values() {
                let Job::Computing(l) = job else { continue };
                ui.vertical(|ui| {
                    ui.label(name);
                    let n = l.alphas.len();
                    let side = 260.0;
                    let (rect, _) = ui.allocate_exact_size(vec2(side, side), Sense::hover());
                    let cell = side / n as f32;
                    let painter = ui.painter_at(rect);
                    for j in 0..n {
                        for i in 0..n {
                            let v = l.grid[j * n + i];
                            if !v.is_finite() {
                                continue;
                            }
                            let t = (v.max(1e-30).log10() - lo) / (hi - lo).max(1e-6);
                            let band = (t * 12.0).floor().min(11.0) / 11.0;
                            // Rows from the top: b = +1 at the top, as in a plot.
                            let min = pos2(
                                rect.left() + i as f32 * cell,
                                rect.bottom() - (j + 1) as f32 * cell,
                            );
                            painter.rect_filled(
                                Rect::from_min_size(min, vec2(cell + 0.5, cell + 0.5)),
                                0.0,
                                viridis(band),
                            );
                        }
                    }
                    painter.circle_stroke(
                        rect.center(),
                        3.0,
                        egui::Stroke::new(1.5, egui::Color32::WHITE),
                    );
                });
            }
        });
    }
}
