//! Pictures of tensors (`TileImage`): the texture the kernel writes against the CPU
//! reference, pixel by pixel.

use gpu_nn::ops::visual::{GAP_GREY, TileImage, TileLayout, cpu};
use gpu_nn::{Gpu, Tensor};

use crate::common::{Rng, gpu};

/// Copies the picture's red channel back (rows padded to 256 bytes, as wgpu requires).
fn read_grey(g: &Gpu, img: &TileImage) -> Vec<u8> {
    g.flush().expect("flush");
    let (w, h) = img.layout().size();
    let row = (w * 4).next_multiple_of(256);
    let buf = g.device().create_buffer(&gpu_nn::wgpu::BufferDescriptor {
        label: None,
        size: (row * h) as u64,
        usage: gpu_nn::wgpu::BufferUsages::COPY_DST | gpu_nn::wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut enc = g.device().create_command_encoder(&Default::default());
    enc.copy_texture_to_buffer(
        img.texture().as_image_copy(),
        gpu_nn::wgpu::TexelCopyBufferInfo {
            buffer: &buf,
            layout: gpu_nn::wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row as u32),
                rows_per_image: None,
            },
        },
        img.texture().size(),
    );
    g.queue().submit([enc.finish()]);
    buf.slice(..)
        .map_async(gpu_nn::wgpu::MapMode::Read, |r| r.expect("map"));
    g.device()
        .poll(gpu_nn::wgpu::PollType::wait_indefinitely())
        .expect("poll");
    let data = buf.slice(..).get_mapped_range().expect("mapped").to_vec();
    (0..w * h)
        .map(|i| data[(i / w) * row + (i % w) * 4])
        .collect()
}

fn check(shape: &[usize], layout: TileLayout, seed: u64) {
    let g = gpu();
    let n: usize = shape.iter().product();
    let values = Rng::new(seed).vec(n);
    let t = Tensor::from_slice(&g, &values, shape).expect("upload");
    let img = TileImage::new(&g, layout).expect("texture");
    img.draw(&t).expect("draw");
    // The view a UI samples must be valid too (sRGB views cannot carry storage usage).
    let _view = img.srgb_view();
    let got = read_grey(&g, &img);
    g.sync().expect("no validation error");
    let want = cpu::tiles(&values, &layout);
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    // Rounding of the 8-bit conversion may differ by one level.
    assert!(
        worst <= 1,
        "{shape:?} {layout:?}: off by {worst} grey levels"
    );
    // Not a blank picture: the tiles span black to white.
    assert!(
        got.contains(&0) && got.contains(&255),
        "{shape:?}: no full range"
    );
}

#[test]
fn feature_maps_match_the_cpu_picture() {
    // 5 odd-sized maps in a 3-wide grid: one empty slot at the end stays gap-coloured.
    let shape = [1, 5, 7, 3];
    let l = TileLayout::activation(&shape).expect("layout");
    assert_eq!((l.tiles, l.cols, l.h, l.w), (5, 3, 7, 3));
    assert_eq!(l.size(), (3 * 4 - 1, 2 * 8 - 1));
    check(&shape, l, 1);
    let want = cpu::tiles(&Rng::new(1).vec(105), &l);
    let (w, _) = l.size();
    assert_eq!(
        want[8 * w + 2 * 4],
        GAP_GREY,
        "the empty slot is not gap-coloured"
    );
}

#[test]
fn strips_filters_and_batches_match_the_cpu_picture() {
    // 70 features: a 64-wide strip of two rows, the last 58 padded with zeros.
    let l = TileLayout::activation(&[1, 70]).expect("strip");
    assert_eq!((l.tiles, l.h, l.w, l.len), (1, 2, 64, 70));
    check(&[1, 70], l, 2);
    // Filters [6, 3, 5, 4]: input channels averaged.
    let l = TileLayout::filters(&[6, 3, 5, 4]).expect("filters");
    assert_eq!((l.tiles, l.chans, l.cols), (6, 3, 3));
    check(&[6, 3, 5, 4], l, 3);
    // A batch of 9 generated 2-channel images, 4 per row.
    let l = TileLayout::batch(&[9, 2, 6, 5], 4).expect("batch");
    check(&[9, 2, 6, 5], l, 4);
}

#[test]
fn a_tensor_too_small_for_the_picture_is_an_error() {
    let g = gpu();
    let l = TileLayout::activation(&[1, 4, 3, 3]).expect("layout");
    let img = TileImage::new(&g, l).expect("texture");
    let t = Tensor::from_slice(&g, &[0.0; 20], &[20]).expect("upload");
    let e = img.draw(&t).expect_err("20 values for 36");
    assert!(e.to_string().contains("tile_image"), "{e}");
}
