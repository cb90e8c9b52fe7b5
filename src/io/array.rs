//! Images handed over as a raw array (the Python binding's numpy input): checked and brought to
//! the tokenizer's R×R input exactly as image files are (`load_image`): uint8 RGB or greyscale
//! pixels of any size go through the config's `preprocess`; float images in [-1, 1] at R×R are
//! taken as they are, float images of another size are rounded to 8 bits first (as a file
//! would hold them) and then preprocessed.
use crate::io::data::Source;
use crate::io::preprocess::{fit, Preprocess};
use anyhow::{bail, Result};
use burn::prelude::*;
use image::{imageops::FilterType, RgbImage};

/// What every array error says the input may be.
const EXPECTED: &str = "images are uint8 [B, H, W, 3] (greyscale [B, H, W] or [B, H, W, 1]) or float [B, 3, H, W] \
                        (greyscale [B, 1, H, W]) in [-1, 1]";

/// A borrowed array: numpy's dtype name, its shape and its bytes in C order, native byte order.
pub struct ArrayRef<'a> {
    pub dtype: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

/// The element types an image array may have.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    U8,
    F32,
    F64,
}

impl ArrayRef<'_> {
    fn kind(&self) -> Result<Kind> {
        Ok(match self.dtype {
            "uint8" => Kind::U8,
            "float32" => Kind::F32,
            "float64" => Kind::F64,
            d => bail!("{EXPECTED}; got dtype {d}"),
        })
    }

    /// (B, H, W, channels) of the array, checked against its byte length.
    fn layout(&self, kind: Kind) -> Result<[usize; 4]> {
        let s = self.shape;
        let dims = match (kind, s.len()) {
            (Kind::U8, 3) => [s[0], s[1], s[2], 1],
            (Kind::U8, 4) if s[3] == 3 || s[3] == 1 => [s[0], s[1], s[2], s[3]],
            (Kind::F32 | Kind::F64, 4) if s[1] == 3 || s[1] == 1 => [s[0], s[2], s[3], s[1]],
            _ => bail!("{EXPECTED}; got a {} array of shape {s:?}", self.dtype),
        };
        let [b, h, w, _] = dims;
        if b == 0 {
            bail!("no images: the batch of shape {s:?} is empty");
        }
        if h == 0 || w == 0 {
            bail!("images of {h}×{w} pixels are empty (shape {s:?})");
        }
        let size = if kind == Kind::U8 {
            1
        } else if kind == Kind::F32 {
            4
        } else {
            8
        };
        let need = s.iter().try_fold(size, |a: usize, &d| a.checked_mul(d));
        if need != Some(self.data.len()) {
            bail!("the array of shape {s:?} and dtype {} does not match its {} bytes", self.dtype, self.data.len());
        }
        Ok(dims)
    }

    /// The elements as f32, checking float values are finite and in [-1, 1].
    fn floats(&self, kind: Kind) -> Result<Vec<f32>> {
        let v: Vec<f32> = match kind {
            Kind::U8 => return Ok(self.data.iter().map(|&p| p as f32).collect()),
            Kind::F32 => self.data.chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().unwrap())).collect(),
            Kind::F64 => self.data.chunks_exact(8).map(|c| f64::from_ne_bytes(c.try_into().unwrap()) as f32).collect(),
        };
        if let Some(bad) = v.iter().find(|x| !x.is_finite() || x.abs() > 1.0 + 1e-4) {
            bail!("float images lie in [-1, 1], found {bad} (8-bit pixels are passed as uint8 [B, H, W, 3])");
        }
        Ok(v)
    }
}

/// The images of `a` as the tokenizer's input [B, 3, R, R] in [-1, 1] (see the module
/// documentation); an error says in one line what the array should be.
pub fn images_from_array(a: &ArrayRef, resolution: usize, how: Preprocess, device: &Device) -> Result<Tensor<4>> {
    let kind = a.kind()?;
    let [b, h, w, c] = a.layout(kind)?;
    let v = a.floats(kind)?;
    let r = resolution;
    let plane = r * r;
    let mut out = vec![0f32; b * 3 * plane];
    for i in 0..b {
        let dst = &mut out[i * 3 * plane..(i + 1) * 3 * plane];
        if kind != Kind::U8 && (h, w) == (r, r) {
            // Float images at the model's size are used as they are (greyscale repeated).
            for ch in 0..3 {
                let src = (i * c + ch.min(c - 1)) * plane;
                dst[ch * plane..(ch + 1) * plane].copy_from_slice(&v[src..src + plane]);
            }
            continue;
        }
        let img = fit(&rgb_image(&v, kind, [h, w, c], i), r as u32, how, FilterType::CatmullRom);
        for (x, y, p) in img.enumerate_pixels() {
            for ch in 0..3 {
                dst[(ch * r + y as usize) * r + x as usize] = p[ch] as f32 / 127.5 - 1.0;
            }
        }
    }
    Ok(Tensor::from_data(TensorData::new(out, [b, 3, r, r]), device))
}

/// The images of `a` as 8-bit RGB images at their own size (float images rounded as
/// `tensor_to_rgb` does): what the metrics compare.
pub fn rgb_images(a: &ArrayRef) -> Result<Vec<RgbImage>> {
    let kind = a.kind()?;
    let [b, h, w, c] = a.layout(kind)?;
    let v = a.floats(kind)?;
    Ok((0..b).map(|i| rgb_image(&v, kind, [h, w, c], i)).collect())
}

/// Image `i` of the elements `v` ([B, H, W, C] for uint8, [B, C, H, W] for floats).
fn rgb_image(v: &[f32], kind: Kind, [h, w, c]: [usize; 3], i: usize) -> RgbImage {
    let at = |ch: usize, y: usize, x: usize| match kind {
        Kind::U8 => ((i * h + y) * w + x) * c + ch.min(c - 1),
        _ => ((i * c + ch.min(c - 1)) * h + y) * w + x,
    };
    let to_u8 = |p: f32| match kind {
        Kind::U8 => p as u8,
        _ => ((p + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8,
    };
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let px = |ch| to_u8(v[at(ch, y as usize, x as usize)]);
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// Images held in memory as a data source (labels 0), for the metrics of arrays.
pub struct ImageList(pub Vec<RgbImage>);

impl Source for ImageList {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> Result<(RgbImage, usize)> {
        Ok((self.0[i].clone(), 0))
    }
    fn classes(&self) -> usize {
        1
    }
    fn name(&self, i: usize) -> String {
        format!("image {i} of the array")
    }
}
