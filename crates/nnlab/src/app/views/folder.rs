//! An image folder on its way into the new-run form: decoded a few files per frame (the
//! page keeps drawing), then shown before anything trains: classes, images per class,
//! thumbnails as the model will see them, the input size, and the files that were skipped.

use std::sync::Arc;

use egui::{Color32, RichText};

use crate::app::data::{Data, DataChoice};
use crate::app::lab::Lab;
use crate::app::views::confusion::picture;
use crate::folder::{FolderFiles, FolderLoad};
use crate::images::Preprocess;

/// Files decoded per frame: a frame stays short even in the browser, where decoding runs
/// on the page's one thread.
const FILES_PER_FRAME: usize = 6;
/// Thumbnails shown per class.
const THUMBS: usize = 4;
/// Classes shown with thumbnails (the rest are counted).
const CLASSES_SHOWN: usize = 12;
/// Skipped files listed by name.
const SKIPPED_SHOWN: usize = 50;

/// An image folder chosen for the next run.
pub struct FolderImport {
    /// Its files.
    pub files: Arc<FolderFiles>,
    shape: Option<[usize; 3]>,
    load: Option<FolderLoad>,
    /// The decoded images, held here until a run holds them too.
    pub data: Option<Arc<Data>>,
    /// Why it cannot be used.
    pub error: Option<String>,
    thumbs: Vec<(usize, Vec<egui::TextureHandle>)>,
}

impl FolderImport {
    /// A folder to decode once the form says at which size.
    pub fn new(files: FolderFiles) -> Self {
        Self {
            files: Arc::new(files),
            shape: None,
            load: None,
            data: None,
            error: None,
            thumbs: Vec::new(),
        }
    }

    /// The data choice of this folder at `shape`.
    pub fn choice(&self, shape: [usize; 3]) -> DataChoice {
        DataChoice::folder(&self.files, shape)
    }

    /// True while files are still being decoded.
    pub fn decoding(&self) -> bool {
        self.load.is_some()
    }

    /// Decodes at `shape`, starting over when the size changed; a few files per call.
    /// Once done, the data goes to the lab's cache so that a run added from the form
    /// uses it.
    pub fn advance(&mut self, shape: [usize; 3], lab: &mut Lab) {
        if self.shape != Some(shape) {
            self.shape = Some(shape);
            self.data = None;
            self.error = None;
            self.thumbs.clear();
            self.load = match Preprocess::default_for(shape)
                .and_then(|p| FolderLoad::new(Arc::clone(&self.files), p))
            {
                Ok(l) => Some(l),
                Err(e) => {
                    self.error = Some(format!("{e:#}"));
                    None
                }
            };
        }
        let Some(load) = &mut self.load else { return };
        if !load.step(FILES_PER_FRAME) {
            return;
        }
        let Some(load) = self.load.take() else { return };
        match load.finish() {
            Ok(f) => {
                let d = Arc::new(Data::from_folder(&self.choice(shape), f));
                lab.adopt_data(&d);
                self.data = Some(d);
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }

    /// What the page state says about it.
    pub fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.files.name,
            "decoding": self.load.as_ref().map(|l| l.progress()),
            "error": self.error,
            "shape": self.data.as_ref().map(|d| d.train.shape),
            "classes": self.data.as_ref().map(|d| d.class_names.clone()),
            "counts": self.data.as_ref().map(|d| d.counts()),
            "skipped": self.data.as_ref().map(|d| d.skipped.iter().map(|s| s.0.clone()).collect::<Vec<_>>()),
        })
    }

    /// Draws what was found.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        ui.group(|ui| {
            ui.label(RichText::new(format!("Image folder {}", self.files.name)).strong());
            if let Some(e) = &self.error {
                ui.colored_label(Color32::LIGHT_RED, e);
                return;
            }
            if let Some(l) = &self.load {
                let (done, all) = l.progress();
                ui.add(
                    egui::ProgressBar::new(done as f32 / all.max(1) as f32)
                        .text(format!("decoding {done} / {all} images")),
                );
                ui.ctx().request_repaint();
                return;
            }
            let Some(d) = self.data.clone() else { return };
            let [c, h, w] = d.train.shape;
            ui.label(format!(
                "{} classes · {} train / {} val images · the model sees {c}x{h}x{w}",
                d.class_names.len(),
                d.train.len(),
                d.val.len()
            ));
            ui.label(
                RichText::new(format!("validation: {}", d.split))
                    .weak()
                    .small(),
            );
            self.make_thumbs(ui.ctx(), &d);
            let counts = d.counts();
            egui::Grid::new("folder-classes")
                .striped(true)
                .show(ui, |ui| {
                    ui.label(RichText::new("class").weak());
                    ui.label(RichText::new("train").weak());
                    ui.label(RichText::new("val").weak());
                    ui.end_row();
                    for (k, thumbs) in &self.thumbs {
                        ui.label(&d.class_names[*k]);
                        ui.label(counts[*k].0.to_string());
                        ui.label(counts[*k].1.to_string());
                        ui.horizontal(|ui| {
                            for t in thumbs {
                                ui.add(
                                    egui::Image::new(t).fit_to_exact_size(egui::vec2(40.0, 40.0)),
                                );
                            }
                        });
                        ui.end_row();
                    }
                });
            if d.class_names.len() > CLASSES_SHOWN {
                ui.label(format!(
                    "and {} more classes",
                    d.class_names.len() - CLASSES_SHOWN
                ));
            }
            if let Some(w) = &d.warning {
                ui.colored_label(Color32::YELLOW, w);
            }
            if !d.skipped.is_empty() {
                let n = d.skipped.len();
                let files = if n == 1 { "file" } else { "files" };
                egui::CollapsingHeader::new(format!("{n} {files} skipped"))
                    .id_salt("folder-skipped")
                    .show(ui, |ui| {
                        for (p, why) in d.skipped.iter().take(SKIPPED_SHOWN) {
                            ui.label(RichText::new(format!("{p}: {why}")).small());
                        }
                    });
            }
        });
    }

    fn make_thumbs(&mut self, ctx: &egui::Context, d: &Data) {
        if !self.thumbs.is_empty() {
            return;
        }
        let mut first: Vec<Vec<usize>> = vec![Vec::new(); d.class_names.len()];
        for (i, &l) in d.train.labels.iter().enumerate() {
            let f = &mut first[usize::from(l)];
            if f.len() < THUMBS {
                f.push(i);
            }
        }
        self.thumbs = first
            .into_iter()
            .enumerate()
            .take(CLASSES_SHOWN)
            .map(|(k, idx)| {
                let t = idx
                    .into_iter()
                    .map(|i| {
                        ctx.load_texture(
                            format!("folder-thumb-{k}-{i}"),
                            picture(&d.train, i),
                            egui::TextureOptions::LINEAR,
                        )
                    })
                    .collect();
                (k, t)
            })
            .collect();
    }
}
