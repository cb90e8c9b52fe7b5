//! `mergevq demo`: the bundled models, run end to end. Reconstructs the bundled Fashion-MNIST test
//! images at several kept counts K (with merge maps), samples every class with MergeAR and with
//! plain AR decoding of the same model, runs the colour tokenizer on the bundled photo at several
//! K, and writes PNGs and one self-contained report.html.
mod report;

use anyhow::{anyhow, Context, Result};
use burn::prelude::*;
use mergevq::ar::generator::Generator;
use mergevq::ar::sample::{generate, SampleOpts};
use mergevq::eval::metrics::{psnr, ssim};
use mergevq::eval::plot::LinePlot;
use mergevq::io::data::Augment;
use mergevq::io::image::{decode_image, load_image, merge_map, rgb_to_tensor, save_image, tensor_to_rgb};
use mergevq::io::marker::Format;
use mergevq::io::output::Outputs;
use mergevq::io::preprocess::Preprocess;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::tome::KeepPlan;
use mergevq::tokenizer::Tokenizer;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the demo writes when run without arguments.
const DEFAULT_OUTPUT: &str = "demo-out";

/// The colour tokenizer runs on the photo at 256² (it was trained on 64² crops; convolutional, so
/// here L = 32×32 = 1024 tokens), kept at these K.
const PHOTO_RES: usize = 256;
const PHOTO_KEEPS: [usize; 4] = [1024, 576, 256, 169];

/// `mergevq demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    #[arg(short, long, default_value = DEFAULT_OUTPUT)]
    output: PathBuf,
}

impl Default for DemoArgs {
    fn default() -> Self {
        Self { output: PathBuf::from(DEFAULT_OUTPUT) }
    }
}

/// The bundled models.
struct Models {
    tok: Tokenizer,
    generator: Generator,
    photo: Tokenizer,
}

/// Mean reconstruction quality of the bundled images at one K.
struct KRow {
    k: usize,
    psnr: f64,
    ssim: f64,
}

/// Sampling speed of one decoding mode ("mergear" or "plain").
struct Decoding {
    name: &'static str,
    tokens_per_s: f64,
    peak_kv: usize,
}

impl DemoArgs {
    pub fn run(self) -> Result<()> {
        let t_start = Instant::now();
        let out = &self.output;
        let m = Models::load(&mergevq::device())?;
        let outs = outputs(out)?;
        let rows = reconstructions(&m, out, &outs)?;
        // The merge instruction: the first candidate, the smallest K the generator was trained with.
        let merge = 0;
        let stats = samples(&m, merge, out, &outs)?;
        let photo_rows = photo(&m.photo, out, &outs)?;
        report::write(out, &m, &rows, &stats, &photo_rows, merge, &outs)?;
        println!("MergeVQ demo (bundled models), {:.1} s", t_start.elapsed().as_secs_f64());
        println!("{:>8} {:>9} {:>7}", "K", "PSNR dB", "SSIM");
        for r in &rows {
            println!("{:>8} {:>9.2} {:>7.4}", r.k, r.psnr, r.ssim);
        }
        for d in &stats {
            println!("{:>8} {:>9.1} tokens/s, peak KV entries {}", d.name, d.tokens_per_s, d.peak_kv);
        }
        println!("colour tokenizer on assets/photo/coffee.png at {PHOTO_RES}²:");
        for r in &photo_rows {
            println!("{:>8} {:>9.2} {:>7.4}", r.k, r.psnr, r.ssim);
        }
        println!("report: {}", out.join("report.html").display());
        Ok(())
    }
}

/// Where the demo may write (anywhere but the bundled files), once the output folder exists and
/// the files it will write there may be written.
fn outputs(out: &Path) -> Result<Outputs> {
    let outs = Outputs::new([asset("assets/demo")?, asset("assets/photo")?]);
    outs.dir(out)?;
    for png in ["reconstructions.png", "rate_distortion.png", "samples_mergear.png", "samples_plain.png", "photo.png"] {
        outs.check(&out.join(png), Format::Image)?;
    }
    outs.check(&out.join("report.html"), report::FORMAT)?;
    Ok(outs)
}

/// A bundled file: under $MERGEVQ_ASSETS if set, else the crate's assets/ folder (or ./assets).
fn asset(rel: &str) -> Result<PathBuf> {
    let sub = rel.strip_prefix("assets/").unwrap_or(rel);
    let candidates: Vec<PathBuf> = match std::env::var_os("MERGEVQ_ASSETS") {
        Some(dir) => vec![PathBuf::from(dir).join(sub)],
        None => vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel), PathBuf::from(rel)],
    };
    candidates
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("bundled file {rel} is missing (a fresh clone has it under assets/)"))
}

impl Models {
    fn load(device: &Device) -> Result<Self> {
        let cfg = TokenizerConfig::load(&asset("assets/demo/tokenizer.toml")?)?;
        let tok_path = asset("assets/demo/tokenizer.safetensors")?;
        let tok = Tokenizer::open(&cfg, &tok_path, false, device)
            .with_context(|| format!("bundled tokenizer {}", tok_path.display()))?;
        let gpt_path = asset("assets/demo/gpt.safetensors")?;
        let generator = Generator::open(&asset("assets/demo/gpt.toml")?, &gpt_path, device)
            .with_context(|| format!("bundled AR model {}", gpt_path.display()))?;
        let mut cfg = TokenizerConfig::load(&asset("assets/photo/tokenizer.toml")?)?;
        cfg.ddconfig.resolution = PHOTO_RES;
        // The default K of the larger grid: the same share of L as the config's (36 of 64 = 576 of 1024).
        cfg.ddconfig.merge_num = Some(1024 - 576);
        let photo_path = asset("assets/photo/tokenizer.safetensors")?;
        let photo = Tokenizer::open(&cfg, &photo_path, false, device)
            .with_context(|| format!("bundled colour tokenizer {}", photo_path.display()))?;
        Ok(Self { tok, generator, photo })
    }
}

/// The bundled test images (sorted by name), brought to the tokenizer's resolution by its `preprocess`:
/// one [1, 3, H, W] tensor each.
fn test_images(res: usize, preprocess: Preprocess, device: &Device) -> Result<Vec<Tensor<4>>> {
    let dir = asset("assets/demo/images")?;
    let mut files: Vec<PathBuf> =
        mergevq::io::fs::list_dir(&dir)?.into_iter().filter(|p| p.extension().is_some_and(|e| e == "png")).collect();
    files.sort();
    let aug = Augment { resolution: res as u32, random_crop: false, crop_scale: None, flip: false, preprocess };
    let mut rng = StdRng::seed_from_u64(0);
    files
        .iter()
        .map(|f| {
            let img = decode_image(f).context("a bundled image is unreadable")?;
            Ok(rgb_to_tensor(&aug.apply(&img, &mut rng), device))
        })
        .collect()
}

/// Step 1: reconstructions and merge maps at every candidate K (largest first) and K = 16,
/// written as reconstructions.png (inputs on top, then a reconstruction row and a merge-map row
/// per K) and rate_distortion.png.
fn reconstructions(m: &Models, out: &Path, outs: &Outputs) -> Result<Vec<KRow>> {
    let res = m.tok.cfg.ddconfig.resolution;
    let pixels = test_images(res, m.tok.cfg.preprocess, &m.tok.device())?;
    let n = pixels.len();
    let x = Tensor::cat(pixels, 0);
    let cands = &m.generator.cfg.candidates;
    let keeps: Vec<usize> =
        cands.iter().rev().copied().chain(std::iter::once(16).filter(|k| !cands.contains(k))).collect();
    let r = res as u32;
    let mut grid = image::RgbImage::new(r * n as u32, r * (1 + 2 * keeps.len() as u32));
    let inputs: Vec<image::RgbImage> =
        (0..n).map(|i| tensor_to_rgb(x.clone().narrow(0, i, 1).reshape([3, res, res]))).collect();
    for (i, a) in inputs.iter().enumerate() {
        paste(&mut grid, a, i, 0, r);
    }
    let mut rows = Vec::new();
    for (ki, &k) in keeps.iter().enumerate() {
        let plan = m.tok.keep(k)?;
        let (psnr, ssim) = reconstruct_at(&m.tok, &plan, &x, &inputs, (0, 1 + 2 * ki), &mut grid)?;
        rows.push(KRow { k, psnr, ssim });
    }
    save_image(&upscale(&grid, 3), &out.join("reconstructions.png"), outs)?;
    let rd: Vec<(f64, f64)> = rows.iter().map(|r| (r.k as f64, r.psnr)).collect();
    let plot = LinePlot::new("kept tokens K", "PSNR (dB)").with("bundled tokenizer", rd).render(560, 340)?;
    save_image(&plot, &out.join("rate_distortion.png"), outs)?;
    Ok(rows)
}

/// Reconstructs the images `x` at the K of `plan` into grid row `row` from column `col` on (their
/// merge maps into the row below); returns their mean PSNR and SSIM against `inputs`.
fn reconstruct_at(
    tok: &Tokenizer,
    plan: &KeepPlan,
    x: &Tensor<4>,
    inputs: &[image::RgbImage],
    (col, row): (usize, usize),
    grid: &mut image::RgbImage,
) -> Result<(f64, f64)> {
    let (res, side) = (tok.cfg.ddconfig.resolution, tok.cfg.embed_res());
    let t = tok.encode(x.clone(), plan)?;
    let rec = tok.decode(t.quantized, &t.group);
    let (mut p, mut s) = (0.0, 0.0);
    for (i, input) in inputs.iter().enumerate() {
        let o = tensor_to_rgb(rec.clone().narrow(0, i, 1).reshape([3, res, res]));
        p += psnr(input, &o).min(100.0);
        s += ssim(input, &o);
        paste(grid, &o, col + i, row, res as u32);
        paste(grid, &merge_map(input, &t.group[i], side), col + i, row + 1, res as u32);
    }
    let n = inputs.len() as f64;
    Ok((p / n, s / n))
}

/// Step 2: two class-conditional samples per class (CFG 2.0) with MergeAR decoding (cache
/// eviction) and with plain AR decoding of the same model, from the same seed; written as
/// samples_{mergear,plain}.png, one column per class.
fn samples(m: &Models, merge: usize, out: &Path, outs: &Outputs) -> Result<Vec<Decoding>> {
    let r = m.tok.cfg.ddconfig.resolution as u32;
    let classes = m.generator.cfg.gpt.class_num;
    let per_class = 2;
    let opts = SampleOpts { temperature: 1.0, top_k: 0, top_p: 1.0, cfg: 2.0 };
    let mut stats = Vec::new();
    for (name, window) in [("mergear", Some(m.generator.cfg.window)), ("plain", None)] {
        let mut rng = StdRng::seed_from_u64(42);
        let mut canvas = image::RgbImage::new(r * classes as u32, r * per_class as u32);
        let (mut tokens, mut secs, mut peak_kv) = (0usize, 0.0, 0usize);
        for c in 0..classes {
            for j in 0..per_class {
                let t0 = Instant::now();
                let g = generate(&m.generator.gpt, c, Some(merge), window, &opts, &mut rng, None)?;
                secs += t0.elapsed().as_secs_f64();
                tokens += g.codes.len();
                peak_kv = peak_kv.max(g.peak_kv);
                let img = tensor_to_rgb(m.tok.decode_codes(&g.codes)?.reshape([3, r as usize, r as usize]));
                paste(&mut canvas, &img, c, j, r);
            }
        }
        save_image(&upscale(&canvas, 3), &out.join(format!("samples_{name}.png")), outs)?;
        stats.push(Decoding { name, tokens_per_s: tokens as f64 / secs, peak_kv });
    }
    Ok(stats)
}

/// Step 3: the colour tokenizer on the bundled photo at [`PHOTO_KEEPS`], written as photo.png: the
/// input, then one column per K with the reconstruction above its merge map.
fn photo(tok: &Tokenizer, out: &Path, outs: &Outputs) -> Result<Vec<KRow>> {
    let (x, _) = load_image(&asset("assets/photo/coffee.png")?, PHOTO_RES, tok.cfg.preprocess, &tok.device())
        .context("the bundled photo is unreadable")?;
    let input = tensor_to_rgb(x.clone().reshape([3, PHOTO_RES, PHOTO_RES]));
    let r = PHOTO_RES as u32;
    let mut grid = image::RgbImage::new(r * (1 + PHOTO_KEEPS.len() as u32), 2 * r);
    paste(&mut grid, &input, 0, 0, r);
    let mut rows = Vec::new();
    for (i, &k) in PHOTO_KEEPS.iter().enumerate() {
        let (psnr, ssim) = reconstruct_at(tok, &tok.keep(k)?, &x, std::slice::from_ref(&input), (1 + i, 0), &mut grid)?;
        rows.push(KRow { k, psnr, ssim });
    }
    save_image(&grid, &out.join("photo.png"), outs)?;
    Ok(rows)
}

/// Copies `img` into cell (col, row) of a canvas of `size`² cells.
fn paste(canvas: &mut image::RgbImage, img: &image::RgbImage, col: usize, row: usize, size: u32) {
    image::imageops::overlay(canvas, img, (col as u32 * size) as i64, (row as u32 * size) as i64);
}

/// Nearest-neighbour enlargement by `f` (keeps the pixels sharp in the report).
fn upscale(img: &image::RgbImage, f: u32) -> image::RgbImage {
    image::imageops::resize(img, img.width() * f, img.height() * f, image::imageops::FilterType::Nearest)
}
