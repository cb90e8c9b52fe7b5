//! Merged code sequences for `bench ar` from the tokenizer encoding a real photo: B crops of a
//! registry photo (assets/rocket.jpg, from the scikit-image wheel), every other one mirrored,
//! encoded by the tokenizer of that L (random weights, seed 0) with K kept tokens; each raster
//! position takes the code of the kept token that absorbed it, so each image has its own
//! group map.
use anyhow::{bail, Result};
use burn::prelude::*;
use image::imageops::FilterType;
use mergevq::io::image::{decode_image, rgb_to_tensor};
use mergevq::io::preprocess::resize_shorter;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use std::path::Path;

/// The tokenizer config whose grid has L tokens.
fn config_for(l: usize) -> Result<&'static str> {
    match l {
        256 => Ok("configs/mergevq_256_GR_d64.toml"),
        1024 => Ok("configs/mergevq_256_G_d64.toml"),
        _ => bail!("bench ar takes its group maps from the tokenizer encoding a photo: L = 256 or 1024, not {l}"),
    }
}

/// Per image the L codes in raster order, and K (`keep`, else the config's).
pub fn photo_codes(l: usize, images: usize, keep: Option<usize>, photo: &Path) -> Result<(usize, Vec<Vec<i64>>)> {
    let device = mergevq::device();
    let cfg = TokenizerConfig::load(Path::new(config_for(l)?))?;
    let tok = Tokenizer::init(&cfg, 0, &device)?;
    if tok.full_len() != l {
        bail!("{} has L={} tokens, not {l}", config_for(l)?, tok.full_len());
    }
    let plan = match keep {
        Some(k) => tok.keep(k)?,
        None => tok.plan.clone(),
    };
    let k = plan.kept()? as usize;
    let r = cfg.ddconfig.resolution as u32;
    let img = resize_shorter(&decode_image(photo)?, r, FilterType::CatmullRom);
    let (w, h) = img.dimensions();
    let crop = |i: usize| {
        // Windows spread evenly along the longer side; odd images mirrored.
        let at = |span: u32| if images > 1 { span * i as u32 / (images as u32 - 1) } else { span / 2 };
        let c = image::imageops::crop_imm(&img, at(w - r), at(h - r), r, r).to_image();
        if i % 2 == 1 {
            image::imageops::flip_horizontal(&c)
        } else {
            c
        }
    };
    let mut out = Vec::with_capacity(images);
    // A few images per encode bounds the tokenizer's memory.
    for first in (0..images).step_by(4) {
        let n = 4.min(images - first);
        let x = Tensor::cat((first..first + n).map(|i| rgb_to_tensor(&crop(i), &device)).collect(), 0);
        let t = tok.encode(x, &plan)?;
        for (b, group) in t.group.iter().enumerate() {
            out.push(group.iter().map(|&g| t.indices[b * t.k + g]).collect());
        }
    }
    println!("group maps: {} crops of {} encoded at L={l}, K={k} ({})", images, photo.display(), config_for(l)?);
    Ok((k, out))
}
