//! Turning a dropped file into the model's input: decoded with `image`, then either like a
//! digit set (grey, white on black like MNIST) or like an image folder's photos (resized
//! and centre-cropped to the model's input), normalised like the training data.

use anyhow::Result;

/// How a dropped image becomes a run's input.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// (C, H, W) of the model's input.
    pub shape: [usize; 3],
    /// Per-channel mean of the training data's normalisation.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// Like MNIST: grey, inverted when the background is light (ink on paper).
    pub digits: bool,
}

/// A dropped image as the model sees it.
pub struct Prepared {
    /// [C, H, W] pixels in [0, 255] after the steps below (for display).
    pub pixels: Vec<u8>,
    /// The same, normalised: the model's input.
    pub input: Vec<f32>,
    /// Width and height of the original.
    pub original: (u32, u32),
    /// Whether the colours were inverted (light background, like a scan of ink on paper).
    pub inverted: bool,
    /// What it was prepared for.
    pub target: Target,
}

impl Prepared {
    /// The picture as egui shows it.
    pub fn color_image(&self) -> egui::ColorImage {
        super::pictures::color_image(&self.pixels, self.target.shape)
    }
}

/// Decodes `bytes` (any format `image` knows, within `images::decode`'s limits) and
/// prepares it as `target` says; `name` names the file in errors.
pub fn prepare(bytes: &[u8], name: &str, target: &Target) -> Result<Prepared> {
    prepare_image(&crate::images::decode(bytes, name)?, name, target)
}

/// A webcam frame (`side` x `side` RGBA pixels) prepared as `target` says.
pub fn prepare_rgba(rgba: Vec<u8>, side: u32, target: &Target) -> Result<Prepared> {
    let img = image::RgbaImage::from_raw(side, side, rgba)
        .ok_or_else(|| anyhow::anyhow!("a webcam frame of {side}x{side} pixels came short"))?;
    prepare_image(&image::DynamicImage::ImageRgba8(img), "webcam", target)
}

/// A decoded image prepared as `target` says.
fn prepare_image(img: &image::DynamicImage, name: &str, target: &Target) -> Result<Prepared> {
    let original = (img.width(), img.height());
    let [c, h, w] = target.shape;
    let (pixels, inverted) = if target.digits && c == 1 {
        // thumbnail_exact averages areas: fast even for very large images, and keeps thin
        // strokes visible where point sampling would drop them.
        let mut px = img
            .thumbnail_exact(w as u32, h as u32)
            .to_luma8()
            .into_raw();
        let mean = px.iter().map(|&p| f64::from(p)).sum::<f64>() / px.len().max(1) as f64;
        let inverted = mean > 127.0;
        if inverted {
            px.iter_mut().for_each(|p| *p = 255 - *p);
        }
        (px, inverted)
    } else {
        (crate::images::to_pixels(img, target.shape, false)?, false)
    };
    anyhow::ensure!(pixels.len() == c * h * w, "{name}: {c}x{h}x{w} expected");
    let plane = h * w;
    let input = pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let ch = i / plane.max(1);
            let m = target.mean.get(ch).copied().unwrap_or(0.0);
            let s = target.std.get(ch).copied().unwrap_or(1.0);
            (f32::from(p) / 255.0 - m) / s
        })
        .collect();
    Ok(Prepared {
        pixels,
        input,
        original,
        inverted,
        target: target.clone(),
    })
}

/// The `k` most probable classes, best first, as (class index, probability).
pub fn top_k(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut v: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(k);
    v
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn digits(mean: f32, std: f32) -> Target {
        Target {
            shape: [1, 28, 28],
            mean: vec![mean],
            std: vec![std],
            digits: true,
        }
    }

    fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
        let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encode png");
        out
    }

    #[test]
    fn dark_ink_on_white_is_inverted_and_normalised() {
        // A black vertical bar on white.
        let bytes = png(56, 56, |x, _| if (24..32).contains(&x) { 0 } else { 255 });
        let p = prepare(&bytes, "f.png", &digits(0.5, 0.5)).expect("valid png");
        assert!(p.inverted);
        assert_eq!(p.original, (56, 56));
        assert_eq!(p.pixels.len(), 28 * 28);
        // After inversion the bar is bright and the background dark.
        assert!(p.pixels[14 * 28 + 14] > 200, "{}", p.pixels[14 * 28 + 14]);
        assert!(p.pixels[14 * 28 + 2] < 50);
        assert!((p.input[14 * 28 + 2] - (-1.0)).abs() < 0.3);
    }

    #[test]
    fn garbage_empty_and_truncated_files_are_errors_with_messages() {
        let e = prepare(b"hello, not an image", "f.png", &digits(0.0, 1.0))
            .err()
            .expect("garbage");
        assert!(e.to_string().contains("not an image"), "{e}");
        assert!(prepare(&[], "f.png", &digits(0.0, 1.0)).is_err());
        let mut bytes = png(40, 40, |x, y| (x * y) as u8);
        bytes.truncate(bytes.len() / 2);
        let e = prepare(&bytes, "f.png", &digits(0.0, 1.0))
            .err()
            .expect("truncated");
        assert!(format!("{e:#}").contains("corrupt"), "{e:#}");
    }

    #[test]
    fn a_huge_image_header_is_refused_without_decoding() {
        // A BMP header claiming 100000 x 100000 pixels (BMP headers carry no checksum).
        let img = image::GrayImage::from_pixel(1, 1, image::Luma([0]));
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Bmp)
            .expect("encode bmp");
        bytes[18..22].copy_from_slice(&100_000i32.to_le_bytes());
        bytes[22..26].copy_from_slice(&100_000i32.to_le_bytes());
        let e = prepare(&bytes, "f.png", &digits(0.0, 1.0))
            .err()
            .expect("huge");
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn a_webcam_frame_is_prepared_like_a_photo() {
        // A red left half, a blue right half, 8x8, for a 3x4x4 model.
        let rgba: Vec<u8> = (0..64)
            .flat_map(|i| {
                if i % 8 < 4 {
                    [255, 0, 0, 255]
                } else {
                    [0, 0, 255, 255]
                }
            })
            .collect();
        let t = Target {
            shape: [3, 4, 4],
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
            digits: false,
        };
        let p = prepare_rgba(rgba, 8, &t).expect("a whole frame");
        assert_eq!(p.original, (8, 8));
        // Red plane: 255 on the left, 0 on the right; blue the other way round.
        assert_eq!((p.pixels[0], p.pixels[3]), (255, 0));
        assert_eq!((p.pixels[32], p.pixels[35]), (0, 255));
        assert!((p.input[0] - 1.0).abs() < 1e-6 && (p.input[3] + 1.0).abs() < 1e-6);
        let e = prepare_rgba(vec![0; 10], 8, &t).err().expect("short frame");
        assert!(e.to_string().contains("came short"), "{e}");
    }

    #[test]
    fn top_k_orders_by_probability() {
        assert_eq!(top_k(&[0.1, 0.6, 0.3], 2), vec![(1, 0.6), (2, 0.3)]);
    }
}
