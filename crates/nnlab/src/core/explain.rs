//! Why a classifier said what it said: Grad-CAM (Selvaraju et al. 2017), the input gradient
//! and SmoothGrad (Smilkov et al. 2017), for a batch of images in one eval-mode forward and
//! backward pass, composed of existing ops (nothing new on the GPU): the class score is
//! `-N · nll_loss(logits, class)`, whose backward seeds exactly that score's gradient, and
//! the activation's gradient is retained on the way down. Only the maps come back.

use anyhow::{Context, Result, ensure};
use gpu_nn::nn::{Ctx, Module};
use gpu_nn::{Gpu, Readback, Tensor, argmax, nll_loss};

use super::summary::Summary;

/// What to explain with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// ReLU(Σ_c α_c A_c), α_c the spatial mean of ∂score/∂A_c, at a layer.
    GradCam,
    /// |∂score/∂x| over the input's channels (Simonyan et al. 2014).
    InputGradient,
    /// The input gradient averaged over noisy copies of the image.
    SmoothGrad,
}

/// Noisy copies per image for SmoothGrad.
pub const SMOOTH_SAMPLES: usize = 16;
/// SmoothGrad's noise, as a fraction of the image's value range (the paper's 10-20%).
pub const SMOOTH_NOISE: f32 = 0.15;

/// The layers Grad-CAM can look at (4-D outputs with more than one pixel) and the default:
/// the last top-level one, the last convolutional stage.
pub fn cam_layers(s: &Summary) -> (Vec<String>, Option<String>) {
    let maps: Vec<&super::summary::Layer> = s
        .layers
        .iter()
        .filter(|l| l.output.len() == 3 && l.output[1] * l.output[2] > 1)
        .collect();
    let default = maps
        .iter()
        .rev()
        .find(|l| l.depth == 0)
        .or(maps.last())
        .map(|l| l.path.clone());
    (maps.iter().map(|l| l.path.clone()).collect(), default)
}

/// Maps on their way back.
pub struct PendingMaps {
    read: Readback,
    classes: Readback,
    got: (Option<Vec<f32>>, Option<Vec<f32>>),
    n: usize,
    /// (height, width) of each map.
    pub size: (usize, usize),
    method: Method,
}

/// Finished maps: one `size.0 * size.1` map per image, and the class each explains.
#[derive(Clone, Debug, PartialEq)]
pub struct Maps {
    /// Row-major maps, not normalised (Grad-CAM is non-negative; the gradient maps are
    /// squared magnitudes).
    pub maps: Vec<Vec<f32>>,
    /// (height, width).
    pub size: (usize, usize),
    /// The class explained for each image.
    pub classes: Vec<usize>,
    /// How.
    pub method: Method,
}

impl PendingMaps {
    fn finish(&self, v: &[f32], c: &[f32]) -> Maps {
        let per = (self.size.0 * self.size.1).max(1);
        Maps {
            maps: v.chunks(per).take(self.n).map(<[f32]>::to_vec).collect(),
            size: self.size,
            classes: c.iter().map(|&k| k as usize).collect(),
            method: self.method,
        }
    }

    /// Non-blocking: the maps once back.
    pub fn try_take(&mut self) -> Result<Option<Maps>> {
        if self.got.0.is_none() {
            self.got.0 = self.read.try_take()?;
        }
        if self.got.1.is_none() {
            self.got.1 = self.classes.try_take()?;
        }
        Ok(match &self.got {
            (Some(v), Some(c)) => Some(self.finish(v, c)),
            _ => None,
        })
    }

    /// Waits for the maps. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(mut self) -> Result<Maps> {
        let v = self.read.take_blocking()?;
        let c = self.classes.take_blocking()?;
        Ok(self.finish(&v, &c))
    }
}

/// The class whose score is explained.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Each image's predicted class.
    Predicted,
    /// One class for every image.
    Class(usize),
    /// A class per image (e.g. what the trained model predicted, for its randomised twin).
    PerImage(Vec<usize>),
}

/// What to explain, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Grad-CAM's layer (a path of [`cam_layers`]).
    pub layer: String,
    /// Whose score is explained.
    pub target: Target,
    /// Seed of SmoothGrad's noise.
    pub seed: u64,
}

/// Records the explanation `r` of images `x` ([N, C, H, W] as `shape`, normalised as the
/// model's input) and submits it; the maps come back later.
pub fn explain(
    gpu: &Gpu,
    net: &dyn Module,
    x: &[f32],
    shape: [usize; 4],
    r: &Request,
) -> Result<PendingMaps> {
    let (method, layer, seed) = (r.method, r.layer.as_str(), r.seed);
    let [n, c, h, w] = shape;
    ensure!(
        n > 0 && x.len() == n * c * h * w,
        "explain: {} values for {shape:?}",
        x.len()
    );
    let (batch, k) = if method == Method::SmoothGrad {
        (noisy_copies(x, n, seed), SMOOTH_SAMPLES)
    } else {
        (x.to_vec(), 1)
    };
    let input = Tensor::from_slice(gpu, &batch, &[n * k, c, h, w])?;
    let input = if method == Method::GradCam {
        input
    } else {
        input.requires_grad()
    };
    let mut ctx = Ctx::eval().capturing_tracked();
    let logits = net.forward(&input, &mut ctx)?;
    let caps = ctx.take_captures();
    let classes_n = *logits
        .shape()
        .get(1)
        .context("the model's output is not [N, classes]")?;
    let check = |cls: usize| {
        ensure!(
            cls < classes_n,
            "class {cls}: the model has {classes_n} classes"
        );
        Ok(cls as f32)
    };
    let targets = match &r.target {
        Target::Class(cls) => Tensor::full(gpu, &[n * k], check(*cls)?)?,
        Target::PerImage(v) => {
            ensure!(v.len() == n, "{} classes for {n} images", v.len());
            let mut t = Vec::with_capacity(n * k);
            for &cls in v {
                t.extend(std::iter::repeat_n(check(cls)?, k));
            }
            Tensor::from_slice(gpu, &t, &[n * k])?
        }
        Target::Predicted if k == 1 => {
            let _g = gpu_nn::no_grad();
            argmax(&logits)?
        }
        Target::Predicted => {
            // The clean image's prediction, for each of its noisy copies.
            let _g = gpu_nn::no_grad();
            let clean = Tensor::from_slice(gpu, x, &[n, c, h, w])?;
            let p = argmax(&net.forward(&clean, &mut Ctx::eval())?)?;
            p.reshape(&[n, 1])?
                .matmul(&Tensor::full(gpu, &[1, k], 1.0)?)?
                .reshape(&[n * k])?
        }
    };
    // Σ_i logits[i, target_i]: its gradient is the one-hot of each image's class.
    let score = nll_loss(&logits, &targets)?.scale(-((n * k) as f32))?;
    let (read, size) = match method {
        Method::GradCam => {
            let a = caps
                .iter()
                .find(|(p, _)| p == layer)
                .map(|(_, t)| t.clone())
                .with_context(|| format!("the model has no layer {layer}"))?;
            let s = a.shape().to_vec();
            ensure!(s.len() == 4, "{layer} outputs {s:?}, not feature maps");
            let grads = score
                .backward_retaining(&Tensor::full(gpu, &[1], 1.0)?, std::slice::from_ref(&a))?;
            let ga = grads
                .get(&a)
                .with_context(|| format!("the class score does not depend on {layer}"))?;
            let _g = gpu_nn::no_grad();
            let (ch, hw) = (s[1], s[2] * s[3]);
            let alpha = ga
                .reshape(&[n, ch, hw])?
                .mean_dim(2)?
                .reshape(&[n, 1, ch])?;
            let cam = alpha
                .matmul(&a.detach().reshape(&[n, ch, hw])?)?
                .relu()?
                .reshape(&[n, hw])?;
            (cam.read()?, (s[2], s[3]))
        }
        Method::InputGradient | Method::SmoothGrad => {
            let grads = score.backward()?;
            let gx = grads.get(&input).context("no gradient reached the input")?;
            let _g = gpu_nn::no_grad();
            // Averaged over the noisy copies, then the magnitude over channels.
            let mean = gx.reshape(&[n, k, c * h * w])?.mean_dim(1)?;
            let mag = mean
                .unary(gpu_nn::Unary::Square)?
                .reshape(&[n, c, h * w])?
                .sum_dim(1)?
                .reshape(&[n, h * w])?;
            (mag.read()?, (h, w))
        }
    };
    let classes = {
        let _g = gpu_nn::no_grad();
        let t = if k > 1 {
            // Every copy of an image has its class.
            targets.reshape(&[n, k])?.mean_dim(1)?
        } else {
            targets
        };
        t.read()?
    };
    Ok(PendingMaps {
        read,
        classes,
        got: (None, None),
        n,
        size,
        method,
    })
}

/// [`SMOOTH_SAMPLES`] copies of each image with Gaussian noise of [`SMOOTH_NOISE`] times the
/// image's value range.
fn noisy_copies(x: &[f32], n: usize, seed: u64) -> Vec<f32> {
    let per = x.len() / n;
    let mut rng = gpu_nn::init::SeedRng::new(seed);
    let mut out = Vec::with_capacity(x.len() * SMOOTH_SAMPLES);
    for img in x.chunks(per) {
        let (lo, hi) = img
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let sigma = SMOOTH_NOISE * (hi - lo).max(1e-6);
        for _ in 0..SMOOTH_SAMPLES {
            out.extend(img.iter().map(|&v| v + sigma * rng.normal()));
        }
    }
    out
}

/// A map resized to (h, w) bilinearly (pixel centres aligned, as
/// `F.interpolate(..., align_corners=False)`) and scaled to [0, 1] by its maximum.
pub fn upsample(map: &[f32], from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    let (fh, fw) = from;
    let (th, tw) = to;
    let at = |y: usize, x: usize| map[y.min(fh - 1) * fw + x.min(fw - 1)];
    let mut out = Vec::with_capacity(th * tw);
    for y in 0..th {
        let sy = ((y as f32 + 0.5) * fh as f32 / th as f32 - 0.5).max(0.0);
        let (y0, fy) = (sy.floor() as usize, sy.fract());
        for x in 0..tw {
            let sx = ((x as f32 + 0.5) * fw as f32 / tw as f32 - 0.5).max(0.0);
            let (x0, fx) = (sx.floor() as usize, sx.fract());
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1) * fx;
            let bottom = at(y0 + 1, x0) * (1.0 - fx) + at(y0 + 1, x0 + 1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    let max = out.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        out.iter_mut().for_each(|v| *v /= max);
    }
    out
}

/// Spearman's rank correlation of two maps of the same size (ties get their mean rank).
pub fn rank_correlation(a: &[f32], b: &[f32]) -> f64 {
    fn ranks(v: &[f32]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let mean = (i + j) as f64 / 2.0;
            for &k in &idx[i..=j] {
                r[k] = mean;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// The "turbo"-like perceptual colormap (Mikhailov 2019, polynomial fit), for overlays.
pub fn turbo(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let r = 0.1357 + t * (4.5974 - t * (42.3277 - t * (130.5887 - t * (150.5666 - t * 58.1375))));
    let g = 0.0914 + t * (2.1856 + t * (4.8052 - t * (14.0195 - t * (4.2109 + t * 2.7747))));
    let b = 0.1067 + t * (12.5925 - t * (60.1097 - t * (109.0745 - t * (88.5066 - t * 26.8183))));
    let u = |v: f32| (v.clamp(0.0, 1.0) * 255.0) as u8;
    [u(r), u(g), u(b)]
}

/// `rgb` (h*w pixels) with `map` (h*w in [0, 1]) laid over it at `opacity`.
pub fn overlay(rgb: &[[u8; 3]], map: &[f32], opacity: f32) -> Vec<[u8; 3]> {
    rgb.iter()
        .zip(map)
        .map(|(p, &m)| {
            let c = turbo(m);
            let a = opacity.clamp(0.0, 1.0);
            let mix = |x: u8, y: u8| (f32::from(x) * (1.0 - a) + f32::from(y) * a) as u8;
            [mix(p[0], c[0]), mix(p[1], c[1]), mix(p[2], c[2])]
        })
        .collect()
}
