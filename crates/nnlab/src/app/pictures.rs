//! Pictures egui draws: the engine's GPU pictures (feature maps, filters, GAN samples)
//! registered with egui's renderer as they are (no CPU copy), and CPU images (a dropped
//! photo) in reusable egui textures.

use std::collections::HashMap;

use egui::{ColorImage, TextureHandle, TextureOptions};
use gpu_nn::TileImage;
use gpu_nn::wgpu;

/// Engine pictures registered with egui's renderer, by key (`run3/layer:conv1`); each is
/// registered once, then redrawn in place by the engine.
#[derive(Default)]
pub struct Pictures {
    render_state: Option<egui_wgpu::RenderState>,
    map: HashMap<String, (egui::TextureId, wgpu::Texture)>,
}

impl Pictures {
    /// Registrations go to this renderer (none: nothing is drawn, as in tests without one).
    pub fn new(render_state: Option<egui_wgpu::RenderState>) -> Self {
        Self {
            render_state,
            map: HashMap::new(),
        }
    }

    /// The egui texture showing `pic` under `key`, registering it the first time (and again
    /// when the picture behind the key was made anew).
    pub fn texture(&mut self, key: &str, pic: &TileImage) -> Option<egui::load::SizedTexture> {
        let rs = self.render_state.as_ref()?;
        let current = self.map.get(key).is_some_and(|(_, t)| t == pic.texture());
        if !current {
            let mut renderer = rs.renderer.write();
            let id = renderer.register_native_texture(
                &rs.device,
                &pic.srgb_view(),
                wgpu::FilterMode::Nearest,
            );
            if let Some((old, _)) = self
                .map
                .insert(key.to_string(), (id, pic.texture().clone()))
            {
                renderer.free_texture(&old);
            }
        }
        let (id, t) = self.map.get(key)?;
        let size = t.size();
        Some(egui::load::SizedTexture::new(
            *id,
            egui::vec2(size.width as f32, size.height as f32),
        ))
    }

    /// Frees every registration whose key starts with `prefix` (a removed run's).
    pub fn forget_prefix(&mut self, prefix: &str) {
        let keys: Vec<String> = self
            .map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in keys {
            if let (Some((id, _)), Some(rs)) = (self.map.remove(&k), &self.render_state) {
                rs.renderer.write().free_texture(&id);
            }
        }
    }

    /// Registered pictures.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether `key` is registered.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }
}

/// CPU images by name, in textures created once and then updated in place.
#[derive(Default)]
pub struct Textures {
    map: HashMap<String, TextureHandle>,
}

impl Textures {
    /// Uploads `img` under `name`, reusing the texture made for that name before.
    pub fn set(&mut self, ctx: &egui::Context, name: &str, img: ColorImage) -> &TextureHandle {
        let opts = TextureOptions::NEAREST;
        self.map
            .entry(name.to_string())
            .and_modify(|t| t.set(img.clone(), opts))
            .or_insert_with(|| ctx.load_texture(name, img, opts))
    }

    /// The texture stored under `name`.
    pub fn get(&self, name: &str) -> Option<&TextureHandle> {
        self.map.get(name)
    }

    /// Forgets every texture whose name starts with `prefix`.
    pub fn clear_prefix(&mut self, prefix: &str) {
        self.map.retain(|k, _| !k.starts_with(prefix));
    }
}

/// [C, H, W] pixels (grey, or the first three planes as RGB) as an egui image.
pub fn color_image(px: &[u8], [c, h, w]: [usize; 3]) -> ColorImage {
    let plane = h * w;
    let at = |ch: usize, k: usize| px.get(ch * plane + k).copied().unwrap_or(0);
    let pixels = (0..plane)
        .map(|k| {
            if c >= 3 {
                egui::Color32::from_rgb(at(0, k), at(1, k), at(2, k))
            } else {
                egui::Color32::from_gray(at(0, k))
            }
        })
        .collect();
    ColorImage::new([w, h], pixels)
}
