//! The browser entry point: check for WebGPU compute first, then start the app on the
//! page's canvas. Without WebGPU the page shows what is missing instead of a blank canvas.

use eframe::wasm_bindgen::JsCast as _;
use nnlab::app::recovery::Recovery;
use nnlab::app::{Launch, NnlabApp, wgpu_configuration};

/// What the page shows when the browser cannot run the kernels.
const HELP: &str = "nnlab trains on the GPU with WebGPU compute shaders. Use a browser with \
WebGPU: Chrome or Edge 113+ (on Linux start it with --enable-unsafe-webgpu, or enable \
chrome://flags/#enable-unsafe-webgpu), Safari 26+, or Firefox 141+ on Windows (Nightly \
elsewhere, dom.webgpu.enabled). WebGL2 has no compute shaders, so it cannot train.";

pub fn start() {
    console_error_panic_hook::set_once();
    eframe::WebLogger::init(log::LevelFilter::Info).ok();
    wasm_bindgen_futures::spawn_local(async {
        if let Err(e) = run().await {
            show_message(&e);
        }
    });
}

/// Finds a WebGPU adapter that can run compute kernels, or says why not.
async fn check_webgpu() -> Result<(), String> {
    let mut desc = gpu_nn::wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = gpu_nn::wgpu::Backends::BROWSER_WEBGPU;
    let instance = gpu_nn::wgpu::util::new_instance_with_webgpu_detection(desc).await;
    let adapter = instance
        .request_adapter(&gpu_nn::wgpu::RequestAdapterOptions::default())
        .await
        .map_err(|e| format!("This browser offers no WebGPU adapter ({e})."))?;
    gpu_nn::check_adapter(&adapter).map_err(|e| format!("The WebGPU adapter cannot train: {e}."))
}

/// Fetches a file next to the page.
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    use wasm_bindgen_futures::JsFuture;
    let err = |e: eframe::wasm_bindgen::JsValue| format!("{url}: {e:?}");
    let window = web_sys::window().ok_or("no window")?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(err)?
        .dyn_into()
        .map_err(|_| format!("{url}: not a response"))?;
    if !resp.ok() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(err)?)
        .await
        .map_err(err)?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// Fetches a bundled data set's two files and hands them to the app.
async fn fetch_bundled(set: nnlab::data::Bundled) -> Result<(), String> {
    let dir = nnlab::bundled::url_dir(set);
    let [images, labels] = nnlab::bundled::FILES;
    let images = fetch(&format!("{dir}/{images}")).await?;
    let labels = fetch(&format!("{dir}/{labels}")).await?;
    nnlab::bundled::provide(set, images, labels);
    Ok(())
}

async fn run() -> Result<(), String> {
    check_webgpu().await?;
    // The data sets are files next to the page: the one the launch needs first, the other
    // while the app runs.
    let launch = Launch::from_url();
    let first = launch.data.unwrap_or(nnlab::data::Bundled::Mnist);
    fetch_bundled(first)
        .await
        .map_err(|e| format!("the bundled data did not load: {e}"))?;
    for set in nnlab::data::Bundled::ALL
        .into_iter()
        .filter(|s| *s != first)
    {
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = fetch_bundled(set).await {
                log::error!("the bundled data did not load: {e}");
            }
        });
    }
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let canvas = document
        .get_element_by_id("nnlab-canvas")
        .ok_or("the page has no #nnlab-canvas")?
        .dyn_into::<web_sys::HtmlCanvasElement>()
        .map_err(|_| "#nnlab-canvas is not a canvas")?;
    start_app(canvas, Start::Launch(launch)).await?;
    if let Some(el) = document.get_element_by_id("nnlab-loading") {
        el.remove();
    }
    Ok(())
}

/// What an app on the canvas starts from.
enum Start {
    /// The page's URL settings.
    Launch(Launch),
    /// The runs of an app whose device was lost.
    Recovered(Recovery),
}

/// Starts an app on the canvas. When its device is lost, its runner is shut down and a new
/// app continues the runs on a new device.
async fn start_app(canvas: web_sys::HtmlCanvasElement, start: Start) -> Result<(), String> {
    let runner = eframe::WebRunner::new();
    let restart = restart_on_new_device(runner.clone(), canvas.clone());
    let options = eframe::WebOptions {
        wgpu_options: wgpu_configuration(),
        ..Default::default()
    };
    runner
        .start(
            canvas,
            options,
            Box::new(move |cc| {
                let app = match start {
                    Start::Launch(launch) => NnlabApp::new(cc, launch),
                    Start::Recovered(recovery) => NnlabApp::restarted(cc, recovery),
                };
                Ok(Box::new(app.with_restart(restart)))
            }),
        )
        .await
        .map_err(|e| format!("the app failed to start: {e:?}"))
}

/// Hands a lost device's runs to a new app: after the frame that noticed (the runner is
/// busy in it), the old runner is shut down and a new one asks for a new device.
fn restart_on_new_device(
    runner: eframe::WebRunner,
    canvas: web_sys::HtmlCanvasElement,
) -> nnlab::app::recovery::Restart {
    Box::new(move |recovery| {
        let (runner, canvas) = (runner.clone(), canvas.clone());
        let restart: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> =
            Box::pin(async move {
                runner.destroy();
                if recovery.exhausted() {
                    show_message(&recovery.give_up_message());
                    return;
                }
                log::warn!("the GPU device was lost; starting the runs again on a new device");
                if let Err(e) = start_app(canvas, Start::Recovered(recovery)).await {
                    show_message(&e);
                }
            });
        wasm_bindgen_futures::spawn_local(restart);
    })
}

/// Replaces the canvas by a readable message and records it in `#nnlab-state`.
fn show_message(why: &str) {
    log::error!("nnlab: {why}");
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if let Some(el) = document.get_element_by_id("nnlab-loading") {
        el.remove();
    }
    if let Some(canvas) = document.get_element_by_id("nnlab-canvas") {
        canvas.remove();
    }
    if let Some(el) = document.get_element_by_id("nnlab-message") {
        el.set_inner_html(&format!(
            "<h1>nnlab cannot run here</h1><p><b>{}</b></p><p>{HELP}</p>",
            escape(why)
        ));
        el.set_attribute("style", "display:block").ok();
    }
    if let Some(el) = document.get_element_by_id("nnlab-state") {
        let state = serde_json::json!({ "status": "no-webgpu", "error": why });
        el.set_text_content(Some(&state.to_string()));
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
