//! Images in and out: decode PNG/JPEG into [-1, 1] tensors, write PNG/JPEG, draw merge maps.
use crate::io::guard::guarded_decode;
use crate::io::marker::{image_format, Format};
use crate::io::missing::Missing;
use crate::io::output::Outputs;
use crate::io::preprocess::{fit, Preprocess};
use anyhow::{anyhow, bail, Context, Result};
use burn::prelude::*;
use image::codecs::jpeg::JpegEncoder;
use image::{imageops::FilterType, RgbImage};
use std::path::Path;

/// Reads an image as [1, 3, R, R] in [-1, 1]. Images of another size are padded or resized
/// (shorter side to R, bicubic, then centre-cropped) as `how` says; the returned note says which.
pub fn load_image(
    path: &Path,
    resolution: usize,
    how: Preprocess,
    device: &Device,
) -> Result<(Tensor<4>, Option<String>)> {
    if !path.exists() {
        return Err(Missing(format!("image {} does not exist", path.display())).into());
    }
    let img = decode_image(path)?;
    let (w, h) = img.dimensions();
    let r = resolution as u32;
    let note = match (w, h) {
        _ if (w, h) == (r, r) => None,
        _ if how.pads(w, h, r) => Some(format!("{} is {w}×{h}: padded with black to {r}×{r}", path.display())),
        _ => Some(format!("{} is {w}×{h}: resized (shorter side) and centre-cropped to {r}×{r}", path.display())),
    };
    Ok((rgb_to_tensor(&fit(&img, r, how, FilterType::CatmullRom), device), note))
}

/// Decodes the PNG or JPEG file `path` (format from its bytes) as RGB: the one place images
/// are decoded. The decoder runs under the `image` crate's memory limits and behind
/// [`guarded_decode`], so hostile bytes give an error naming the file, never a panic.
pub fn decode_image(path: &Path) -> Result<RgbImage> {
    let img = guarded_decode(path, || {
        image::ImageReader::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .with_guessed_format()
            .with_context(|| format!("cannot read {}", path.display()))?
            .decode()
            .map_err(|e| anyhow!("{} is not a readable image: {e}", path.display()))
    })?
    .to_rgb8();
    if img.width() == 0 || img.height() == 0 {
        bail!("{} is an empty ({}×{}) image", path.display(), img.width(), img.height());
    }
    Ok(img)
}

pub fn rgb_to_tensor(img: &RgbImage, device: &Device) -> Tensor<4> {
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    let mut data = vec![0f32; 3 * h * w];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            data[c * h * w + y as usize * w + x as usize] = p[c] as f32 / 127.5 - 1.0;
        }
    }
    Tensor::from_data(TensorData::new(data, [1, 3, h, w]), device)
}

/// [3, H, W] in [-1, 1] → an RGB image (values clamped).
pub fn tensor_to_rgb(t: Tensor<3>) -> RgbImage {
    let [c, h, w] = t.dims();
    assert_eq!(c, 3, "RGB images have 3 channels");
    let v = crate::io::readback::floats(t);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let px =
            |ch: usize| (((v[ch * h * w + y as usize * w + x as usize] + 1.0) * 127.5).round().clamp(0.0, 255.0)) as u8;
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// Writes `img` through `out` as a JPEG when `path` ends in .jpg or .jpeg, else as a PNG
/// (`Outputs` refuses other extensions).
pub fn save_image(img: &RgbImage, path: &Path, out: &Outputs) -> Result<()> {
    let mut buf = Vec::new();
    match image_format(path) {
        Some(image::ImageFormat::Jpeg) => JpegEncoder::new_with_quality(&mut buf, 95).encode_image(img)?,
        _ => img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)?,
    }
    out.write(path, Format::Image, &buf)
}

/// A distinct colour for group `g` (golden-angle hue steps).
fn colour(g: usize) -> [f32; 3] {
    let hue = (g as f32 * 137.508) % 360.0;
    let (s, v) = (0.75, 0.95);
    let c = v * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let (r, gg, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (gg + m) * 255.0, (b + m) * 255.0]
}

/// Draws every kept token's group in its own colour over the image, with dark borders
/// between groups. `group` has L = side² entries (row-major token grid).
pub fn merge_map(img: &RgbImage, group: &[usize], side: usize) -> RgbImage {
    let (w, h) = img.dimensions();
    let cell = |x: u32, y: u32| group[(y as usize * side / h as usize) * side + x as usize * side / w as usize];
    RgbImage::from_fn(w, h, |x, y| {
        let g = cell(x, y);
        let edge = (x + 1 < w && cell(x + 1, y) != g) || (y + 1 < h && cell(x, y + 1) != g);
        let p = img.get_pixel(x, y);
        let c = colour(g);
        let mix = |i: usize| {
            let v = 0.45 * p[i] as f32 + 0.55 * c[i];
            (if edge { v * 0.35 } else { v }) as u8
        };
        image::Rgb([mix(0), mix(1), mix(2)])
    })
}
