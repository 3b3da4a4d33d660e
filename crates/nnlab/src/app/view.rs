//! Pictures made on the CPU (the dropped image), kept in reusable egui textures. Feature
//! maps, filters and GAN samples are drawn on the GPU instead (`gpu_nn::TileImage`).

use std::collections::HashMap;

use egui::{ColorImage, TextureHandle, TextureOptions};

/// Textures by name, created once and then updated in place (no new texture per frame).
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
