//! Tensors as pictures: activation and filter grids, kept in reusable egui textures.

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

/// A layer's output for one image as a picture: [1, C, H, W] as C tiles, [1, F] as a strip.
pub fn activation_image(shape: &[usize], values: &[f32]) -> Option<ColorImage> {
    match shape {
        [1, c, h, w] if *h > 1 || *w > 1 => {
            let cols = (*c as f32).sqrt().ceil() as usize;
            Some(tile_grid(values, *c, *h, *w, cols.max(1)))
        }
        // 1x1 spatial maps (after global pooling) and linear layers: one value per column.
        [1, f, ..] => {
            let cols = (*f).min(64);
            let rows = f.div_ceil(cols);
            let mut padded = values.to_vec();
            padded.resize(rows * cols, 0.0);
            Some(tile_grid(&padded, 1, rows, cols, 1))
        }
        _ => None,
    }
}

/// First-layer filters [out, in, kh, kw] as `out` tiles (input channels averaged).
pub fn filter_image(shape: &[usize], values: &[f32]) -> Option<ColorImage> {
    let [o, i, kh, kw] = *shape else { return None };
    let per = kh * kw;
    let mut tiles = vec![0.0f32; o * per];
    for f in 0..o {
        for c in 0..i {
            let src = values.get((f * i + c) * per..(f * i + c + 1) * per)?;
            for (d, s) in tiles[f * per..(f + 1) * per].iter_mut().zip(src) {
                *d += s / i as f32;
            }
        }
    }
    let cols = (o as f32).sqrt().ceil() as usize;
    Some(tile_grid(&tiles, o, kh, kw, cols.max(1)))
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

    #[test]
    fn activations_and_filters_have_the_expected_sizes() {
        let a = activation_image(&[1, 10, 24, 24], &vec![0.5; 10 * 576]).expect("conv map");
        assert_eq!(a.size, [4 * 25 - 1, 3 * 25 - 1]);
        let l = activation_image(&[1, 50], &[1.0; 50]).expect("linear");
        assert_eq!(l.size, [50, 1]);
        let f = filter_image(&[10, 1, 5, 5], &[0.1; 250]).expect("filters");
        assert_eq!(f.size, [4 * 6 - 1, 3 * 6 - 1]);
        assert!(filter_image(&[10, 1, 5], &[0.0; 50]).is_none());
    }
}
