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

/// The browser's folder picker, an `<input type=file webkitdirectory>` (rfd has no folder
/// dialog on the web), and folders dropped on the page. Each image file is read with its
/// path below the folder.
#[cfg(target_arch = "wasm32")]
mod web_folder {
    use js_sys::Reflect;
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::JsValue;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen_futures::JsFuture;

    use super::IncomingFolders;
    use crate::folder::{FolderFiles, is_image_name};

    /// Opens the picker; the folder's files arrive in `slot`.
    pub fn pick(slot: IncomingFolders, ctx: egui::Context) -> Result<(), String> {
        let doc = web_sys::window()
            .and_then(|w| w.document())
            .ok_or("no document")?;
        let input: web_sys::HtmlInputElement = doc
            .create_element("input")
            .map_err(|e| format!("{e:?}"))?
            .dyn_into()
            .map_err(|_| "not an input element")?;
        input.set_type("file");
        input.set_multiple(true);
        input
            .set_attribute("webkitdirectory", "")
            .map_err(|e| format!("{e:?}"))?;
        let picked = input.clone();
        let on_change = Closure::once(move || {
            wasm_bindgen_futures::spawn_local(async move {
                let r = read(&picked).await;
                slot.borrow_mut().push(r);
                ctx.request_repaint();
            });
        });
        input.set_onchange(Some(on_change.as_ref().unchecked_ref()));
        // The closure lives as long as the page: one small leak per folder picked.
        on_change.forget();
        input.click();
        Ok(())
    }

    /// A method `name` of a JS object, called with `args`.
    fn call(obj: &JsValue, name: &str, args: &[&JsValue]) -> Result<JsValue, String> {
        let f: js_sys::Function = Reflect::get(obj, &name.into())
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or_else(|| format!("no {name}()"))?;
        let args: js_sys::Array = args.iter().copied().collect();
        f.apply(obj, &args).map_err(|e| format!("{name}(): {e:?}"))
    }

    /// Calls a callback-style method (`readEntries`, `file`) and awaits its result.
    async fn callback(obj: &JsValue, name: &str) -> Result<JsValue, String> {
        let mut err = None;
        let p = js_sys::Promise::new(&mut |resolve, reject| {
            err = call(obj, name, &[&resolve, &reject]).err();
        });
        if let Some(e) = err {
            return Err(e);
        }
        JsFuture::from(p)
            .await
            .map_err(|e| format!("{name}(): {e:?}"))
    }

    fn string(obj: &JsValue, key: &str) -> String {
        Reflect::get(obj, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    }

    fn flag(obj: &JsValue, key: &str) -> bool {
        Reflect::get(obj, &key.into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// Listens on the window, before eframe's canvas: a drop holding a folder is taken here
    /// (its entries must be asked for during the event); one of files goes on to eframe.
    pub fn listen_for_drops(slot: IncomingFolders, ctx: egui::Context) -> Result<(), String> {
        let window = web_sys::window().ok_or("no window")?;
        let on_drop = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
            let items = Reflect::get(&e, &"dataTransfer".into())
                .and_then(|dt| Reflect::get(&dt, &"items".into()))
                .unwrap_or(JsValue::UNDEFINED);
            let n = Reflect::get(&items, &"length".into())
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0) as u32;
            let dirs: Vec<JsValue> = (0..n)
                .filter_map(|i| Reflect::get_u32(&items, i).ok())
                .filter_map(|item| call(&item, "webkitGetAsEntry", &[]).ok())
                .filter(|entry| flag(entry, "isDirectory"))
                .collect();
            if dirs.is_empty() {
                return;
            }
            e.prevent_default();
            e.stop_immediate_propagation();
            let (slot, ctx) = (std::rc::Rc::clone(&slot), ctx.clone());
            wasm_bindgen_futures::spawn_local(async move {
                for d in dirs {
                    let r = read_dropped(d).await;
                    slot.borrow_mut().push(r);
                }
                ctx.request_repaint();
            });
        });
        window
            .add_event_listener_with_callback_and_bool(
                "drop",
                on_drop.as_ref().unchecked_ref(),
                true,
            )
            .map_err(|e| format!("{e:?}"))?;
        on_drop.forget();
        Ok(())
    }

    /// The image files below a dropped folder's entry, with their paths from that folder.
    async fn read_dropped(dir: JsValue) -> Result<FolderFiles, String> {
        let top = string(&dir, "name");
        let mut stack = vec![dir];
        let mut files = Vec::new();
        while let Some(d) = stack.pop() {
            let reader = call(&d, "createReader", &[])?;
            // readEntries hands out a batch per call, an empty one at the end.
            loop {
                let batch: js_sys::Array = callback(&reader, "readEntries")
                    .await?
                    .dyn_into()
                    .map_err(|_| "readEntries gave no list")?;
                if batch.length() == 0 {
                    break;
                }
                for entry in batch.iter() {
                    let path = string(&entry, "fullPath")
                        .trim_start_matches('/')
                        .to_string();
                    if flag(&entry, "isDirectory") {
                        stack.push(entry);
                    } else if is_image_name(&path) {
                        let file: web_sys::File = callback(&entry, "file")
                            .await?
                            .dyn_into()
                            .map_err(|_| format!("{path}: not a file"))?;
                        let buf = JsFuture::from(file.array_buffer())
                            .await
                            .map_err(|e| format!("{path}: cannot read it: {e:?}"))?;
                        files.push((path, js_sys::Uint8Array::new(&buf).to_vec()));
                    }
                }
            }
        }
        FolderFiles::from_memory(&top, files).map_err(|e| format!("{e:#}"))
    }

    async fn read(input: &web_sys::HtmlInputElement) -> Result<FolderFiles, String> {
        let list = input.files().ok_or("no files")?;
        let mut files = Vec::new();
        let mut top = String::new();
        for i in 0..list.length() {
            let Some(f) = list.get(i) else { continue };
            let path = js_sys::Reflect::get(&f, &"webkitRelativePath".into())
                .ok()
                .and_then(|v| v.as_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| f.name());
            if top.is_empty() {
                top = path.split('/').next().unwrap_or_default().to_string();
            }
            // Only images are read: a folder may hold large files of other kinds.
            if !is_image_name(&path) {
                continue;
            }
            let buf = JsFuture::from(f.array_buffer())
                .await
                .map_err(|e| format!("{path}: cannot read it: {e:?}"))?;
            files.push((path, js_sys::Uint8Array::new(&buf).to_vec()));
        }
        FolderFiles::from_memory(&top, files).map_err(|e| format!("{e:#}"))
    }
}
