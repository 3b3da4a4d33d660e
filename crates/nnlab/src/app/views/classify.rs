//! Classify a dropped image, or the webcam's frames in the browser, with the selected
//! classifier run: shown as the model sees it (for digit models grey, 28x28, inverted if on a
//! light background; for a run on an image folder resized and centre-cropped to its input)
//! with the top-3 classes.

use anyhow::Result;
use egui::Color32;

use std::sync::Arc;

use crate::app::data::DataChoice;
use crate::app::dropped::{self, Prepared, Target};
use crate::app::lab::Lab;
use crate::app::pictures::Textures;
use crate::app::run::{PendingInspect, Run};
use crate::app::views::FeaturesView;
use crate::app::views::saliency::{SaliencyPanel, Subject};

/// The view's own state: the last dropped image and its prediction.
#[derive(Default)]
pub struct ClassifyView {
    name: String,
    bytes: Option<Arc<[u8]>>,
    prepared: Option<Prepared>,
    /// The run that classified it, and its top-3 (class name, probability).
    pub top3: Option<(u64, Vec<(String, f32)>)>,
    /// The prediction is to be (re)computed.
    wanted: bool,
    pending: Option<(u64, PendingInspect)>,
    /// The message about the last dropped file, if it could not be used.
    pub error: Option<String>,
    /// Images decoded so far (of many dropped at once, only the last is).
    pub decoded: u64,
    /// Where the run looks in the image.
    pub saliency: SaliencyPanel,
    /// The camera while it runs (browser).
    #[cfg(target_arch = "wasm32")]
    webcam: Option<crate::app::webcam::Webcam>,
    /// Why the camera gave no frames.
    webcam_error: Option<String>,
    /// Webcam frames taken and classified.
    webcam_frames: (u64, u64),
}

/// How a dropped image becomes `run`'s input: like its training images.
fn target(run: Option<&Run>) -> Target {
    match run {
        Some(r) => Target {
            shape: r.data.train.shape,
            mean: r.data.mean.clone(),
            std: r.data.std.clone(),
            digits: !matches!(r.data.choice, DataChoice::Folder { .. }),
        },
        None => {
            let (m, s) = crate::data::Bundled::Mnist.normalisation();
            Target {
                shape: [1, 28, 28],
                mean: vec![m],
                std: vec![s],
                digits: true,
            }
        }
    }
}

impl ClassifyView {
    /// Prepares a file's bytes for the classifier (what a drop does). The camera, if on,
    /// stops with the state this replaces: a dropped image takes over from it.
    pub fn set_image(&mut self, name: &str, bytes: &[u8], lab: &Lab, selected: Option<u64>) {
        *self = ClassifyView {
            name: name.to_string(),
            decoded: self.decoded + 1,
            saliency: std::mem::take(&mut self.saliency),
            webcam_frames: self.webcam_frames,
            ..ClassifyView::default()
        };
        let run = FeaturesView::run_id(lab, selected).and_then(|id| lab.get(id));
        self.bytes = Some(bytes.into());
        self.prepare(&target(run));
    }

    /// (Re)prepares the dropped bytes for `t`.
    fn prepare(&mut self, t: &Target) {
        let Some(bytes) = &self.bytes else { return };
        match dropped::prepare(bytes, &self.name, t) {
            Ok(p) => {
                self.prepared = Some(p);
                self.wanted = true;
            }
            Err(e) => {
                self.prepared = None;
                self.error = Some(format!("{e:#}"));
            }
        }
    }

    /// A message instead of an image.
    pub fn set_error(&mut self, msg: String) {
        *self = ClassifyView {
            error: Some(msg),
            decoded: self.decoded,
            saliency: std::mem::take(&mut self.saliency),
            webcam_frames: self.webcam_frames,
            ..ClassifyView::default()
        };
    }

    /// Starts the camera (browser): its frames are classified one after another.
    #[cfg(target_arch = "wasm32")]
    pub fn start_webcam(&mut self) {
        match crate::app::webcam::Webcam::start() {
            Ok(w) => {
                self.webcam = Some(w);
                self.webcam_error = None;
            }
            Err(e) => self.webcam_error = Some(format!("{e:#}")),
        }
    }

    /// Takes the camera's next frame as the image when the last one has been classified.
    #[cfg(target_arch = "wasm32")]
    fn webcam_frame(&mut self, lab: &Lab, selected: Option<u64>) {
        let Some(cam) = &self.webcam else { return };
        if let Some(e) = cam.error() {
            self.webcam_error = Some(e);
            self.webcam = None;
            return;
        }
        if self.pending.is_some() || self.wanted {
            return;
        }
        let run = FeaturesView::run_id(lab, selected).and_then(|id| lab.get(id));
        let t = target(run);
        // Twice the model's side: the preparation then averages, as for a photo.
        let side = (2 * t.shape[1].max(t.shape[2])).clamp(32, 448) as u32;
        let Some(rgba) = cam.frame(side) else { return };
        match dropped::prepare_rgba(rgba, side, &t) {
            Ok(p) => {
                self.name = "webcam".to_string();
                self.bytes = None;
                self.prepared = Some(p);
                self.wanted = true;
                self.decoded += 1;
                self.webcam_frames.0 += 1;
                self.error = None;
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }

    /// The camera's state for the page (`#nnlab-state`).
    pub fn webcam_state(&self) -> serde_json::Value {
        #[cfg(target_arch = "wasm32")]
        let on = self.webcam.as_ref().map(|w| w.live());
        #[cfg(not(target_arch = "wasm32"))]
        let on: Option<bool> = None;
        serde_json::json!({
            "on": on,
            "frames": self.webcam_frames.0,
            "classified": self.webcam_frames.1,
            "error": self.webcam_error,
        })
    }

    /// Collects a finished prediction (never waits).
    pub fn poll(&mut self, lab: &Lab) -> Result<()> {
        self.saliency.forget_removed(lab);
        if let Some((id, p)) = &mut self.pending
            && let Some(insp) = p.try_take()?
        {
            let names = lab
                .get(*id)
                .map(|r| r.data.class_names.clone())
                .unwrap_or_default();
            // Five for ImageNet-sized heads (as torchvision reports), three otherwise.
            let k = if insp.probs.len() > 100 { 5 } else { 3 };
            let top = dropped::top_k(&insp.probs, k)
                .into_iter()
                .map(|(c, p)| (names.get(c).cloned().unwrap_or_else(|| c.to_string()), p))
                .collect();
            self.top3 = Some((*id, top));
            self.pending = None;
            if self.name == "webcam" {
                self.webcam_frames.1 += 1;
            }
        }
        Ok(())
    }

    /// Submits the prediction when an image waits for one, or when the run changed.
    pub fn maybe_classify(&mut self, lab: &mut Lab, selected: Option<u64>) -> Result<()> {
        let Some(id) = FeaturesView::run_id(lab, selected) else {
            return Ok(());
        };
        let changed = self.top3.as_ref().is_some_and(|(r, _)| *r != id);
        if self.pending.is_some() || !(self.wanted || changed) {
            return Ok(());
        }
        let t = target(lab.get(id));
        if self.prepared.as_ref().is_some_and(|p| p.target != t) {
            self.prepare(&t);
        }
        let (Some(p), Some(run)) = (&self.prepared, lab.get_mut(id)) else {
            return Ok(());
        };
        // A webcam frame made for another run: the next frame will fit.
        if p.target != t {
            self.wanted = false;
            return Ok(());
        }
        self.pending = Some((id, run.inspect(&p.input)?));
        self.wanted = false;
        Ok(())
    }

    /// Draws the image as the model sees it, its top-3 classes and where the run looks.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &Lab,
        selected: Option<u64>,
        textures: &mut Textures,
    ) -> Result<()> {
        ui.heading("Classify an image");
        ui.label("Drop an image file on the window: the selected classifier run labels it.");
        #[cfg(target_arch = "wasm32")]
        {
            let label = if self.webcam.is_some() {
                "Stop webcam"
            } else {
                "Webcam"
            };
            let clicked = ui
                .button(label)
                .on_hover_text("Classify the camera's picture, frame after frame")
                .clicked();
            // Stop if it ran, start if not.
            if clicked && self.webcam.take().is_none() {
                self.start_webcam();
            }
            self.webcam_frame(lab, selected);
            if self.webcam.is_some() {
                ui.ctx().request_repaint();
            }
        }
        if let Some(e) = &self.webcam_error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        if let Some(e) = &self.error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        let Some(p) = &self.prepared else {
            return Ok(());
        };
        ui.label(format!(
            "{} ({}x{}{})",
            self.name,
            p.original.0,
            p.original.1,
            if p.inverted { ", inverted" } else { "" }
        ));
        let key = format!("drop:{}:{}:{:?}", self.decoded, self.name, p.target.shape);
        if textures.get(&key).is_none() {
            textures.clear_prefix("drop:");
            textures.set(ui.ctx(), &key, p.color_image());
        }
        ui.horizontal(|ui| {
            if let Some(t) = textures.get(&key) {
                ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(84.0, 84.0)));
            }
            ui.vertical(|ui| match &self.top3 {
                Some((_, top)) => {
                    for (name, p) in top {
                        ui.label(format!("{name}: {:.1}%", p * 100.0));
                    }
                }
                None => {
                    ui.spinner();
                }
            });
        });
        let Some(id) = FeaturesView::run_id(lab, selected)
            .filter(|&id| lab.get(id).is_some_and(|r| target(Some(r)) == p.target))
        else {
            return Ok(());
        };
        ui.separator();
        let subject = Subject {
            key: format!("drop:{}:{}", self.decoded, self.name),
            input: std::borrow::Cow::Borrowed(&p.input),
            pixels: p
                .color_image()
                .pixels
                .iter()
                .map(|c| [c.r(), c.g(), c.b()])
                .collect(),
        };
        let now = ui.input(|i| i.time);
        self.saliency.advance(lab, id, &subject, now)?;
        self.saliency.ui(ui, lab, id, &subject, textures);
        Ok(())
    }
}
