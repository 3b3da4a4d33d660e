//! What the selected run gets wrong: the confusion matrix of its latest validation (rows
//! the true class, columns the prediction), each class's accuracy, and the images of a
//! clicked cell with their top-3 probabilities.

use anyhow::Result;
use egui::{Color32, RichText};

use crate::app::lab::Lab;
use crate::app::pictures::Textures;
use crate::app::run::{PendingProbs, Run};
use crate::app::views::FeaturesView;
use crate::app::views::saliency::{SaliencyPanel, Subject};
use crate::data::Dataset;

/// Images of a cell shown at once.
pub const MAX_SHOWN: usize = 48;

const INFO: &str = "Every validation image is counted once: its row is the class it is, its \
column the class the run predicted (the largest logit, in eval mode). The diagonal holds the \
correct ones; off the diagonal, what the model confuses with what. Normalising the rows shows \
each class's recall. Click a cell to see its images.";

/// A validation image and, once back, its top-3 (class, probability).
pub type Shown = (usize, Option<Vec<(usize, f32)>>);

/// The view's state: the chosen cell and its images' probabilities.
#[derive(Default)]
pub struct ConfusionView {
    /// Divide each row by its total.
    pub normalise: bool,
    /// The chosen cell: (run, step validated, true class, predicted class).
    pub cell: Option<(u64, u64, usize, usize)>,
    /// The cell's validation images (at most [`MAX_SHOWN`]) and, once back, their top-3.
    pub shown: Vec<Shown>,
    /// Images in the cell in all.
    pub in_cell: usize,
    pending: Option<PendingProbs>,
    /// The cell whose pictures are in the texture cache.
    drawn_for: Option<(u64, usize, usize)>,
    /// The validation image opened in the saliency panel.
    pub opened: Option<usize>,
    /// Grad-CAM and the gradients of the opened image.
    pub saliency: SaliencyPanel,
}

/// The validation images of `run` whose label is `t` and prediction `p`.
pub fn cell_images(run: &Run, t: usize, p: usize) -> Vec<usize> {
    let Some(v) = &run.last_val else {
        return Vec::new();
    };
    run.data
        .val
        .labels
        .iter()
        .zip(&v.predicted)
        .enumerate()
        .filter(|(_, (l, q))| usize::from(**l) == t && **q as usize == p)
        .map(|(i, _)| i)
        .collect()
}

fn top3(probs: &[f32]) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    idx.into_iter().take(3).map(|c| (c, probs[c])).collect()
}

/// Validation image `i` of `run` for the saliency panel.
pub fn subject(run: &Run, i: usize) -> Subject<'_> {
    let d = &run.data.val;
    let img = picture(d, i);
    Subject {
        key: format!("val:{i}"),
        input: std::borrow::Cow::Owned(d.input(i)),
        pixels: img.pixels.iter().map(|c| [c.r(), c.g(), c.b()]).collect(),
    }
}

/// Image `i` of `d` as egui pixels, grey or RGB.
pub fn picture(d: &Dataset, i: usize) -> egui::ColorImage {
    crate::app::pictures::color_image(d.image_pixels(i), d.shape)
}

impl ConfusionView {
    /// Chooses cell (t, p) of run `id`'s latest validation and asks for its images' top-3.
    pub fn choose(&mut self, lab: &Lab, id: u64, t: usize, p: usize) -> Result<()> {
        let Some(run) = lab.get(id) else {
            return Ok(());
        };
        let Some(v) = &run.last_val else {
            return Ok(());
        };
        let all = cell_images(run, t, p);
        self.in_cell = all.len();
        self.cell = Some((id, v.step, t, p));
        self.shown = all.iter().take(MAX_SHOWN).map(|&i| (i, None)).collect();
        self.pending = None;
        if !all.is_empty() {
            let idx: Vec<usize> = self.shown.iter().map(|(i, _)| *i).collect();
            self.pending = Some(run.probabilities(&idx)?);
        }
        Ok(())
    }

    /// Collects the cell's probabilities (never waits); forgets a cell of a removed run and
    /// follows a new validation of the cell's run.
    pub fn poll(&mut self, lab: &Lab) -> Result<()> {
        self.saliency.forget_removed(lab);
        if let Some((id, step, t, p)) = self.cell {
            match lab.get(id).and_then(|r| r.last_val.as_ref()) {
                None => {
                    *self = ConfusionView {
                        normalise: self.normalise,
                        ..ConfusionView::default()
                    };
                }
                Some(v) if v.step != step && self.pending.is_none() => {
                    self.choose(lab, id, t, p)?;
                }
                Some(_) => {}
            }
        }
        if let Some(p) = &mut self.pending
            && let Some(rows) = p.try_take()?
        {
            for ((_, top), probs) in self.shown.iter_mut().zip(rows) {
                *top = Some(top3(&probs));
            }
            self.pending = None;
        }
        Ok(())
    }

    /// Draws the matrix of the selected run and the chosen cell's images.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &mut Lab,
        selected: Option<u64>,
        textures: &mut Textures,
    ) -> Result<()> {
        ui.heading("What the run gets wrong");
        crate::app::views::info(ui, "confusion", INFO);
        let Some(id) = FeaturesView::run_id(lab, selected) else {
            ui.label("Add a classifier run to see its confusion matrix.");
            return Ok(());
        };
        let mut validate = false;
        let mut clicked = None;
        {
            let Some(run) = lab.get(id) else {
                return Ok(());
            };
            ui.horizontal(|ui| {
                ui.label(RichText::new(&run.name).strong());
                match &run.last_val {
                    Some(v) => ui.label(format!(
                        "validation at step {}: {} images, accuracy {:.2}%",
                        v.step,
                        v.confusion.total(),
                        100.0 * v.confusion.accuracy()
                    )),
                    None => ui.label("not validated yet"),
                };
                validate = ui.button("Validate now").clicked();
                ui.checkbox(&mut self.normalise, "normalise rows");
            });
            if let Some(v) = &run.last_val {
                clicked = self.matrix(ui, run, &v.confusion);
            }
        }
        // A run not validated yet is validated as soon as its matrix is asked for.
        let unseen = lab
            .get(id)
            .is_some_and(|r| r.last_val.is_none() && !r.validating() && !r.data.val.is_empty());
        if (validate || unseen)
            && let Some(run) = lab.get_mut(id)
        {
            run.start_validation()?;
        }
        if let Some((t, p)) = clicked {
            self.choose(lab, id, t, p)?;
        }
        ui.separator();
        self.cell_ui(ui, lab, textures)?;
        self.opened_ui(ui, lab, id, textures)
    }

    fn matrix(
        &self,
        ui: &mut egui::Ui,
        run: &Run,
        m: &crate::core::Confusion,
    ) -> Option<(usize, usize)> {
        let names = &run.data.class_names;
        let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
        let acc = m.per_class_accuracy();
        let chosen = self
            .cell
            .filter(|c| c.0 == run.id)
            .map(|(_, _, t, p)| (t, p));
        let mut clicked = None;
        ui.label("rows: true class, columns: predicted");
        egui::Grid::new("confusion")
            .spacing([2.0, 2.0])
            .show(ui, |ui| {
                ui.label("");
                for p in 0..m.classes {
                    ui.label(RichText::new(name(p)).small());
                }
                ui.label(RichText::new("accuracy").small());
                ui.end_row();
                for (t, &a) in acc.iter().enumerate() {
                    ui.label(RichText::new(name(t)).small());
                    let row = m.row_total(t).max(1) as f32;
                    for p in 0..m.classes {
                        let n = m.counts[t * m.classes + p];
                        let share = n as f32 / row;
                        let text = if self.normalise {
                            format!("{:.2}", share)
                        } else {
                            n.to_string()
                        };
                        // Correct cells in blue, mistakes in red, by their share of the row.
                        let base = if t == p {
                            Color32::from_rgb(40, 110, 200)
                        } else {
                            Color32::from_rgb(210, 60, 40)
                        };
                        let fill = if n == 0 {
                            Color32::TRANSPARENT
                        } else {
                            base.gamma_multiply(0.15 + 0.85 * share)
                        };
                        let b = egui::Button::new(RichText::new(text).small().monospace())
                            .fill(fill)
                            .selected(chosen == Some((t, p)))
                            .min_size(egui::vec2(34.0, 18.0));
                        let what = format!("true {}, predicted {}: {n} images", name(t), name(p));
                        let r = ui.add(b);
                        // Screen readers (and tests) name the cell, not just its count.
                        r.widget_info(|| {
                            egui::WidgetInfo::labeled(egui::Role::Button, true, &what)
                        });
                        let r = r.on_hover_text(&what);
                        if r.clicked() {
                            clicked = Some((t, p));
                        }
                    }
                    ui.label(if a.is_finite() {
                        format!("{:.1}%", 100.0 * a)
                    } else {
                        "-".into()
                    });
                    ui.end_row();
                }
            });
        clicked
    }

    fn cell_ui(&mut self, ui: &mut egui::Ui, lab: &Lab, textures: &mut Textures) -> Result<()> {
        let Some((id, step, t, p)) = self.cell else {
            ui.label("Click a cell to see its images.");
            return Ok(());
        };
        let Some(run) = lab.get(id) else {
            return Ok(());
        };
        let names = &run.data.class_names;
        let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
        ui.label(format!(
            "true {}, predicted {}: {} images (validation at step {step}){}",
            name(t),
            name(p),
            self.in_cell,
            if self.in_cell > self.shown.len() {
                format!(", the first {} shown", self.shown.len())
            } else {
                String::new()
            }
        ));
        let prefix = format!("cell:{id}:");
        if self.drawn_for != Some((id, t, p)) {
            // Only the shown cell's pictures are kept.
            textures.clear_prefix("cell:");
            self.drawn_for = Some((id, t, p));
        }
        let mut opened = None;
        egui::ScrollArea::vertical()
            .id_salt("cell_images")
            .max_height(260.0)
            .show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    for (i, top) in &self.shown {
                        let key = format!("{prefix}{i}");
                        if textures.get(&key).is_none() {
                            let img = picture(&run.data.val, *i);
                            textures.set(ui.ctx(), &key, img);
                        }
                        ui.vertical(|ui| {
                            if let Some(tex) = textures.get(&key) {
                                let b = egui::Button::image(
                                    egui::Image::new(tex).fit_to_exact_size(egui::vec2(56.0, 56.0)),
                                )
                                .selected(self.opened == Some(*i));
                                let r = ui.add(b);
                                let what = format!("validation image {i}");
                                r.widget_info(|| {
                                    egui::WidgetInfo::labeled(egui::Role::Button, true, &what)
                                });
                                if r.on_hover_text("where the run looks").clicked() {
                                    opened = Some(*i);
                                }
                            }
                            ui.label(RichText::new(format!("#{i}")).small());
                            match top {
                                Some(top) => {
                                    for (c, pr) in top {
                                        ui.label(
                                            RichText::new(format!(
                                                "{} {:.0}%",
                                                name(*c),
                                                100.0 * pr
                                            ))
                                            .small(),
                                        );
                                    }
                                }
                                None => {
                                    ui.spinner();
                                }
                            }
                        });
                    }
                });
            });
        if opened.is_some() {
            self.opened = opened;
        }
        Ok(())
    }

    /// The opened validation image's explanation, for run `id`.
    fn opened_ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &Lab,
        id: u64,
        textures: &mut Textures,
    ) -> Result<()> {
        let Some(run) = lab.get(id) else {
            return Ok(());
        };
        let Some(i) = self.opened.filter(|&i| i < run.data.val.len()) else {
            return Ok(());
        };
        ui.separator();
        let subject = subject(run, i);
        let now = ui.input(|inp| inp.time);
        self.saliency.advance(lab, id, &subject, now)?;
        let names = &run.data.class_names;
        let label = usize::from(run.data.val.labels[i]);
        ui.label(format!(
            "validation image {i}: true class {}",
            names
                .get(label)
                .cloned()
                .unwrap_or_else(|| label.to_string())
        ));
        self.saliency.ui(ui, lab, id, &subject, textures);
        Ok(())
    }
}
