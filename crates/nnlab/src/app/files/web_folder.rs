//! The browser's folder picker, an `<input type=file webkitdirectory>` (rfd has no folder
//! dialog on the web), and folders dropped on the page. Each image file is read with its
//! path below the folder.

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
        .add_event_listener_with_callback_and_bool("drop", on_drop.as_ref().unchecked_ref(), true)
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
