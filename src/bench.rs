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
