//! `mergevq bench …`: timings as medians over repeated runs after a warm-up.
use anyhow::Result;
use burn::prelude::*;
use clap::Subcommand;
use mergevq::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum Bench {
    /// One tokenizer training step (generator + discriminator, all losses of the config) on
    /// a fixed batch: images/s.
    Train {
        /// A train-tokenizer config (its data, losses and model).
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// AR decoding, plain vs MergeAR, on a random GPT with a synthetic group map (K = L/4,
    /// groups of 4 consecutive tokens): tokens/s, peak KV-cache entries and cache memory.
    Ar {
        #[arg(long, default_value_t = 256)]
        dim: usize,
        #[arg(long, default_value_t = 8)]
        layers: usize,
        #[arg(long, default_value_t = 8)]
        heads: usize,
        #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 1024])]
        lengths: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Tokenizer encode, decode and encode+decode on random weights and inputs.
    Tokenizer {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Kept-token count K (default: the config's).
        #[arg(long)]
        keep: Option<usize>,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

pub fn run(b: Bench) -> Result<()> {
    match b {
        Bench::Train { config, batch, runs } => train(&config, batch, runs.max(1)),
        Bench::Ar { dim, layers, heads, lengths, runs } => ar(dim, layers, heads, &lengths, runs.max(1)),
        Bench::Tokenizer { config, batch, runs, keep, json } => tokenizer(&config, batch, runs.max(1), keep, json),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Forces the computation of a tensor (backends may be lazy).
fn sync<const D: usize>(t: Tensor<D>) {
    let _ = t.into_data();
}

fn tokenizer(config: &PathBuf, batch: usize, runs: usize, keep: Option<usize>, json: Option<PathBuf>) -> Result<()> {
    let device = mergevq::device();
    let cfg = TokenizerConfig::load(config)?;
    let mut tok = Tokenizer::init(&cfg, 0, &device)?;
    if let Some(k) = keep {
        tok.set_keep(k)?;
    }
    let r = cfg.ddconfig.resolution;
    let x = Tensor::<4>::random([batch, 3, r, r], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
    let (mut enc, mut dec, mut both) = (vec![], vec![], vec![]);
    for i in 0..=runs {
        let t0 = Instant::now();
        let t = tok.encode(x.clone())?;
        sync(t.quantized.clone());
        let t1 = Instant::now();
        sync(tok.decode(t.quantized, &t.group));
        let t2 = Instant::now();
        if i > 0 {
            enc.push((t1 - t0).as_secs_f64());
            dec.push((t2 - t1).as_secs_f64());
            both.push((t2 - t0).as_secs_f64());
        }
    }
    let k = tok.plan.kept()?;
    let (e, d, ed) = (median(enc), median(dec), median(both));
    println!("tokenizer {} batch={batch} L={} K={k} runs={runs} threads={}", config.display(), tok.full_len(), rayon_threads());
    println!("  encode         {e:.4} s");
    println!("  decode         {d:.4} s");
    println!("  encode+decode  {ed:.4} s");
    if let Some(p) = json {
        let v = serde_json::json!({"bench": "tokenizer", "config": config, "batch": batch, "L": tok.full_len(), "K": k, "runs": runs,
            "median_s": {"encode": e, "decode": d, "encode_decode": ed}});
        mergevq::weights::atomic_write(&p, serde_json::to_string_pretty(&v)?.as_bytes())?;
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn ar(dim: usize, layers: usize, heads: usize, lengths: &[usize], runs: usize) -> Result<()> {
    use mergevq::gpt::{Gpt, GptConfig};
    use rand::SeedableRng;
    let device = mergevq::device();
    println!("AR decoding: dim {dim}, {layers} layers, {heads} heads, 18-bit codes (6+12), batch 1, median of {runs}");
    println!("{:>6} {:>6} {:>10} {:>12} {:>10} {:>14} {:>8}", "L", "K", "mode", "tokens/s", "peak KV", "KV memory MiB", "speedup");
    for &l in lengths {
        let k = l / 4;
        let mut results = Vec::new();
        for (mode, merge_tokens, window) in [("plain", 0usize, None), ("MergeAR", 1, Some(2usize))] {
            let cfg = GptConfig { factorized_bits: [6, 12], block_size: l, dim, n_head: heads, spatial_n_layer: layers, factorized_n_layer: 2, class_num: 1000, merge_tokens, multiple_of: 256, rope_base: 10000.0, class_dropout: 0.0 };
            let gpt = Gpt::load(&mergevq::weights::Weights::random(0, &device), "", &cfg)?;
            // Synthetic merged image: K groups of 4 consecutive positions, one code each.
            let codes: Vec<i64> = (0..l).map(|j| ((j / 4) as i64 * 7919) % (1 << 18)).collect();
            let mut times = Vec::new();
            let mut peak = 0;
            for i in 0..=runs {
                let t0 = Instant::now();
                let g = mergevq::sample::generate(&gpt, 1, (merge_tokens > 0).then_some(0), window, &Default::default(), &mut rand::rngs::StdRng::seed_from_u64(0), Some(&codes))?;
                if i > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
                peak = g.peak_kv;
            }
            let tps = l as f64 / median(times);
            let mib = (peak * layers * 2 * dim * 4) as f64 / (1024.0 * 1024.0);
            results.push((mode, tps, peak, mib));
        }
        let base = results[0].1;
        for (mode, tps, peak, mib) in results {
            println!("{l:>6} {k:>6} {mode:>10} {tps:>12.1} {peak:>10} {mib:>14.2} {:>7.2}x", tps / base);
        }
    }
    Ok(())
}

fn train(config: &PathBuf, batch: usize, runs: usize) -> Result<()> {
    let mut cfg = mergevq::train::config::TrainConfig::load(config)?;
    cfg.data.batch_size = batch;
    cfg.optim.accumulate = 1;
    // Every loss on from the first step (the discriminator too).
    cfg.loss.disc_start = 0;
    cfg.run.out_dir = std::env::temp_dir().join(format!("mergevq-bench-train-{}", std::process::id()));
    let mut t = mergevq::train::tokenizer::Trainer::new(cfg.clone(), false)?;
    let loader = mergevq::data::Loader {
        source: t.train_source(),
        augment: mergevq::data::Augment { resolution: cfg.tokenizer.ddconfig.resolution as u32, random_crop: false, flip: false, pad: cfg.data.pad },
        strong: mergevq::data::Augment { resolution: cfg.tokenizer.ddconfig.resolution as u32, random_crop: true, flip: true, pad: cfg.data.pad },
        batch,
        seed: 0,
        skipped: Default::default(),
    };
    let b = loader.batch_at(0);
    let mut times = Vec::new();
    for i in 0..=runs {
        let t0 = Instant::now();
        t.train_step(std::slice::from_ref(&b))?;
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let m = median(times);
    println!("train step {} batch={batch} runs={runs}: median {m:.3} s/step, {:.1} images/s (all losses, discriminator on)", config.display(), batch as f64 / m);
    let _ = std::fs::remove_dir_all(&cfg.run.out_dir);
    Ok(())
}
