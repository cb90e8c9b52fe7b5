//! `mergevq demo`: the bundled Fashion-MNIST tokenizer and MergeAR model, run end to end.
//! Reconstructs the bundled test images at several kept counts K (with merge maps), samples
//! every class with MergeAR and with plain AR decoding of the same model, and writes PNGs and
//! one self-contained report.html.
use anyhow::{anyhow, Context, Result};
use burn::prelude::*;
use mergevq::ar::gpt::{Gpt, GptConfig};
use mergevq::ar::sample::{generate, SampleOpts};
use mergevq::eval::metrics::{psnr, ssim};
use mergevq::io::image::{merge_map, save_png, tensor_to_rgb};
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use rand::SeedableRng;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// assets/demo/gpt.toml: the GPT config and the kept-count candidates of its merge tokens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoGpt {
    gpt: GptConfig,
    candidates: Vec<usize>,
    window: usize,
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

fn png_data_uri(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)?;
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len() * 4 / 3 + 32);
    s.push_str("data:image/png;base64,");
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    Ok(s)
}

struct KRow {
    k: usize,
    psnr: f64,
    ssim: f64,
}

pub fn run(out: &Path) -> Result<()> {
    let t_start = Instant::now();
    let device = mergevq::device();
    let cfg_path = asset("assets/demo/tokenizer.toml")?;
    let cfg = TokenizerConfig::load(&cfg_path)?;
    let tok_path = asset("assets/demo/tokenizer.safetensors")?;
    let mut tok = Tokenizer::open(&cfg, &tok_path, false, &device)
        .with_context(|| format!("bundled tokenizer {}", tok_path.display()))?;
    let gpt_cfg_path = asset("assets/demo/gpt.toml")?;
    let text = std::fs::read_to_string(&gpt_cfg_path)?;
    let dg: DemoGpt =
        toml::from_str(&text).map_err(|e| anyhow!("bundled {} is corrupt: {}", gpt_cfg_path.display(), e.message()))?;
    let gpt_path = asset("assets/demo/gpt.safetensors")?;
    let w = mergevq::io::weights::Weights::open(&gpt_path, false, &device)?;
    let gpt = Gpt::load(w.root(), &dg.gpt).with_context(|| format!("bundled AR model {}", gpt_path.display()))?;
    w.finish(&[])?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;

    // 1. Reconstructions at several K.
    let dir = asset("assets/demo/images")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    let res = cfg.ddconfig.resolution;
    let aug = mergevq::io::data::Augment { resolution: res as u32, random_crop: false, flip: false, pad: true };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut pixels = Vec::new();
    for f in &files {
        let img = image::open(f).map_err(|e| anyhow!("bundled image {} is unreadable: {e}", f.display()))?.to_rgb8();
        let t = mergevq::io::image::rgb_to_tensor(&aug.apply(&img, &mut rng), &device);
        pixels.push(t);
    }
    let n = pixels.len();
    let x = Tensor::cat(pixels, 0);
    let l = tok.full_len();
    let side = cfg.embed_res();
    let keeps: Vec<usize> =
        dg.candidates.iter().rev().copied().chain(std::iter::once(16).filter(|k| !dg.candidates.contains(k))).collect();
    let r = res as u32;
    let mut grid = image::RgbImage::new(r * n as u32, r * (1 + 2 * keeps.len() as u32));
    let inputs: Vec<image::RgbImage> =
        (0..n).map(|i| tensor_to_rgb(x.clone().narrow(0, i, 1).reshape([3, res, res]))).collect();
    for (i, a) in inputs.iter().enumerate() {
        image::imageops::overlay(&mut grid, a, (i as u32 * r) as i64, 0);
    }
    let mut rows = Vec::new();
    for (ki, &k) in keeps.iter().enumerate() {
        tok.set_keep(k)?;
        let t = tok.encode(x.clone())?;
        let rec = tok.decode(t.quantized, &t.group);
        let (mut p, mut s) = (0.0, 0.0);
        for i in 0..n {
            let o = tensor_to_rgb(rec.clone().narrow(0, i, 1).reshape([3, res, res]));
            p += psnr(&inputs[i], &o).min(100.0);
            s += ssim(&inputs[i], &o);
            image::imageops::overlay(&mut grid, &o, (i as u32 * r) as i64, ((1 + 2 * ki) as u32 * r) as i64);
            image::imageops::overlay(
                &mut grid,
                &merge_map(&inputs[i], &t.group[i], side),
                (i as u32 * r) as i64,
                ((2 + 2 * ki) as u32 * r) as i64,
            );
        }
        rows.push(KRow { k, psnr: p / n as f64, ssim: s / n as f64 });
    }
    let big = |img: &image::RgbImage, f: u32| {
        image::imageops::resize(img, img.width() * f, img.height() * f, image::imageops::FilterType::Nearest)
    };
    save_png(&big(&grid, 3), &out.join("reconstructions.png"))?;
    let rd: Vec<(f64, f64)> = rows.iter().map(|r| (r.k as f64, r.psnr)).collect();
    save_png(&mergevq::eval::plot::line_plot(&[rd], 480, 300), &out.join("rate_distortion.png"))?;

    // 2. Class-conditional samples: MergeAR (cache eviction) vs plain AR decoding.
    let merge = dg.candidates.iter().position(|&c| c == tok.plan.kept().unwrap_or(36) as usize).unwrap_or(0);
    let classes = dg.gpt.class_num;
    let per_class = 2;
    let opts = SampleOpts { temperature: 1.0, top_k: 0, top_p: 1.0, cfg: 2.0 };
    let mut stats = Vec::new();
    for (name, window) in [("mergear", Some(dg.window)), ("plain", None)] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut canvas = image::RgbImage::new(r * classes as u32, r * per_class as u32);
        let (mut tokens, mut secs, mut peak) = (0usize, 0.0, 0usize);
        for c in 0..classes {
            for j in 0..per_class {
                let t0 = Instant::now();
                let g = generate(&gpt, c, Some(merge), window, &opts, &mut rng, None)?;
                secs += t0.elapsed().as_secs_f64();
                tokens += g.codes.len();
                peak = peak.max(g.peak_kv);
                let codes = mergevq::tokenizer::lfq::Lfq::codes(&g.codes, cfg.embed_dim, 1, side, side, &device);
                let img = tensor_to_rgb(tok.decoder.forward(codes).reshape([3, res, res]));
                image::imageops::overlay(&mut canvas, &img, (c as u32 * r) as i64, (j as u32 * r) as i64);
            }
        }
        save_png(&big(&canvas, 3), &out.join(format!("samples_{name}.png")))?;
        stats.push((name, tokens as f64 / secs, peak));
    }

    // 3. The report.
    let provenance = |f: &str| std::fs::read_to_string(asset(f).unwrap_or_default()).unwrap_or_default();
    let mut html = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>MergeVQ demo</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{image-rendering:pixelated;max-width:100%}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 10px;text-align:right}code{background:#f3f3f3;padding:1px 4px}</style></head><body>");
    html += "<h1>MergeVQ demo</h1><p>A MergeVQ tokenizer and a MergeAR generator trained on Fashion-MNIST (32×32, L = 64 tokens, 10-bit LFQ codes) with this program's own <code>train-tokenizer</code> and <code>train-ar</code>.</p>";
    html += &format!("<h2>Reconstruction at several kept counts K</h2><p>Top row: inputs. Then for each K: reconstructions and merge maps (each kept token's group in its own colour).</p><img alt=\"reconstructions\" src=\"{}\">", png_data_uri(&out.join("reconstructions.png"))?);
    html += &format!("<table id=\"recon\"><tr><th>K (of L = {l})</th><th>PSNR (dB)</th><th>SSIM</th></tr>");
    for r in &rows {
        html += &format!("<tr><td>{}</td><td>{:.2}</td><td>{:.4}</td></tr>", r.k, r.psnr, r.ssim);
    }
    html += &format!(
        "</table><p>Rate–distortion (PSNR against K):</p><img alt=\"rate-distortion\" src=\"{}\">",
        png_data_uri(&out.join("rate_distortion.png"))?
    );
    html += &format!("<h2>Class-conditional generation</h2><p>One column per class, CFG 2.0, merge instruction K = {}. MergeAR keeps duplicate tokens in the KV cache only inside a window of {}; plain AR decoding of the same model keeps all {} entries.</p>", dg.candidates[merge], dg.window, l + 2);
    html += "<table id=\"ar\"><tr><th>decoding</th><th>tokens/s</th><th>peak KV-cache entries</th></tr>";
    for (name, tps, peak) in &stats {
        html += &format!(
            "<tr><td>{}</td><td>{tps:.1}</td><td>{peak}</td></tr>",
            if *name == "mergear" { "MergeAR" } else { "plain AR" }
        );
    }
    html += &format!("</table><h3>MergeAR</h3><img alt=\"MergeAR samples\" src=\"{}\"><h3>Plain AR</h3><img alt=\"plain samples\" src=\"{}\">", png_data_uri(&out.join("samples_mergear.png"))?, png_data_uri(&out.join("samples_plain.png"))?);
    html += &format!(
        "<h2>Provenance</h2><pre>{}\n{}</pre>",
        provenance("assets/demo/tokenizer.provenance"),
        provenance("assets/demo/gpt.provenance")
    );
    html += "<script>window.addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images=i.length;document.body.dataset.imagesOk=i.every(x=>x.complete&&x.naturalWidth>0);document.body.dataset.tables=document.querySelectorAll('table').length;});</script></body></html>";
    mergevq::io::atomic::atomic_write(&out.join("report.html"), html.as_bytes())?;

    println!("MergeVQ demo (bundled Fashion-MNIST models), {:.1} s", t_start.elapsed().as_secs_f64());
    println!("{:>8} {:>9} {:>7}", "K", "PSNR dB", "SSIM");
    for r in &rows {
        println!("{:>8} {:>9.2} {:>7.4}", r.k, r.psnr, r.ssim);
    }
    for (name, tps, peak) in &stats {
        println!("{:>8} {tps:>9.1} tokens/s, peak KV entries {peak}", name);
    }
    println!("report: {}", out.join("report.html").display());
    Ok(())
}
