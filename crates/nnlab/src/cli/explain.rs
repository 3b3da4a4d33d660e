//! `nnlab explain`: Grad-CAM (or the input gradient, or SmoothGrad) of image files as PNG
//! overlays, one per image, at the model's input as it sees it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};

use super::classify::{Source, model_inputs};
use super::{ensure_writable_dir, gpu};
use crate::checkpoint::write_atomic;
use crate::core::explain::{Method, Request, Target, cam_layers, explain, overlay, upsample};
use crate::core::summary::summarise;

/// The methods, as the command line names them.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum How {
    /// Grad-CAM at --layer.
    Gradcam,
    /// The magnitude of the input gradient.
    Gradient,
    /// The input gradient averaged over noisy copies.
    Smoothgrad,
}

/// `nnlab explain`.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Image files (PNG, JPEG, GIF, BMP, WebP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The classifier.
    #[command(flatten)]
    pub source: Source,
    /// The layer Grad-CAM looks at (default: the last convolutional stage); an unknown
    /// name lists the layers.
    #[arg(long)]
    pub layer: Option<String>,
    /// The class explained, by name or index (default: each image's predicted class).
    #[arg(long)]
    pub class: Option<String>,
    /// How.
    #[arg(long, value_enum, default_value = "gradcam")]
    pub method: How,
    /// Opacity of the map over the image.
    #[arg(long, default_value_t = 0.5)]
    pub opacity: f32,
    /// Invert intensities first (dark digits on white paper for an MNIST model).
    #[arg(long)]
    pub invert: bool,
    /// Directory the overlays go to (`NAME-METHOD.png`).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `nnlab explain`.
pub fn explain_images(a: ExplainArgs) -> Result<()> {
    ensure!(
        (0.0..=1.0).contains(&a.opacity),
        "--opacity must be within 0 and 1"
    );
    ensure_writable_dir(&a.out, "--out")?;
    let gpu = gpu()?;
    let (net, spec) = a.source.load(&gpu)?;
    let method = match a.method {
        How::Gradcam => Method::GradCam,
        How::Gradient => Method::InputGradient,
        How::Smoothgrad => Method::SmoothGrad,
    };
    let (layers, default) = cam_layers(&summarise(&gpu, net.as_ref(), spec.input)?);
    let layer = match (&a.layer, default) {
        (Some(l), _) if layers.contains(l) => l.clone(),
        (Some(l), _) => bail!(
            "--layer {l}: {} has none; its layers: {}",
            spec.name,
            layers.join(", ")
        ),
        (None, Some(d)) => d,
        (None, None) if method != Method::GradCam => String::new(),
        (None, None) => bail!("{} has no feature maps for Grad-CAM", spec.name),
    };
    let target = match &a.class {
        None => Target::Predicted,
        Some(c) => Target::Class(
            spec.class_names
                .iter()
                .position(|n| n == c)
                .or_else(|| c.parse().ok().filter(|&i| i < spec.classes()))
                .with_context(|| format!("--class {c}: not a class of {}", spec.name))?,
        ),
    };
    let x = model_inputs(&spec, &a.images, a.invert)?;
    let [ch, h, w] = spec.input;
    let n = a.images.len();
    let req = Request {
        method,
        layer: layer.clone(),
        target,
        seed: 1,
    };
    let maps = explain(&gpu, net.as_ref(), &x, [n, ch, h, w], &req)?.wait_blocking()?;
    let suffix = match a.method {
        How::Gradcam => "gradcam",
        How::Gradient => "gradient",
        How::Smoothgrad => "smoothgrad",
    };
    // Small inputs are enlarged (nearest) so that the overlay can be seen.
    let zoom = (224 / h.min(w)).max(1);
    for (i, path) in a.images.iter().enumerate() {
        let img = &x[i * ch * h * w..(i + 1) * ch * h * w];
        let px = h * w;
        let seen: Vec<[u8; 3]> = (0..px)
            .map(|k| {
                let v = |c: usize| {
                    let c = c.min(ch - 1);
                    ((img[c * px + k] * spec.std[c] + spec.mean[c]).clamp(0.0, 1.0) * 255.0) as u8
                };
                [v(0), v(1), v(2)]
            })
            .collect();
        let map = upsample(&maps.maps[i], maps.size, (h, w));
        let mixed = overlay(&seen, &map, a.opacity);
        let out = image::RgbImage::from_fn((w * zoom) as u32, (h * zoom) as u32, |x, y| {
            image::Rgb(mixed[(y as usize / zoom) * w + x as usize / zoom])
        });
        let stem = path
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned());
        let file = a.out.join(format!("{stem}-{suffix}.png"));
        let mut bytes = std::io::Cursor::new(Vec::new());
        out.write_to(&mut bytes, image::ImageFormat::Png)?;
        write_atomic(&file, &bytes.into_inner())?;
        let class = maps.classes[i];
        let name = spec
            .class_names
            .get(class)
            .cloned()
            .unwrap_or(class.to_string());
        let at = if method == Method::GradCam {
            format!(" at {layer}")
        } else {
            String::new()
        };
        println!("{}: class {name}{at} -> {}", path.display(), file.display());
    }
    Ok(())
}
