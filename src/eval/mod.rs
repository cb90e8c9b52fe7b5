//! Evaluation runs: reconstruction quality over kept counts K (PSNR, SSIM, LPIPS, rFID,
//! codebook usage), generation quality (gFID, KID), and linear probing of frozen features.
pub mod inception;
pub mod metrics;
pub mod plot;
pub mod probe;

use crate::eval::inception::{InceptionV3, InputRange};
use crate::eval::metrics::{check_sample_size, codebook_usage, frechet_distance, psnr, ssim, Stats};
use crate::io::data::{Batch, Loader, Source};
use crate::io::image::{merge_map, tensor_to_rgb};
use crate::io::marker::Marker;
use crate::io::output::Outputs;
use crate::io::weights::Weights;
use crate::loss::lpips::Lpips;
use crate::tokenizer::tome::KeepPlan;
use crate::tokenizer::Tokenizer;
use anyhow::{anyhow, bail, Result};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub const INCEPTION_WEIGHTS: &str = "weights/inception_fid.safetensors";
pub const LPIPS_WEIGHTS: &str = "weights/lpips_vgg16.safetensors";

/// The size of an InceptionV3 pool feature (what FID statistics are made of).
pub const INCEPTION_DIM: usize = 2048;

/// Opens a weights file that `scripts/fetch-weights.sh` provides, with a message naming it.
fn fetched(path: &Path, what: &str, device: &Device) -> Result<Weights> {
    if !path.exists() {
        let msg = format!("{what} weights {} are missing: run scripts/fetch-weights.sh", path.display());
        return Err(crate::io::missing::Missing(msg).into());
    }
    Weights::open(path, false, device)
}

pub fn load_inception(path: &Path, device: &Device) -> Result<InceptionV3> {
    let w = fetched(path, "FID InceptionV3", device)?;
    let net = InceptionV3::load(&w, InputRange::Tf)?;
    w.finish(&[])?;
    Ok(net)
}

pub fn load_lpips(path: &Path, device: &Device) -> Result<Lpips> {
    let w = fetched(path, "LPIPS VGG16", device)?;
    let net = Lpips::load(w.root())?;
    w.finish(&[])?;
    Ok(net)
}

/// Mean per-image PSNR (dB, 0–255 scale) and, with `lpips`, LPIPS of `model`'s reconstructions at the K of `plan` of the
/// first `n` images, read batch by batch from `batch(k)`.
pub fn mean_psnr_lpips(
    model: &Tokenizer,
    plan: &KeepPlan,
    batch: impl Fn(usize) -> Batch,
    n: usize,
    lpips: Option<&Lpips>,
    device: &Device,
) -> Result<(f64, Option<f64>)> {
    let res = model.cfg.ddconfig.resolution;
    let (mut sum, mut lp, mut count) = (0.0, 0.0, 0usize);
    let mut k = 0;
    while count < n {
        let b = batch(k);
        k += 1;
        if b.size == 0 {
            break;
        }
        let take = b.size.min(n - count);
        let x = Tensor::<4>::from_data(
            TensorData::new(b.images[..take * 3 * res * res].to_vec(), [take, 3, res, res]),
            device,
        );
        let t = model.encode(x.clone(), plan)?;
        let rec = model.decode(t.quantized, &t.group);
        if let Some(net) = lpips {
            lp += crate::io::readback::scalar(net.forward(x.clone(), rec.clone().clamp(-1.0, 1.0)).sum()) as f64;
        }
        for i in 0..take {
            let a = tensor_to_rgb(x.clone().narrow(0, i, 1).reshape([3, res, res]));
            let r = tensor_to_rgb(rec.clone().narrow(0, i, 1).reshape([3, res, res]));
            sum += psnr(&a, &r).min(100.0);
        }
        count += take;
    }
    let mean = |v: f64| if count == 0 { f64::NAN } else { v / count as f64 };
    Ok((mean(sum), lpips.map(|_| mean(lp))))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReconReport {
    pub keep: usize,
    pub images: usize,
    /// Bits per image of the codes: K·d.
    pub code_bits: usize,
    /// Bits per image of side information: the source map (L·⌈log₂K⌉) when the decoder unmerges
    /// with it and K < L; 0 with the learned source recovery or without merging.
    pub side_bits: usize,
    pub psnr: f64,
    pub ssim: f64,
    pub lpips: Option<f64>,
    pub rfid: Option<f64>,
    /// Images the rFID is computed from (the first ones; 0 without rFID).
    #[serde(default)]
    pub fid_images: usize,
    /// With the learned source recovery: the share of grid positions it gives the code the
    /// encoder's source map gives them (what the decoder would have seen with the map).
    #[serde(default)]
    pub placement: Option<f64>,
    pub codebook_usage: f64,
    pub perplexity: f64,
}

/// Inception features of images [B, 3, R, R] in [-1, 1].
fn inception_features(net: &InceptionV3, x: Tensor<4>) -> Vec<Vec<f32>> {
    let f = net.features((x + 1.0) / 2.0);
    let [b, d] = f.dims();
    let v = crate::io::readback::floats(f);
    (0..b).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
}

/// Reconstructs the first `n` images of `source` at every kept count in `keeps` (rFID, when
/// `inception` is given with an image count, over that many first images: at least two);
/// returns the reports and a grid image (inputs, then per K the reconstructions and merge maps
/// of 8 images).
#[allow(clippy::too_many_arguments)]
pub fn eval_recon(
    tok: &Tokenizer,
    source: Arc<dyn Source>,
    n: usize,
    keeps: &[usize],
    batch: usize,
    lpips: Option<&Lpips>,
    inception: Option<(&InceptionV3, usize)>,
    progress: &dyn Fn(u64),
) -> Result<(Vec<ReconReport>, image::RgbImage)> {
    let device = tok.device();
    let res = tok.cfg.ddconfig.resolution;
    let loader = Loader::in_order(source.clone(), res as u32, tok.cfg.preprocess, batch);
    let n = n.min(source.len());
    let mut batches: Vec<Batch> =
        (0..n.div_ceil(batch)).map(|k| loader.batch_in_order(k)).filter(|b| b.size > 0).collect();
    // Exactly n images: trim the last batch.
    let total: usize = batches.iter().map(|b| b.size).sum();
    if let Some(last) = batches.last_mut().filter(|_| total > n) {
        let keep = last.size - (total - n);
        last.images.truncate(keep * 3 * res * res);
        last.labels.truncate(keep);
        last.indices.truncate(keep);
        last.size = keep;
    }
    let total: usize = batches.iter().map(|b| b.size).sum();
    let inception = inception.map(|(net, m)| (net, m.min(total)));
    if let Some((_, m)) = inception {
        check_sample_size("rFID", m)?;
    }
    let tensor = |b: &Batch| Tensor::<4>::from_data(TensorData::new(b.images.clone(), [b.size, 3, res, res]), &device);
    // How many of batch `bi`'s images are among the first `m` (the rFID's images).
    let starts: Vec<usize> = batches.iter().scan(0, |at, b| Some(std::mem::replace(at, *at + b.size))).collect();
    let fid_part = |bi: usize, m: usize| m.saturating_sub(starts[bi]).min(batches[bi].size);
    let real_stats = inception.map(|(net, m)| {
        let feats = (0..batches.len())
            .filter(|&bi| fid_part(bi, m) > 0)
            .flat_map(|bi| inception_features(net, tensor(&batches[bi]).narrow(0, 0, fid_part(bi, m))))
            .collect::<Vec<_>>();
        Stats::from_features(&feats)
    });
    let side = tok.cfg.embed_res();
    let show = batches.first().map(|b| b.size.min(8)).unwrap_or(0);
    let r = res as u32;
    let mut canvas = image::RgbImage::new(r * show as u32, r * (1 + 2 * keeps.len() as u32));
    let mut out = Vec::new();
    for (ki, &k) in keeps.iter().enumerate() {
        let plan = tok.keep(k)?;
        let (mut ps, mut ss, mut lp, mut count) = (0.0, 0.0, 0.0, 0usize);
        let mut feats = Vec::new();
        let mut codes = Vec::new();
        let (mut placed, mut positions) = (0usize, 0usize);
        for (bi, b) in batches.iter().enumerate() {
            let x = tensor(b);
            let t = tok.encode(x.clone(), &plan)?;
            codes.extend_from_slice(&t.indices);
            let (full, chosen) = tok.recover(t.quantized, &t.group);
            for (i, (g, want)) in chosen.iter().flatten().zip(&t.group).enumerate() {
                let code = &t.indices[i * k..(i + 1) * k];
                placed += g.iter().zip(want).filter(|(a, b)| code[**a] == code[**b]).count();
                positions += want.len();
            }
            let rec = tok.decoder.forward(full).clamp(-1.0, 1.0);
            if let Some(net) = lpips {
                let d = crate::io::readback::scalar(net.forward(x.clone(), rec.clone()).sum());
                lp += d as f64;
            }
            if let Some((net, m)) = inception.filter(|&(_, m)| fid_part(bi, m) > 0) {
                feats.extend(inception_features(net, rec.clone().narrow(0, 0, fid_part(bi, m))));
            }
            for i in 0..b.size {
                let a = tensor_to_rgb(x.clone().narrow(0, i, 1).reshape([3, res, res]));
                let o = tensor_to_rgb(rec.clone().narrow(0, i, 1).reshape([3, res, res]));
                ps += psnr(&a, &o).min(100.0);
                ss += ssim(&a, &o);
                if bi == 0 && i < show {
                    let xo = (i as u32 * r) as i64;
                    if ki == 0 {
                        image::imageops::overlay(&mut canvas, &a, xo, 0);
                    }
                    image::imageops::overlay(&mut canvas, &o, xo, ((1 + 2 * ki) as u32 * r) as i64);
                    image::imageops::overlay(
                        &mut canvas,
                        &merge_map(&a, &t.group[i], side),
                        xo,
                        ((2 + 2 * ki) as u32 * r) as i64,
                    );
                }
            }
            count += b.size;
            progress(b.size as u64);
        }
        let (usage, perplexity) = codebook_usage(&codes, 1usize << tok.cfg.embed_dim.min(40));
        let rfid = real_stats.as_ref().map(|s| frechet_distance(s, &Stats::from_features(&feats)));
        let c = count.max(1) as f64;
        let l = tok.full_len();
        let side_bits = if tok.recovery.is_none() && k < l { l * (k as f64).log2().ceil() as usize } else { 0 };
        out.push(ReconReport {
            keep: k,
            images: count,
            code_bits: k * tok.cfg.embed_dim,
            side_bits,
            psnr: ps / c,
            ssim: ss / c,
            lpips: lpips.map(|_| lp / c),
            rfid,
            fid_images: inception.map_or(0, |(_, m)| m),
            placement: (positions > 0).then(|| placed as f64 / positions as f64),
            codebook_usage: usage,
            perplexity,
        });
    }
    Ok((out, canvas))
}

/// Inception features of every image in `source` (resized to 299² inside the network).
pub fn features_of(
    net: &InceptionV3,
    source: &dyn Source,
    batch: usize,
    device: &Device,
    progress: &dyn Fn(u64),
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    let mut pending: Vec<f32> = Vec::new();
    let mut size = None;
    let mut count = 0;
    let flush = |pending: &mut Vec<f32>, count: &mut usize, size: (u32, u32), out: &mut Vec<Vec<f32>>| {
        if *count == 0 {
            return;
        }
        let (w, h) = (size.0 as usize, size.1 as usize);
        let x = Tensor::<4>::from_data(TensorData::new(std::mem::take(pending), [*count, 3, h, w]), device);
        out.extend(inception_features(net, x * 2.0 - 1.0));
        progress(*count as u64);
        *count = 0;
    };
    for i in 0..source.len() {
        let img = match source.get(i) {
            Ok((img, _)) => img,
            Err(e) => {
                eprintln!("warning: skipping unreadable image {}: {e:#}", source.name(i));
                continue;
            }
        };
        let dims = img.dimensions();
        if size.is_some_and(|s| s != dims) {
            bail!(
                "images of different sizes in one set ({} is {}×{}, earlier ones {:?}); resize them first",
                source.name(i),
                dims.0,
                dims.1,
                size.unwrap()
            );
        }
        size = Some(dims);
        let (w, h) = dims;
        let mut px = vec![0f32; 3 * (w * h) as usize];
        for (x, y, p) in img.enumerate_pixels() {
            for c in 0..3 {
                px[c * (w * h) as usize + (y * w + x) as usize] = p[c] as f32 / 255.0;
            }
        }
        pending.extend(px);
        count += 1;
        if count == batch {
            flush(&mut pending, &mut count, dims, &mut out);
        }
    }
    if let Some(s) = size {
        flush(&mut pending, &mut count, s, &mut out);
    }
    if out.is_empty() {
        bail!("no readable images");
    }
    Ok(out)
}

/// Writes FID reference statistics (mu, sigma) and the features themselves (for KID).
/// The marker of a statistics file (`eval-gen --save-stats` replaces only a file carrying it).
pub const STATS: Marker = Marker::format("mergevq-fid-stats-1", "mergevq statistics file (from --save-stats)");

/// Writes the Inception statistics of `feats` (and the features) through `out`.
pub fn save_stats(path: &Path, feats: &[Vec<f32>], out: &Outputs) -> Result<()> {
    let s = Stats::from_features(feats);
    let d = s.mu.len();
    let mut m = std::collections::BTreeMap::new();
    m.insert(
        "mu".to_string(),
        crate::io::weights::HostTensor { shape: vec![d], data: s.mu.iter().map(|&v| v as f32).collect() },
    );
    m.insert(
        "sigma".to_string(),
        crate::io::weights::HostTensor { shape: vec![d, d], data: s.sigma.iter().map(|&v| v as f32).collect() },
    );
    m.insert(
        "features".to_string(),
        crate::io::weights::HostTensor { shape: vec![feats.len(), d], data: feats.concat() },
    );
    crate::io::safetensors::write_safetensors(path, &m, STATS, out)
}

/// Reads statistics written by `save_stats`: (stats, features).
pub fn load_stats(path: &Path) -> Result<(Stats, Vec<Vec<f32>>)> {
    let m = crate::io::safetensors::read_safetensors(path)?;
    let get = |k: &str| m.get(k).ok_or_else(|| anyhow!("{} has no `{k}` (not a mergevq stats file)", path.display()));
    let f = get("features")?;
    let (mu, sigma) = (get("mu")?, get("sigma")?);
    let d = f.shape.get(1).copied().unwrap_or(0);
    if f.shape.len() != 2 || d != INCEPTION_DIM || mu.shape != [d] || sigma.shape != [d, d] {
        bail!(
            "{} has features {:?}, mu {:?}, sigma {:?}, not [N, {INCEPTION_DIM}], [{INCEPTION_DIM}], [{INCEPTION_DIM}, {INCEPTION_DIM}]",
            path.display(),
            f.shape,
            mu.shape,
            sigma.shape
        );
    }
    let feats: Vec<Vec<f32>> = f.data.chunks(d).map(|c| c.to_vec()).collect();
    let mu = nalgebra::DVector::from_iterator(d, mu.data.iter().map(|&v| v as f64));
    // Fewer images than features: the covariance's factor too, for the n × n route of the FID.
    let factor = (feats.len() <= d).then(|| crate::eval::metrics::centred_rows(&feats, &mu));
    let s = Stats {
        mu,
        sigma: nalgebra::DMatrix::from_iterator(d, d, sigma.data.iter().map(|&v| v as f64)),
        n: feats.len(),
        factor,
    };
    Ok((s, feats))
}
