//! How an image of any size becomes the tokenizer's R×R input. The choice is part of the
//! tokenizer's config (`preprocess`), so that training, evaluation, probing, token extraction,
//! `reconstruct` and `encode` all feed the model the same way.
use image::{imageops::FilterType, RgbImage};
use serde::{Deserialize, Serialize};

/// The longest side an image keeps before resizing, as a multiple of its shorter side: a very
/// elongated image (say 1×4000) is first cut to its central 1×8 band, so that resizing its
/// shorter side to R never makes a huge intermediate image. The crop only ever uses that band.
pub const MAX_ASPECT: u32 = 8;

/// Preprocessing of inputs whose size is not R×R.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preprocess {
    /// Images no larger than R×R are centred on a black R×R canvas (Fashion-MNIST's 28² → 32²,
    /// how the bundled model was trained); larger ones are resized and cropped as by `Resize`.
    #[default]
    Pad,
    /// The shorter side is resized to R and the R×R centre (or, in training, a random R×R
    /// window) is cropped.
    Resize,
}

impl Preprocess {
    /// Whether a `w`×`h` image is padded (rather than resized) to `r`×`r`.
    pub fn pads(self, w: u32, h: u32, r: u32) -> bool {
        self == Self::Pad && w <= r && h <= r
    }
}

/// `img` centred on a black `r`×`r` canvas (it must fit).
pub fn pad_centre(img: &RgbImage, r: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut canvas = RgbImage::new(r, r);
    image::imageops::overlay(&mut canvas, img, ((r - w) / 2) as i64, ((r - h) / 2) as i64);
    canvas
}

/// Resizes so that the shorter side is `r` (both sides ≥ r), keeping the aspect ratio, after
/// cutting the longer side to at most [`MAX_ASPECT`] times the shorter one (centred).
pub fn resize_shorter(img: &RgbImage, r: u32, filter: FilterType) -> RgbImage {
    let img = limit_aspect(img);
    let (w, h) = img.dimensions();
    let s = r as f64 / w.min(h).max(1) as f64;
    let (nw, nh) = (((w as f64 * s).round() as u32).max(r), ((h as f64 * s).round() as u32).max(r));
    if (nw, nh) == (w, h) {
        img.into_owned()
    } else {
        image::imageops::resize(img.as_ref(), nw, nh, filter)
    }
}

/// The central part of `img` whose longer side is at most [`MAX_ASPECT`] times the shorter.
fn limit_aspect(img: &RgbImage) -> std::borrow::Cow<'_, RgbImage> {
    let (w, h) = img.dimensions();
    let cap = w.min(h).max(1).saturating_mul(MAX_ASPECT);
    if w <= cap && h <= cap {
        return std::borrow::Cow::Borrowed(img);
    }
    let (cw, ch) = (w.min(cap), h.min(cap));
    std::borrow::Cow::Owned(image::imageops::crop_imm(img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image())
}

/// Resizes the shorter side to `r` and centre-crops to `r`×`r`.
pub fn resize_crop(img: &RgbImage, r: u32, filter: FilterType) -> RgbImage {
    let resized = resize_shorter(img, r, filter);
    let (nw, nh) = resized.dimensions();
    image::imageops::crop_imm(&resized, (nw - r) / 2, (nh - r) / 2, r, r).to_image()
}

/// `img` as an `r`×`r` model input by `how`, resizing with `filter`.
pub fn fit(img: &RgbImage, r: u32, how: Preprocess, filter: FilterType) -> RgbImage {
    let (w, h) = img.dimensions();
    if (w, h) == (r, r) {
        img.clone()
    } else if how.pads(w, h, r) {
        pad_centre(img, r)
    } else {
        resize_crop(img, r, filter)
    }
}
