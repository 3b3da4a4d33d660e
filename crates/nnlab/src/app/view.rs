//! Pictures made on the CPU (GAN samples, dropped images), kept in reusable egui textures.
//! Feature maps and filters are drawn on the GPU instead (`gpu_nn::TileImage`).

use std::collections::HashMap;

use egui::{Color32, ColorImage, TextureHandle, TextureOptions};

/// Lays out `n` tiles of `h` x `w` values (each scaled to its own min..max) in a grid with a
/// one-pixel gap, `cols` tiles wide. `values` holds the tiles one after another.
pub fn tile_grid(values: &[f32], n: usize, h: usize, w: usize, cols: usize) -> ColorImage {
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let (gw, gh) = (cols * (w + 1) - 1, rows * (h + 1) - 1);
    let mut px = vec![Color32::from_gray(40); gw.max(1) * gh.max(1)];
    for t in 0..n {
        let Some(tile) = values.get(t * h * w..(t + 1) * h * w) else {
            break;
        };
        let (lo, hi) = tile
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (r0, c0) = ((t / cols) * (h + 1), (t % cols) * (w + 1));
        for y in 0..h {
            for x in 0..w {
                let v = ((tile[y * w + x] - lo) / span * 255.0).clamp(0.0, 255.0) as u8;
                px[(r0 + y) * gw + c0 + x] = Color32::from_gray(v);
            }
        }
    }
    ColorImage::new([gw.max(1), gh.max(1)], px)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_scaled_per_tile_and_laid_out_in_a_grid() {
        // Two 1x2 tiles: [0, 1] and [5, 10] both map to [0, 255].
        let img = tile_grid(&[0.0, 1.0, 5.0, 10.0], 2, 1, 2, 2);
        assert_eq!(img.size, [5, 1]);
        assert_eq!(img.pixels[0], Color32::from_gray(0));
        assert_eq!(img.pixels[1], Color32::from_gray(255));
        assert_eq!(img.pixels[2], Color32::from_gray(40)); // the gap
        assert_eq!(img.pixels[3], Color32::from_gray(0));
        assert_eq!(img.pixels[4], Color32::from_gray(255));
    }
}
