//! Where a run looks: Grad-CAM, the input gradient or SmoothGrad of one image (a validation
//! image chosen in the confusion view, or a dropped one) over the image, with the layer, the
//! class, the opacity and the randomised-weights sanity check to choose. One explanation is
//! in flight at a time; it follows the run as it trains.

use anyhow::Result;
use gpu_nn::nn::Module;

use crate::app::lab::Lab;
use crate::app::pictures::Textures;
use crate::core::explain::{
    Maps, Method, PendingMaps, Request, Target, cam_layers, explain, overlay, upsample,
};
use crate::core::summary::summarise;

const INFO: &str = "Grad-CAM (Selvaraju et al. 2017): the class score's gradient with respect to \
a layer's feature maps A, averaged over each map, weighs the maps: ReLU(sum_c alpha_c A_c), \
enlarged to the image. Deeper layers see more of the image but more coarsely. The input \
gradient shows which pixels would change the score most; SmoothGrad averages it over 16 noisy \
copies of the image to calm it. Randomise weights (Adebayo et al. 2018): the same map from a \
freshly initialised copy of the model. A map that looks the same there explains the image, \
not the model.";

/// Seconds between explanations of a run that is training.
const REFRESH_S: f64 = 1.0;

/// What one explanation was asked for.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    run: u64,
    image: String,
    step: u64,
    method: Method,
    layer: String,
    class: Option<usize>,
    randomised: bool,
}

/// The panel's settings and its latest map.
pub struct SaliencyPanel {
    /// How.
    pub method: Method,
    /// Grad-CAM's layer (None: the run's last convolutional stage).
    pub layer: Option<String>,
    /// The class explained (None: the predicted one).
    pub class: Option<usize>,
    /// Opacity of the map over the image.
    pub opacity: f32,
    /// Explain a freshly initialised copy of the model instead.
    pub randomised: bool,
    layers: Option<(u64, Vec<String>, Option<String>)>,
    twin: Option<(u64, Box<dyn Module>)>,
    pending: Option<(Key, PendingMaps)>,
    /// The latest map and what it was asked for.
    latest: Option<(Key, Maps)>,
    asked_at: f64,
    /// What the overlay texture shows: (what was asked, opacity).
    drawn: Option<(Key, f32)>,
}

impl Default for SaliencyPanel {
    fn default() -> Self {
        Self {
            method: Method::GradCam,
            layer: None,
            class: None,
            opacity: 0.5,
            randomised: false,
            layers: None,
            twin: None,
            pending: None,
            latest: None,
            asked_at: f64::NEG_INFINITY,
            drawn: None,
        }
    }
}

/// The image the panel explains.
pub struct Subject<'a> {
    /// Names it (a new name is a new image).
    pub key: String,
    /// The model's input (C*H*W, normalised).
    pub input: std::borrow::Cow<'a, [f32]>,
    /// The same as the user sees it, one pixel per H*W.
    pub pixels: Vec<[u8; 3]>,
}

impl SaliencyPanel {
    /// The latest map's class and the map at the input's size, if one is back.
    pub fn latest(&self) -> Option<(usize, &[f32], (usize, usize))> {
        self.latest
            .as_ref()
            .and_then(|(_, m)| Some((*m.classes.first()?, m.maps.first()?.as_slice(), m.size)))
    }

    /// Drops what belongs to removed runs (the randomised twin holds GPU memory).
    pub fn forget_removed(&mut self, lab: &Lab) {
        let gone = |id: u64| lab.get(id).is_none();
        if self.twin.as_ref().is_some_and(|t| gone(t.0)) {
            self.twin = None;
        }
        if self.pending.as_ref().is_some_and(|(k, _)| gone(k.run)) {
            self.pending = None;
        }
        if self.latest.as_ref().is_some_and(|(k, _)| gone(k.run)) {
            self.latest = None;
        }
    }

    /// True while the randomised twin of a run is held.
    pub fn has_twin(&self) -> bool {
        self.twin.is_some()
    }

    /// True while an explanation is being computed.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    fn key(&self, lab: &Lab, run: u64, image: &str) -> Option<Key> {
        let r = lab.get(run)?;
        let layer = match self.method {
            Method::GradCam => self
                .layer
                .clone()
                .or_else(|| self.layers.as_ref().and_then(|l| l.2.clone()))?,
            _ => String::new(),
        };
        Some(Key {
            run,
            image: image.to_string(),
            step: if self.randomised { 0 } else { r.steps() },
            method: self.method,
            layer,
            class: self.class,
            randomised: self.randomised,
        })
    }

    /// Collects what came back and asks for a new map when the settings, the image or the
    /// run's weights changed (never waits).
    pub fn advance(&mut self, lab: &Lab, run: u64, subject: &Subject<'_>, now: f64) -> Result<()> {
        if let Some((k, p)) = &mut self.pending
            && let Some(m) = p.try_take()?
        {
            self.latest = Some((k.clone(), m));
            self.pending = None;
        }
        let Some(r) = lab.get(run) else { return Ok(()) };
        let Some(c) = r.classifier() else {
            return Ok(());
        };
        if self.layers.as_ref().is_none_or(|l| l.0 != run) {
            let (names, default) = cam_layers(&summarise(c.gpu(), c.net.as_ref(), c.spec.input)?);
            self.layer = self.layer.take().filter(|l| names.contains(l));
            self.layers = Some((run, names, default));
            self.twin = None;
        }
        let Some(key) = self.key(lab, run, &subject.key) else {
            return Ok(());
        };
        let latest_key = self.latest.as_ref().map(|(k, _)| k);
        let only_weights_changed = latest_key.is_some_and(|k| {
            Key {
                step: k.step,
                ..key.clone()
            } == *k
        });
        let wanted = latest_key != Some(&key)
            && self.pending.is_none()
            && (!only_weights_changed || now - self.asked_at >= REFRESH_S);
        if !wanted {
            return Ok(());
        }
        let [ch, h, w] = c.spec.input;
        if subject.input.len() != ch * h * w {
            return Ok(());
        }
        let target = match (self.class, self.randomised) {
            (Some(k), _) => Target::Class(k),
            // The twin explains what the trained model predicted.
            (None, true) => match self
                .latest
                .as_ref()
                .filter(|(k, _)| !k.randomised && k.run == run && k.image == subject.key)
            {
                Some((_, m)) => Target::PerImage(m.classes.clone()),
                None => Target::Predicted,
            },
            (None, false) => Target::Predicted,
        };
        let req = Request {
            method: self.method,
            layer: key.layer.clone(),
            target,
            seed: key.step,
        };
        let net: &dyn Module = if self.randomised {
            if self.twin.as_ref().is_none_or(|t| t.0 != run) {
                let seed = c.config.seed.wrapping_add(0x5eed);
                self.twin = Some((run, c.spec.build(c.gpu(), seed)?));
            }
            match &self.twin {
                Some((_, t)) => t.as_ref(),
                None => return Ok(()),
            }
        } else {
            c.net.as_ref()
        };
        let p = explain(c.gpu(), net, &subject.input, [1, ch, h, w], &req)?;
        self.pending = Some((key, p));
        self.asked_at = now;
        Ok(())
    }

    /// Draws the controls and the map over the image.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &Lab,
        run: u64,
        subject: &Subject<'_>,
        textures: &mut Textures,
    ) {
        let Some(r) = lab.get(run) else { return };
        let names = &r.data.class_names;
        let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
        ui.strong("Where the run looks");
        crate::app::views::info(ui, "saliency", INFO);
        ui.horizontal_wrapped(|ui| {
            egui::ComboBox::from_id_salt("saliency_method")
                .selected_text(method_name(self.method))
                .show_ui(ui, |ui| {
                    for m in [Method::GradCam, Method::InputGradient, Method::SmoothGrad] {
                        ui.selectable_value(&mut self.method, m, method_name(m));
                    }
                });
            if self.method == Method::GradCam
                && let Some((_, layers, default)) = &self.layers
            {
                let shown = self.layer.clone().or(default.clone()).unwrap_or_default();
                egui::ComboBox::from_id_salt("saliency_layer")
                    .selected_text(format!("layer {shown}"))
                    .show_ui(ui, |ui| {
                        for l in layers {
                            let is_default = default.as_ref() == Some(l);
                            let text = if is_default {
                                format!("{l} (last stage)")
                            } else {
                                l.clone()
                            };
                            if ui.selectable_label(shown == *l, text).clicked() {
                                self.layer = (!is_default).then(|| l.clone());
                            }
                        }
                    });
            }
            egui::ComboBox::from_id_salt("saliency_class")
                .selected_text(match self.class {
                    Some(k) => format!("class {}", name(k)),
                    None => "predicted class".into(),
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.class, None, "predicted class");
                    for k in 0..names.len() {
                        ui.selectable_value(&mut self.class, Some(k), format!("class {}", name(k)));
                    }
                });
            ui.add(egui::Slider::new(&mut self.opacity, 0.0..=1.0).text("opacity"));
            ui.checkbox(&mut self.randomised, "randomise weights");
        });
        let Some((key, m)) = &self.latest else {
            ui.spinner();
            return;
        };
        if key.run != run || key.image != subject.key {
            ui.spinner();
            return;
        }
        let (Some(map), Some(&class)) = (m.maps.first(), m.classes.first()) else {
            return;
        };
        let [_, h, w] = r.data.train.shape;
        if subject.pixels.len() != h * w {
            return;
        }
        let shows = Some((key.clone(), self.opacity));
        if self.drawn != shows || textures.get("saliency").is_none() {
            let up = upsample(map, m.size, (h, w));
            let mixed = overlay(&subject.pixels, &up, self.opacity);
            let img = egui::ColorImage::new(
                [w, h],
                mixed
                    .iter()
                    .map(|p| egui::Color32::from_rgb(p[0], p[1], p[2]))
                    .collect(),
            );
            textures.set(ui.ctx(), "saliency", img);
            self.drawn = shows;
        }
        ui.horizontal(|ui| {
            if let Some(t) = textures.get("saliency") {
                let side = 224.0f32.max(w as f32);
                ui.add(
                    egui::Image::new(t)
                        .fit_to_exact_size(egui::vec2(side, side * h as f32 / w as f32)),
                );
            }
            ui.vertical(|ui| {
                ui.label(format!(
                    "{} of class {}",
                    method_name(m.method),
                    name(class)
                ));
                if m.method == Method::GradCam {
                    ui.label(format!("at {} ({}x{} maps)", key.layer, m.size.0, m.size.1));
                }
                ui.label(if key.randomised {
                    "weights: randomised (the sanity check)".to_string()
                } else {
                    format!("weights at step {}", key.step)
                });
                if self.busy() {
                    ui.spinner();
                }
            });
        });
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::GradCam => "Grad-CAM",
        Method::InputGradient => "input gradient",
        Method::SmoothGrad => "SmoothGrad",
    }
}
