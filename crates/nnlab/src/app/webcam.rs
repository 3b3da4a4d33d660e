//! The browser's webcam (`getUserMedia`) as a source of frames for the Classify view: a
//! hidden `<video>` plays the stream, each frame asked for is drawn, centre-cropped and
//! scaled, into a small canvas and read back as RGBA. Nothing here waits: the stream arrives
//! through a promise, and a frame is only taken once the video has one.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::{Result, anyhow};
use wasm_bindgen::JsCast;
use web_sys::{
    CanvasRenderingContext2d, HtmlCanvasElement, HtmlVideoElement, MediaStream,
    MediaStreamConstraints, MediaStreamTrack,
};

/// Where the camera stands.
enum Status {
    /// Permission asked, no stream yet.
    Starting,
    /// Frames are coming.
    Live(MediaStream),
    /// Refused or absent: what the browser said.
    Failed(String),
}

/// A running webcam; dropping it stops the camera.
pub struct Webcam {
    video: HtmlVideoElement,
    canvas: HtmlCanvasElement,
    ctx: CanvasRenderingContext2d,
    status: Rc<RefCell<Status>>,
}

fn js_err(what: &str, e: wasm_bindgen::JsValue) -> anyhow::Error {
    anyhow!(
        "{what}: {}",
        e.as_string().unwrap_or_else(|| format!("{e:?}"))
    )
}

impl Webcam {
    /// Asks the browser for the camera; frames follow once it agrees.
    pub fn start() -> Result<Self> {
        let window = web_sys::window().ok_or_else(|| anyhow!("no window"))?;
        let document = window.document().ok_or_else(|| anyhow!("no document"))?;
        let devices = window
            .navigator()
            .media_devices()
            .map_err(|e| js_err("this browser has no camera access", e))?;
        let constraints = MediaStreamConstraints::new();
        constraints.set_video(&wasm_bindgen::JsValue::TRUE);
        let promise = devices
            .get_user_media_with_constraints(&constraints)
            .map_err(|e| js_err("the camera could not be asked for", e))?;
        let video: HtmlVideoElement = document
            .create_element("video")
            .map_err(|e| js_err("no video element", e))?
            .dyn_into()
            .map_err(|_| anyhow!("no video element"))?;
        video.set_muted(true);
        video.set_autoplay(true);
        let _ = video.set_attribute("playsinline", "");
        // In the page but out of sight: a detached video may not decode frames.
        let _ = video.set_attribute(
            "style",
            "position:fixed;left:0;top:0;width:2px;height:2px;opacity:0;pointer-events:none",
        );
        if let Some(body) = document.body() {
            let _ = body.append_child(&video);
        }
        let canvas: HtmlCanvasElement = document
            .create_element("canvas")
            .map_err(|e| js_err("no canvas", e))?
            .dyn_into()
            .map_err(|_| anyhow!("no canvas"))?;
        let ctx: CanvasRenderingContext2d = canvas
            .get_context("2d")
            .map_err(|e| js_err("no 2d canvas", e))?
            .ok_or_else(|| anyhow!("no 2d canvas"))?
            .dyn_into()
            .map_err(|_| anyhow!("no 2d canvas"))?;
        let status = Rc::new(RefCell::new(Status::Starting));
        let (slot, v) = (Rc::clone(&status), video.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let got = wasm_bindgen_futures::JsFuture::from(promise).await;
            *slot.borrow_mut() = match got.and_then(|s| s.dyn_into::<MediaStream>()) {
                Ok(stream) => {
                    v.set_src_object(Some(&stream));
                    if let Ok(p) = v.play() {
                        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
                    }
                    // Stopped before the stream came: `Drop` had nothing to stop, so stop it
                    // here, or the camera would stay on.
                    if Rc::strong_count(&slot) == 1 {
                        stop_tracks(&stream);
                        return;
                    }
                    Status::Live(stream)
                }
                Err(e) => Status::Failed(format!(
                    "no camera: {}",
                    js_sys::Reflect::get(&e, &"message".into())
                        .ok()
                        .and_then(|m| m.as_string())
                        .unwrap_or_else(|| format!("{e:?}"))
                )),
            };
        });
        Ok(Self {
            video,
            canvas,
            ctx,
            status,
        })
    }

    /// Why there are no frames, if there will be none.
    pub fn error(&self) -> Option<String> {
        match &*self.status.borrow() {
            Status::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// Whether frames are coming.
    pub fn live(&self) -> bool {
        matches!(&*self.status.borrow(), Status::Live(_))
    }

    /// The current frame's centre square scaled to `side` x `side`, as RGBA; `None` until the
    /// video has a frame.
    pub fn frame(&self, side: u32) -> Option<Vec<u8>> {
        let (w, h) = (self.video.video_width(), self.video.video_height());
        // HAVE_CURRENT_DATA: a frame can be drawn.
        if !self.live() || self.video.ready_state() < 2 || w == 0 || h == 0 {
            return None;
        }
        self.canvas.set_width(side);
        self.canvas.set_height(side);
        let s = w.min(h);
        let (sx, sy) = (f64::from(w - s) / 2.0, f64::from(h - s) / 2.0);
        let side_f = f64::from(side);
        self.ctx
            .draw_image_with_html_video_element_and_sw_and_sh_and_dx_and_dy_and_dw_and_dh(
                &self.video,
                sx,
                sy,
                f64::from(s),
                f64::from(s),
                0.0,
                0.0,
                side_f,
                side_f,
            )
            .ok()?;
        let data = self.ctx.get_image_data(0.0, 0.0, side_f, side_f).ok()?;
        Some(data.data().0)
    }
}

/// Turns the camera off.
fn stop_tracks(stream: &MediaStream) {
    for t in stream.get_tracks().iter() {
        if let Ok(t) = t.dyn_into::<MediaStreamTrack>() {
            t.stop();
        }
    }
}

impl Drop for Webcam {
    fn drop(&mut self) {
        if let Status::Live(stream) = &*self.status.borrow() {
            stop_tracks(stream);
        }
        self.video.remove();
    }
}
