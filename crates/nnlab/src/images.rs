//! Image files as model input: decoding any format `image` reads, conversion to grey or
//! colour, resizing, normalisation; PNG grids of samples. Image folders are in `folder`.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use image::DynamicImage;
use image::imageops::FilterType;

/// ImageNet's per-channel normalisation, which torchvision's pretrained models expect.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How an image becomes a model input.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// (C, H, W): C = 1 converts to grey, C = 3 to RGB.
    pub shape: [usize; 3],
    /// Per-channel mean of pixels in [0, 1] (one value per channel).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// Invert intensities first (dark strokes on white paper for a model trained on MNIST's
    /// white strokes on black).
    pub invert: bool,
}

impl Preprocess {
    /// Default normalisation for `shape`: ImageNet's for colour, (0.5, 0.5) for grey.
    pub fn default_for(shape: [usize; 3]) -> Result<Preprocess> {
        let (mean, std) = match shape[0] {
            3 => (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
            1 => (vec![0.5], vec![0.5]),
            c => bail!("images convert to 1 (grey) or 3 (RGB) channels, not {c}"),
        };
        Ok(Preprocess {
            shape,
            mean,
            std,
            invert: false,
        })
    }
}

/// Largest side decoded: bigger images are refused from their header, before anything is
/// allocated (a 1 MB PNG can declare 16384x16384 RGBA: 1 GiB). Smaller in the browser.
pub const MAX_SIDE: u32 = if cfg!(target_arch = "wasm32") {
    8192
} else {
    16_384
};
/// Largest decoder allocation.
pub const MAX_ALLOC: u64 = if cfg!(target_arch = "wasm32") {
    256 << 20
} else {
    1 << 30
};

/// Decodes an image (PNG, JPEG, GIF, BMP, WebP; format guessed from the content) within
/// [`MAX_SIDE`] and [`MAX_ALLOC`]; `name` names it in errors.
pub fn decode(bytes: &[u8], name: &str) -> Result<DynamicImage> {
    ensure!(!bytes.is_empty(), "{name}: the file is empty");
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("{name}: cannot read the file"))?;
    ensure!(
        reader.format().is_some(),
        "{name}: cannot decode: not an image nnlab can read (PNG, JPEG, GIF, BMP or WebP)"
    );
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => anyhow::anyhow!(
            "{name}: cannot decode: the image is too large (at most {MAX_SIDE}x{MAX_SIDE} \
             pixels, {} MiB)",
            MAX_ALLOC >> 20
        ),
        e => anyhow::anyhow!("{name}: cannot decode: the image is corrupt or unsupported: {e}"),
    })?;
    ensure!(
        img.width() > 0 && img.height() > 0,
        "{name}: the image has no pixels"
    );
    Ok(img)
}

/// Converts a decoded image to [C, H, W] pixels: grey or RGB as `shape` says, scaled so
/// that it covers H x W and centre-cropped (square images are simply resized), inverted
/// when asked.
pub fn to_pixels(img: &DynamicImage, shape: [usize; 3], invert: bool) -> Result<Vec<u8>> {
    let [c, h, w] = shape;
    let img = if img.width() as usize == w && img.height() as usize == h {
        img.clone()
    } else {
        img.resize_to_fill(w as u32, h as u32, FilterType::Triangle)
    };
    let raw: Vec<u8> = match c {
        1 => img.to_luma8().into_raw(),
        3 => img.to_rgb8().into_raw(),
        _ => bail!("images convert to 1 (grey) or 3 (RGB) channels, not {c}"),
    };
    let mut out = vec![0; c * h * w];
    for (i, &v) in raw.iter().enumerate() {
        out[(i % c) * h * w + i / c] = if invert { 255 - v } else { v };
    }
    Ok(out)
}

/// Converts a decoded image to a normalised [C, H, W] input: [`to_pixels`], then each
/// channel normalised with `p`'s statistics.
pub fn to_input(img: &DynamicImage, p: &Preprocess) -> Result<Vec<f32>> {
    let [c, h, w] = p.shape;
    ensure!(
        p.mean.len() == c && p.std.len() == c,
        "normalisation has {} means and {} stds for {c} channels",
        p.mean.len(),
        p.std.len()
    );
    let px = to_pixels(img, p.shape, p.invert)?;
    Ok(px
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = i / (h * w);
            (f32::from(v) / 255.0 - p.mean[ch]) / p.std[ch]
        })
        .collect())
}

/// Reads, decodes and converts one image file.
pub fn load_input(path: &Path, p: &Preprocess) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    to_input(&decode(&bytes, &path.display().to_string())?, p)
}

/// Writes `n` grey [H, W] images with values in [-1, 1] as a PNG grid of `cols` columns
/// with a 2-pixel border; returns the PNG bytes.
pub fn grid_png(images: &[f32], n: usize, h: usize, w: usize, cols: usize) -> Result<Vec<u8>> {
    ensure!(
        images.len() == n * h * w && n > 0 && cols > 0,
        "grid: {} values for {n} images of {h}x{w}",
        images.len()
    );
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let mut px = vec![0u8; gw * gh];
    for k in 0..n {
        let (oy, ox) = (gap + (k / cols) * (h + gap), gap + (k % cols) * (w + gap));
        for y in 0..h {
            for x in 0..w {
                let v = images[(k * h + y) * w + x];
                px[(oy + y) * gw + ox + x] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
            }
        }
    }
    let img =
        image::GrayImage::from_raw(gw as u32, gh as u32, px).context("grid: image buffer size")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .context("grid: PNG encoding")?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    #[test]
    fn converts_colour_to_grey_resizes_and_normalises() {
        // A 4x4 white RGB image becomes a 1x2x2 grey input of (1 - 0.5) / 0.5 = 1.
        let white = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            4,
            4,
            image::Rgb([255, 255, 255]),
        ));
        let img = decode(&png(white), "w.png").expect("decode");
        let p = Preprocess::default_for([1, 2, 2]).expect("grey");
        assert_eq!(to_input(&img, &p).expect("input"), vec![1.0; 4]);
        let inv = Preprocess {
            invert: true,
            ..p.clone()
        };
        assert_eq!(to_input(&img, &inv).expect("input"), vec![-1.0; 4]);
        // Grey to RGB: three planes, each normalised with its own statistics.
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 5, image::Luma([0])));
        let p3 = Preprocess::default_for([3, 2, 2]).expect("rgb");
        let v = to_input(&grey, &p3).expect("input");
        assert_eq!(v.len(), 12);
        assert!((v[0] + IMAGENET_MEAN[0] / IMAGENET_STD[0]).abs() < 1e-6);
        assert!((v[11] + IMAGENET_MEAN[2] / IMAGENET_STD[2]).abs() < 1e-6);
        let e = format!("{:#}", decode(b"not an image", "bad.png").expect_err("bad"));
        assert!(e.contains("bad.png") && e.contains("cannot decode"), "{e}");
    }

    #[test]
    fn a_png_declaring_fifty_thousand_pixels_a_side_is_refused_unread() {
        // A 1x1 PNG whose header says 50000 x 50000 (RGBA: 10 GB); the CRC is fixed up so
        // only the size is wrong.
        let img = image::RgbaImage::from_pixel(1, 1, image::Rgba([0, 0, 0, 255]));
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encode");
        bytes[16..20].copy_from_slice(&50_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&50_000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = format!("{:#}", decode(&bytes, "huge.png").expect_err("huge"));
        assert!(e.contains("huge.png") && e.contains("too large"), "{e}");
    }

    /// CRC-32 as PNG chunks use it.
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn grid_is_a_png_of_the_right_size() {
        let bytes = grid_png(&[0.0; 3 * 4], 3, 2, 2, 2).expect("grid");
        let img = decode(&bytes, "grid").expect("decode");
        assert_eq!((img.width(), img.height()), (2 * 4 + 2, 2 * 4 + 2));
        assert!(grid_png(&[0.0; 5], 3, 2, 2, 2).is_err());
    }
}
