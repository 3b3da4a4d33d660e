//! Files in and out of the app: checkpoints and ONNX exports saved (native: a save dialog
//! and an atomic write; web: a download), checkpoints loaded (native: an open dialog; web: a
//! file pick), and the curves as CSV. Weights are read back from the GPU without blocking,
//! so a save finishes a few frames after it was asked for.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::Result;

use super::lab::Lab;
use super::run::Trainee;
use crate::core::PendingCheckpoint;
use crate::folder::FolderFiles;

/// Where a finished checkpoint goes.
enum Target {
    /// A file, written atomically.
    #[cfg(not(target_arch = "wasm32"))]
    Path(std::path::PathBuf),
    /// A browser download of this name.
    #[cfg(target_arch = "wasm32")]
    Download(String),
}

/// What a save writes once the run's weights are back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The checkpoint (everything needed to continue).
    Checkpoint,
    /// The model as ONNX (eval mode; for Netron, onnxruntime).
    Onnx,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Checkpoint => "safetensors",
            Format::Onnx => "onnx",
        }
    }
}

/// Files picked or dropped whose bytes have arrived: (name, bytes or why not).
pub type Incoming = Rc<RefCell<Vec<(String, Result<Vec<u8>, String>)>>>;

/// Image folders picked, once their files are listed (or read, in the browser).
pub type IncomingFolders = Rc<RefCell<Vec<Result<FolderFiles, String>>>>;

/// Saves in progress, and files on their way in.
#[derive(Default)]
pub struct Files {
    saves: Vec<(u64, PendingCheckpoint, Target, Format)>,
    /// Bytes of picked files, filled asynchronously (the browser reads files that way).
    pub incoming: Incoming,
    /// Image folders picked.
    pub folders: IncomingFolders,
    /// The last thing that happened ("saved ...", or an error), shown in the top bar.
    pub message: Option<String>,
}

impl Files {
    /// Asks where to save run `id` as `format` (native: a dialog) and starts reading its
    /// weights.
    pub fn save(&mut self, lab: &Lab, id: u64, format: Format) -> Result<()> {
        let Some(run) = lab.get(id) else {
            return Ok(());
        };
        let ext = format.extension();
        let name = format!("{}.{ext}", run.file_stem());
        #[cfg(not(target_arch = "wasm32"))]
        {
            let what = match format {
                Format::Checkpoint => "checkpoint",
                Format::Onnx => "ONNX model",
            };
            let Some(path) = rfd::FileDialog::new()
                .set_file_name(&name)
                .add_filter(what, &[ext])
                .save_file()
            else {
                return Ok(());
            };
            self.save_to(lab, id, path, format)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let pending = run.start_checkpoint()?;
            self.saves
                .push((id, pending, Target::Download(name), format));
            Ok(())
        }
    }

    /// Starts saving run `id` as `format` to `path` (native; what the dialog leads to).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_to(
        &mut self,
        lab: &Lab,
        id: u64,
        path: std::path::PathBuf,
        format: Format,
    ) -> Result<()> {
        if let Some(run) = lab.get(id) {
            self.saves
                .push((id, run.start_checkpoint()?, Target::Path(path), format));
        }
        Ok(())
    }

    /// True while a checkpoint is on its way back.
    pub fn saving(&self) -> bool {
        !self.saves.is_empty()
    }

    /// Writes the saves whose tensors are back (never waits). An ONNX export traces the
    /// run's model (still in `lab`) with the weights of the snapshot.
    pub fn poll(&mut self, lab: Option<&Lab>) {
        let mut i = 0;
        while i < self.saves.len() {
            let (id, format) = (self.saves[i].0, self.saves[i].3);
            let done = match self.saves[i].1.try_take() {
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Ok(Some(c)) => match format {
                    Format::Checkpoint => c.to_bytes(),
                    Format::Onnx => onnx(lab, id, &c),
                }
                .and_then(|b| write(&self.saves[i].2, &b)),
                Err(e) => Err(e),
            };
            self.saves.remove(i);
            self.message = Some(match done {
                Ok(msg) => msg,
                Err(e) => format!("run {id}: not saved: {e:#}"),
            });
        }
    }

    /// Lets the user pick a checkpoint to load; its bytes arrive in [`Files::incoming`].
    pub fn pick(&mut self, ctx: &egui::Context) {
        let slot = Rc::clone(&self.incoming);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = ctx;
            if let Some(path) = rfd::FileDialog::new()
                .add_filter("checkpoint or weights", &["safetensors"])
                .pick_file()
            {
                let name = path.display().to_string();
                let bytes = std::fs::read(&path).map_err(|e| format!("cannot read it: {e}"));
                slot.borrow_mut().push((name, bytes));
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let ctx = ctx.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(f) = rfd::AsyncFileDialog::new()
                    .add_filter("checkpoint or weights", &["safetensors"])
                    .pick_file()
                    .await
                {
                    let bytes = f.read().await;
                    slot.borrow_mut().push((f.file_name(), Ok(bytes)));
                    ctx.request_repaint();
                }
            });
        }
    }

    /// Lets the user pick an image folder (native: a folder dialog; web: a folder input,
    /// whose files are read asynchronously); it arrives in [`Files::folders`].
    pub fn pick_folder(&mut self, ctx: &egui::Context) {
        let slot = Rc::clone(&self.folders);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = ctx;
            if let Some(dir) = rfd::FileDialog::new().pick_folder() {
                let r = FolderFiles::from_dir(&dir).map_err(|e| format!("{e:#}"));
                slot.borrow_mut().push(r);
            }
        }
        #[cfg(target_arch = "wasm32")]
        if let Err(e) = web_folder::pick(slot, ctx.clone()) {
            self.message = Some(format!("cannot open a folder picker: {e}"));
        }
    }

    /// Reads folders dropped on the page (browser): eframe forwards dropped files only, so
    /// the page's own drop listener walks a dropped folder's entries; they arrive in
    /// [`Files::folders`] like a picked folder. Call once.
    #[cfg(target_arch = "wasm32")]
    pub fn listen_for_folder_drops(&self, ctx: &egui::Context) {
        if let Err(e) = web_folder::listen_for_drops(Rc::clone(&self.folders), ctx.clone()) {
            log::warn!("folders dropped on the page will not be read: {e}");
        }
    }

    /// Takes the image folders that have arrived.
    pub fn take_folders(&mut self) -> Vec<Result<FolderFiles, String>> {
        self.folders.borrow_mut().drain(..).collect()
    }

    /// Takes the files that have arrived.
    pub fn take_incoming(&mut self) -> Vec<(String, Result<Vec<u8>, String>)> {
        self.incoming.borrow_mut().drain(..).collect()
    }

    /// Every run's history as one CSV (native: a save dialog; web: a download).
    pub fn export_csv(&mut self, lab: &Lab) {
        let mut csv = String::from("run,model,step,images,train_loss,train_acc,val_loss,val_acc\n");
        for r in &lab.runs {
            let (a, b) = if r.is_gan() {
                ("d_loss", "g_loss")
            } else {
                ("train_loss", "train_acc")
            };
            let body = r.history.to_csv(a, b);
            let name = r.name.replace(',', ";");
            for line in body.lines().skip(1) {
                csv += &format!("{name},{},{line}\n", r.settings.model);
            }
        }
        let target = {
            #[cfg(not(target_arch = "wasm32"))]
            {
                match rfd::FileDialog::new()
                    .set_file_name("nnlab-runs.csv")
                    .add_filter("CSV", &["csv"])
                    .save_file()
                {
                    Some(p) => Target::Path(p),
                    None => return,
                }
            }
            #[cfg(target_arch = "wasm32")]
            {
                Target::Download("nnlab-runs.csv".into())
            }
        };
        self.message = Some(match write(&target, csv.as_bytes()) {
            Ok(msg) => msg,
            Err(e) => format!("CSV not saved: {e:#}"),
        });
    }
}

/// Run `id`'s model as ONNX, with the weights of its checkpoint `c`.
fn onnx(lab: Option<&Lab>, id: u64, c: &crate::checkpoint::Checkpoint) -> Result<Vec<u8>> {
    let (lab, run) = lab
        .and_then(|l| Some((l, l.get(id)?)))
        .ok_or_else(|| anyhow::anyhow!("the run was removed"))?;
    let gpu = lab.gpu();
    match run.trainee() {
        Trainee::Classifier(t) => {
            crate::export::classifier_onnx(gpu, t.net.as_ref(), &c.section("model"), &t.spec)
        }
        Trainee::Gan(g) => {
            let width = c.meta_f64(&["gan", "width"])? as f32;
            crate::export::generator_onnx(gpu, &g.g, &c.section("generator"), width)
        }
    }
}

/// Writes `bytes` where `target` says; returns what to tell the user.
fn write(target: &Target, bytes: &[u8]) -> Result<String> {
    match target {
        #[cfg(not(target_arch = "wasm32"))]
        Target::Path(p) => {
            crate::checkpoint::write_atomic(p, bytes)?;
            Ok(format!("saved {}", p.display()))
        }
        #[cfg(target_arch = "wasm32")]
        Target::Download(name) => {
            download(name, bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(format!("downloaded {name}"))
        }
    }
}

/// Hands `bytes` to the browser as a download named `name`.
#[cfg(target_arch = "wasm32")]
fn download(name: &str, bytes: &[u8]) -> Result<(), String> {
    use wasm_bindgen::JsCast as _;
    let err = |e: wasm_bindgen::JsValue| format!("{e:?}");
    let array = js_sys::Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    let blob = web_sys::Blob::new_with_u8_array_sequence(&parts).map_err(err)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(err)?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let a = document
        .create_element("a")
        .map_err(err)?
        .dyn_into::<web_sys::HtmlAnchorElement>()
        .map_err(|_| "not an anchor")?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    web_sys::Url::revoke_object_url(&url).map_err(err)?;
    Ok(())
}

/// The browser's folder picker and folders dropped on the page.
#[cfg(target_arch = "wasm32")]
mod web_folder;
