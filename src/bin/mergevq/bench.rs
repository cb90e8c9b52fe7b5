//! `mergevq bench …`: medians over repeated runs after one warm-up, printed as a table and
//! optionally written as JSON records {bench, median_s, runs_s, peak_mib} — the same names and
//! layout as `bench/reference.py`, so `bench/compare.py` can put the two side by side.
use anyhow::{Context, Result};
use burn::prelude::*;
use clap::{Args, Subcommand};
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum Bench {
    /// Everything below at the sizes: tokenizer G+R d64 and G d64 at batch 1 and 8,
    /// a training step, a ToMe merge step, the LFQ entropy at d = 18, AR decoding.
    All {
        #[command(flatten)]
        common: Common,
        /// Batch sizes for the tokenizer benchmarks.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 8])]
        batches: Vec<usize>,
        /// Leave out the training step (it needs Fashion-MNIST and the LPIPS weights).
        #[arg(long)]
        no_train: bool,
    },
    /// Tokenizer encode, decode and encode+decode on random weights and inputs.
    Tokenizer {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Kept-token count K (default: the config's).
        #[arg(long)]
        keep: Option<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// One tokenizer training step (generator + discriminator, all losses of the config) on
    /// a fixed batch.
    Train {
        /// A train-tokenizer config (its data, losses and model).
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[command(flatten)]
        common: Common,
    },
    /// One ToMe step: bipartite matching on the keys, size-weighted merge, source tracking.
    Tome {
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Image tokens (a [CLS] token is added).
        #[arg(long, default_value_t = 256)]
        tokens: usize,
        #[arg(long, default_value_t = 512)]
        dim: usize,
        #[arg(long, default_value_t = 64)]
        r: i64,
        #[command(flatten)]
        common: Common,
    },
    /// LFQ entropy + commitment loss, forward and backward: time and peak extra memory.
    Lfq {
        #[arg(long, default_value_t = 18)]
        bits: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Tokens per image (a square number).
        #[arg(long, default_value_t = 256)]
        tokens: usize,
        #[command(flatten)]
        common: Common,
    },
    /// AR decoding, plain vs MergeAR, on a random GPT with a synthetic group map (K = L/4,
    /// groups of 4 consecutive tokens): tokens/s, peak KV-cache entries and cache memory.
    Ar {
        #[command(flatten)]
        gpt: ArModel,
        #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 1024])]
        lengths: Vec<usize>,
        /// Classifier-free guidance scale (≠ 1 decodes a conditional and an unconditional
        /// sequence per image, as `generate --cfg` does).
        #[arg(long, default_value_t = 1.0)]
        cfg: f64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Clone)]
pub struct Common {
    /// Timed runs after one warm-up.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also write the records as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct ArModel {
    #[arg(long, default_value_t = 256)]
    dim: usize,
    #[arg(long, default_value_t = 8)]
    layers: usize,
    #[arg(long, default_value_t = 8)]
    heads: usize,
}

/// One benchmark's timings.
#[derive(Serialize)]
struct Record {
    bench: String,
    median_s: f64,
    runs_s: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_mib: Option<f64>,
    /// Throughput in the bench's unit (images/s, tokens/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    per_s: Option<f64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    note: String,
}

impl Record {
    fn new(bench: impl Into<String>, runs_s: Vec<f64>) -> Self {
        Self {
            bench: bench.into(),
            median_s: median(runs_s.clone()),
            runs_s,
            peak_mib: None,
            per_s: None,
            note: String::new(),
        }
    }
}

pub fn run(b: Bench) -> Result<()> {
    let (records, common) = match b {
        Bench::All { common, batches, no_train } => (all(&batches, !no_train, common.runs.max(1))?, common),
        Bench::Tokenizer { config, batch, keep, common } => {
            (tokenizer(&config, batch, common.runs.max(1), keep)?, common)
        }
        Bench::Train { config, batch, common } => (vec![train(&config, batch, common.runs.max(1))?], common),
        Bench::Tome { batch, tokens, dim, r, common } => {
            (vec![tome(batch, tokens, dim, r, common.runs.max(1))?], common)
        }
        Bench::Lfq { bits, batch, tokens, common } => (vec![lfq(bits, batch, tokens, common.runs.max(1))?], common),
        Bench::Ar { gpt, lengths, cfg, common } => (ar(&gpt, &lengths, cfg, common.runs.max(1))?, common),
    };
    if let Some(p) = common.json {
        let v = serde_json::json!({"impl": "mergevq", "threads": threads(), "device": format!("{:?}", mergevq::device()), "results": records});
        mergevq::io::atomic::atomic_write(&p, serde_json::to_string_pretty(&v)?.as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn all(batches: &[usize], with_train: bool, runs: usize) -> Result<Vec<Record>> {
    // The LFQ loss first: its peak-memory figure is only meaningful before large buffers exist.
    let mut out = vec![lfq(18, 16, 256, runs)?, tome(8, 256, 512, 64, runs)?];
    for config in ["configs/mergevq_256_GR_d64.toml", "configs/mergevq_256_G_d64.toml"] {
        for &b in batches {
            out.extend(tokenizer(Path::new(config), b, runs, None)?);
        }
    }
    if with_train {
        out.push(train(Path::new("configs/train_fmnist_tiny.toml"), 8, runs)?);
    }
    let m = ArModel { dim: 256, layers: 8, heads: 8 };
    out.extend(ar(&m, &[256, 1024], 1.0, runs)?);
    out.extend(ar(&m, &[1024], 1.5, runs)?);
    println!("\nsummary ({} threads)", threads());
    for r in &out {
        println!(
            "  {:<40} {:>10.4} s{}",
            r.bench,
            r.median_s,
            r.peak_mib.map(|m| format!("  peak {m:.1} MiB")).unwrap_or_default()
        );
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `f` once as a warm-up, then `runs` times.
fn time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let mut t = Vec::with_capacity(runs);
    for i in 0..=runs {
        let t0 = Instant::now();
        f()?;
        if i > 0 {
            t.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(t)
}

/// Forces the computation of a tensor (backends may be lazy).
fn sync<const D: usize>(t: Tensor<D>) {
    let _ = t.into_data();
}

fn threads() -> usize {
    rayon::current_num_threads()
}

/// Short name of a config file for record names: mergevq_256_GR_d64.toml → GR_d64.
fn config_tag(config: &Path) -> String {
    let stem = config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    stem.strip_prefix("mergevq_256_").unwrap_or(&stem).to_string()
}

/// Peak resident memory since the last reset, and the reset itself (Linux /proc).
mod rss {
    fn status(field: &str) -> Option<f64> {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = s.lines().find(|l| l.starts_with(field))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
    /// Current RSS in MiB, after resetting the peak to it.
    pub fn reset() -> Option<f64> {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        status("VmRSS:")
    }
    pub fn peak() -> Option<f64> {
        status("VmHWM:")
    }
}

fn tokenizer(config: &Path, batch: usize, runs: usize, keep: Option<usize>) -> Result<Vec<Record>> {
    let device = mergevq::device();
    let cfg = TokenizerConfig::load(config)?;
    let mut tok = Tokenizer::init(&cfg, 0, &device)?;
    if let Some(k) = keep {
        tok.set_keep(k)?;
    }
    let r = cfg.ddconfig.resolution;
    let x = Tensor::<4>::random([batch, 3, r, r], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
    let (mut enc, mut dec) = (vec![], vec![]);
    let both = time(runs, || {
        let t0 = Instant::now();
        let t = tok.encode(x.clone())?;
        sync(t.quantized.clone());
        let t1 = Instant::now();
        sync(tok.decode(t.quantized, &t.group));
        enc.push((t1 - t0).as_secs_f64());
        dec.push(t1.elapsed().as_secs_f64());
        Ok(())
    })?;
    // Drop the warm-up run of the split timings.
    let (enc, dec) = (enc.split_off(1), dec.split_off(1));
    let tag = format!("tokenizer.{}.b{batch}", config_tag(config));
    println!("{tag}: L={} K={} runs={runs} threads={}", tok.full_len(), tok.plan.kept()?, threads());
    let mut out = Vec::new();
    for (name, t) in [("encode", enc), ("decode", dec), ("encode_decode", both)] {
        let mut rec = Record::new(format!("{tag}.{name}"), t);
        rec.per_s = Some(batch as f64 / rec.median_s);
        println!("  {name:<14} {:.4} s  ({:.2} images/s)", rec.median_s, batch as f64 / rec.median_s);
        out.push(rec);
    }
    Ok(out)
}

fn train(config: &Path, batch: usize, runs: usize) -> Result<Record> {
    let mut cfg = mergevq::train::config::TrainConfig::load(config)?;
    cfg.data.batch_size = batch;
    cfg.optim.accumulate = 1;
    // Every loss on from the first step (the discriminator too).
    cfg.loss.disc_start = 0;
    cfg.run.out_dir = std::env::temp_dir().join(format!("mergevq-bench-train-{}", std::process::id()));
    let mut t = mergevq::train::tokenizer::Trainer::new(cfg.clone(), false)?;
    let res = cfg.tokenizer.ddconfig.resolution as u32;
    let loader = mergevq::io::data::Loader {
        source: t.train_source(),
        augment: mergevq::io::data::Augment { resolution: res, random_crop: false, flip: false, pad: cfg.data.pad },
        strong: mergevq::io::data::Augment { resolution: res, random_crop: true, flip: true, pad: cfg.data.pad },
        batch,
        seed: 0,
        skipped: Default::default(),
    };
    let b = loader.batch_at(0);
    let times = time(runs, || t.train_step(std::slice::from_ref(&b)).map(|_| ()))?;
    let _ = std::fs::remove_dir_all(&cfg.run.out_dir);
    let mut rec = Record::new(format!("train_step.tiny.b{batch}"), times);
    rec.per_s = Some(batch as f64 / rec.median_s);
    rec.note = format!("{}: all losses, discriminator on", config.display());
    println!(
        "{}: median {:.3} s/step, {:.1} images/s ({})",
        rec.bench,
        rec.median_s,
        batch as f64 / rec.median_s,
        rec.note
    );
    Ok(rec)
}

fn tome(batch: usize, tokens: usize, dim: usize, r: i64, runs: usize) -> Result<Record> {
    use mergevq::tokenizer::tome::{bipartite_soft_matching, Tracking};
    let device = mergevq::device();
    let n = tokens + 1;
    let x = Tensor::<3>::random([batch, n, dim], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let metric = Tensor::<3>::random([batch, n, dim], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let times = time(runs, || {
        let mut track = Tracking::new(batch, n);
        let m = bipartite_soft_matching(metric.clone(), r, true).context("r > 0 merges")?;
        let merged = m.merge_wavg(x.clone(), track.size_tensor(&device));
        track.apply(&m);
        sync(merged);
        Ok(())
    })?;
    let rec = Record::new(format!("tome_merge.b{batch}"), times);
    println!("{}: x [{batch}, {n}, {dim}], r = {r}: median {:.4} s", rec.bench, rec.median_s);
    Ok(rec)
}

fn lfq(bits: usize, batch: usize, tokens: usize, runs: usize) -> Result<Record> {
    let device = mergevq::device().autodiff();
    let s = (tokens as f64).sqrt() as usize;
    let q = mergevq::tokenizer::lfq::Lfq::new(bits);
    let z0 = Tensor::<4>::random([batch, bits, s, s], burn::tensor::Distribution::Normal(0.0, 0.1), &device);
    let base = rss::reset();
    let times = time(runs, || {
        let z = z0.clone().detach().require_grad();
        let l = q.losses(z.clone());
        let g = (l.entropy_aux + l.commitment).backward();
        sync(z.grad(&g).context("gradient of z")?);
        Ok(())
    })?;
    let mut rec = Record::new(format!("lfq_entropy.d{bits}.b{batch}x{tokens}"), times);
    rec.peak_mib = base.zip(rss::peak()).map(|(b, p)| p - b);
    println!(
        "{}: forward+backward median {:.4} s, peak extra memory {}",
        rec.bench,
        rec.median_s,
        rec.peak_mib.map(|m| format!("{m:.1} MiB")).unwrap_or_else(|| "n/a".into())
    );
    Ok(rec)
}

fn ar(m: &ArModel, lengths: &[usize], cfg_scale: f64, runs: usize) -> Result<Vec<Record>> {
    use mergevq::ar::gpt::{Gpt, GptConfig};
    use rand::SeedableRng;
    let device = mergevq::device();
    let opts = mergevq::ar::sample::SampleOpts { cfg: cfg_scale, ..Default::default() };
    let rows = if cfg_scale != 1.0 { "2 sequences (CFG)" } else { "1 sequence" };
    println!("AR decoding: dim {}, {} layers, {} heads, 18-bit codes (6+12), one image = {rows}, sampling every token, median of {runs}", m.dim, m.layers, m.heads);
    println!(
        "{:>6} {:>6} {:>10} {:>12} {:>10} {:>14} {:>8}",
        "L", "K", "mode", "tokens/s", "peak KV", "KV memory MiB", "speedup"
    );
    let mut out = Vec::new();
    for &l in lengths {
        let k = l / 4;
        let mut base = None;
        for (mode, merge_tokens, window) in [("plain", 0usize, None), ("mergear", 1, Some(2usize))] {
            let cfg = GptConfig {
                factorized_bits: [6, 12],
                block_size: l,
                dim: m.dim,
                n_head: m.heads,
                spatial_n_layer: m.layers,
                factorized_n_layer: 2,
                class_num: 1000,
                merge_tokens,
                multiple_of: 256,
                rope_base: 10000.0,
                class_dropout: 0.0,
            };
            let gpt = Gpt::load(mergevq::io::weights::Weights::random(0, &device).root(), &cfg)?;
            // Synthetic merged image: K groups of 4 consecutive positions, one code each.
            let codes: Vec<i64> = (0..l).map(|j| ((j / 4) as i64 * 7919) % (1 << 18)).collect();
            let mut peak = 0;
            let times = time(runs, || {
                let g = mergevq::ar::sample::generate(
                    &gpt,
                    1,
                    (merge_tokens > 0).then_some(0),
                    window,
                    &opts,
                    &mut rand::rngs::StdRng::seed_from_u64(0),
                    Some(&codes),
                )?;
                peak = g.peak_kv;
                Ok(())
            })?;
            let tag = if cfg_scale != 1.0 { ".cfg" } else { "" };
            let mut rec = Record::new(format!("ar.L{l}{tag}.{mode}"), times);
            let tps = l as f64 / rec.median_s;
            rec.per_s = Some(tps);
            let seqs = if cfg_scale != 1.0 { 2 } else { 1 };
            let mib = (seqs * peak * m.layers * 2 * m.dim * 4) as f64 / (1024.0 * 1024.0);
            rec.note = format!("peak KV entries {peak}, KV memory {mib:.2} MiB");
            let b = *base.get_or_insert(tps);
            println!("{l:>6} {k:>6} {mode:>10} {tps:>12.1} {peak:>10} {mib:>14.2} {:>7.2}x", tps / b);
            out.push(rec);
        }
    }
    Ok(out)
}
