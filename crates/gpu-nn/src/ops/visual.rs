//! Tensors as pictures for a UI on the same device: a kernel writes a grid of grey tiles
//! (feature maps, filters, generated samples) into a texture that the UI samples directly,
//! so nothing goes through the CPU. Each tile is scaled to its own min..max.

use crate::error::{Result, ensure_shape};
use crate::gpu::Gpu;
use crate::kernel::{Params, kernels};
use crate::tensor::Tensor;

kernels!("visual.wgsl";
    TILES = "tiles" [R, I],
);

/// Grey level of the one-pixel gap between tiles.
pub const GAP_GREY: u8 = 40;

/// How a tensor is laid out as a picture: `tiles` tiles of `h` x `w` pixels, `cols` per
/// row, one-pixel gaps; each tile averages `chans` consecutive planes of `h * w` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileLayout {
    /// Tiles with data.
    pub tiles: usize,
    /// Tile height in pixels.
    pub h: usize,
    /// Tile width in pixels.
    pub w: usize,
    /// Tiles per grid row.
    pub cols: usize,
    /// Planes averaged into one tile (1 for activations, input channels for filters).
    pub chans: usize,
    /// Values that exist per plane; the rest of a plane reads as 0 (a padded strip).
    pub len: usize,
}

impl TileLayout {
    /// One image's activations: `[1, C, H, W]` as C tiles in a near-square grid; a 1x1
    /// map or a `[1, F]` vector as one strip 64 values wide.
    pub fn activation(shape: &[usize]) -> Option<Self> {
        match *shape {
            [1, c, h, w] if c > 0 && h * w > 1 => Some(Self {
                tiles: c,
                h,
                w,
                cols: square_cols(c),
                chans: 1,
                len: h * w,
            }),
            [1, f, ..] if f > 0 => {
                let per: usize = shape[2..].iter().product();
                let f = f * per;
                let cols = f.min(64);
                Some(Self {
                    tiles: 1,
                    h: f.div_ceil(cols),
                    w: cols,
                    cols: 1,
                    chans: 1,
                    len: f,
                })
            }
            _ => None,
        }
    }

    /// Conv filters `[out, in, kh, kw]` as `out` tiles, input channels averaged.
    pub fn filters(shape: &[usize]) -> Option<Self> {
        let [o, i, kh, kw] = *shape else { return None };
        (o > 0 && i > 0 && kh * kw > 0).then(|| Self {
            tiles: o,
            h: kh,
            w: kw,
            cols: square_cols(o),
            chans: i,
            len: kh * kw,
        })
    }

    /// A batch of images `[N, C, H, W]` as N tiles, channels averaged, `cols` per row.
    pub fn batch(shape: &[usize], cols: usize) -> Option<Self> {
        let [n, c, h, w] = *shape else { return None };
        (n > 0 && c > 0 && h * w > 0).then(|| Self {
            tiles: n,
            h,
            w,
            cols: cols.clamp(1, n),
            chans: c,
            len: h * w,
        })
    }

    /// Picture size in pixels: (width, height).
    pub fn size(&self) -> (usize, usize) {
        let rows = self.tiles.div_ceil(self.cols).max(1);
        (self.cols * (self.w + 1) - 1, rows * (self.h + 1) - 1)
    }

    /// Values of the tensor this layout reads (the last plane may be a padded strip).
    pub fn numel(&self) -> usize {
        (self.tiles * self.chans - 1) * self.h * self.w + self.len
    }

    fn slots(&self) -> usize {
        self.tiles.div_ceil(self.cols) * self.cols
    }
}

fn square_cols(n: usize) -> usize {
    ((n as f64).sqrt().ceil() as usize).max(1)
}

/// A picture on the GPU that kernels write and a UI samples: an `Rgba8Unorm` texture with
/// storage and texture-binding usage, viewable as `Rgba8UnormSrgb` (the grey levels are
/// sRGB values, as an 8-bit image file would hold).
#[derive(Clone)]
pub struct TileImage {
    gpu: Gpu,
    layout: TileLayout,
    texture: wgpu::Texture,
    storage: wgpu::TextureView,
    /// Viewable as `Rgba8UnormSrgb` (everywhere but OpenGL).
    srgb: bool,
}

impl TileImage {
    /// Creates the texture for `layout`. Errors if it exceeds the device's texture size.
    pub fn new(gpu: &Gpu, layout: TileLayout) -> Result<Self> {
        let (w, h) = layout.size();
        let max = gpu.limits().max_texture_dimension_2d as usize;
        ensure_shape!(
            w <= max && h <= max && layout.numel() > 0,
            "tile_image",
            "a {w}x{h} picture of {layout:?} does not fit the device's {max}x{max} textures"
        );
        // OpenGL cannot view a texture in another format: there the picture is sampled as
        // it is stored (the grey levels look lighter than on other devices).
        let srgb = gpu.adapter_info().backend != wgpu::Backend::Gl;
        let texture = gpu.device().create_texture(&wgpu::TextureDescriptor {
            label: Some("gpu-nn tile image"),
            size: wgpu::Extent3d {
                width: w as u32,
                height: h as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_SRC,
            view_formats: if srgb {
                &[wgpu::TextureFormat::Rgba8UnormSrgb]
            } else {
                &[]
            },
        });
        let storage = texture.create_view(&wgpu::TextureViewDescriptor::default());
        Ok(Self {
            gpu: gpu.clone(),
            layout,
            texture,
            storage,
            srgb,
        })
    }

    /// The layout it was made for.
    pub fn layout(&self) -> TileLayout {
        self.layout
    }

    /// The texture (`Rgba8Unorm`, size [`TileLayout::size`]).
    pub fn texture(&self) -> &wgpu::Texture {
        &self.texture
    }

    /// A view for sampling that decodes the grey levels as sRGB, as egui expects of
    /// 8-bit images.
    pub fn srgb_view(&self) -> wgpu::TextureView {
        self.texture.create_view(&wgpu::TextureViewDescriptor {
            format: Some(if self.srgb {
                wgpu::TextureFormat::Rgba8UnormSrgb
            } else {
                wgpu::TextureFormat::Rgba8Unorm
            }),
            // sRGB formats cannot be storage-bound: this view is for sampling only.
            usage: Some(wgpu::TextureUsages::TEXTURE_BINDING),
            ..Default::default()
        })
    }

    /// Records drawing `t` (at least [`TileLayout::numel`] values, read from the start)
    /// into the picture, in order with the other recorded work. Submitted with the next
    /// flush or readback; a UI on the same queue sees it in the frames after that.
    pub fn draw(&self, t: &Tensor) -> Result<()> {
        let l = self.layout;
        ensure_shape!(
            t.numel() >= l.numel(),
            "tile_image",
            "{:?} has {} values, the picture {l:?} needs {}",
            t.shape(),
            t.numel(),
            l.numel()
        );
        let (w, h) = l.size();
        let p = Params::new()
            .u(0)
            .u(l.tiles)
            .u(l.h)
            .u(l.w)
            .u(l.cols)
            .u(l.chans)
            .u(l.len)
            .u(w)
            .u(h)
            .u(0)
            .u(0)
            .u(0);
        self.gpu.dispatch_with(
            &TILES,
            &p.0,
            vec![
                t.buf().as_entire_binding(),
                wgpu::BindingResource::TextureView(&self.storage),
            ],
            [l.slots() as u32, 1, 1],
        );
        Ok(())
    }
}

/// CPU reference of the picture: one grey level per pixel, row-major, `size()` pixels.
pub mod cpu {
    use super::{GAP_GREY, TileLayout};

    /// The grey levels [`super::TileImage::draw`] writes for `values`.
    pub fn tiles(values: &[f32], l: &TileLayout) -> Vec<u8> {
        let (gw, gh) = l.size();
        let mut px = vec![GAP_GREY; gw * gh];
        let plane = l.h * l.w;
        let value = |t: usize, i: usize| -> f32 {
            if i >= l.len {
                return 0.0;
            }
            let s: f32 = (0..l.chans)
                .map(|c| values[(t * l.chans + c) * plane + i])
                .sum();
            s / l.chans as f32
        };
        for t in 0..l.tiles {
            let (lo, hi) = (0..plane).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), i| {
                let v = value(t, i);
                (a.min(v), b.max(v))
            });
            let span = if hi > lo { hi - lo } else { 1.0 };
            let (r0, c0) = ((t / l.cols) * (l.h + 1), (t % l.cols) * (l.w + 1));
            for y in 0..l.h {
                for x in 0..l.w {
                    let g = ((value(t, y * l.w + x) - lo) / span).clamp(0.0, 1.0);
                    px[(r0 + y) * gw + c0 + x] = (g * 255.0).round() as u8;
                }
            }
        }
        px
    }
}
