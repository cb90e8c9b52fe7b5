//! `bench tokenizer`: encode, decode and encode+decode on random weights and inputs.
use super::measure::{rss, sync, threads, time};
use super::{Common, Record};
use crate::commands::large::LargeArgs;
use anyhow::Result;
use burn::prelude::*;
use mergevq::memory::Use;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use mergevq::validate::{int_in, MAX_SIZE};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `mergevq bench tokenizer`.
#[derive(clap::Args)]
pub struct TokenizerBench {
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 1, value_parser = int_in(1, super::MAX_BATCH))]
    batch: usize,
    /// Kept-token count K (default: the config's).
    #[arg(long, value_parser = int_in(1, MAX_SIZE))]
    keep: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

impl TokenizerBench {
    pub fn records(&self) -> Result<Vec<Record>> {
        tokenizer(&self.config, self.batch, self.common.runs(), self.keep, self.common.large)
    }
}

pub fn tokenizer(
    config: &Path,
    batch: usize,
    runs: usize,
    keep: Option<usize>,
    large: LargeArgs,
) -> Result<Vec<Record>> {
    let device = mergevq::device();
    let cfg = TokenizerConfig::load(config)?;
    large.tokenizer(&cfg, batch, Use::Inference)?;
    let tok = Tokenizer::init(&cfg, 0, &device)?;
    let plan = match keep {
        Some(k) => tok.keep(k)?,
        None => tok.plan.clone(),
    };
    let r = cfg.ddconfig.resolution;
    let x = Tensor::<4>::random([batch, 3, r, r], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
    let (mut enc, mut dec) = (vec![], vec![]);
    let base = rss::reset();
    let both = time(runs, || {
        let t0 = Instant::now();
        let t = tok.encode(x.clone(), &plan)?;
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
    println!("{tag}: L={} K={} runs={runs} threads={}", tok.full_len(), plan.kept()?, threads());
    let mut out = Vec::new();
    for (name, t) in [("encode", enc), ("decode", dec), ("encode_decode", both)] {
        let mut rec = Record::new(format!("{tag}.{name}"), t);
        rec.per_s = Some(batch as f64 / rec.median_s);
        rec.peak_mib = base.zip(rss::peak()).map(|(b, p)| p - b);
        println!("  {name:<14} {:.4} s  ({:.2} images/s)", rec.median_s, batch as f64 / rec.median_s);
        out.push(rec);
    }
    Ok(out)
}

/// Short name of a config file for record names: mergevq_256_GR_d64.toml → GR_d64.
fn config_tag(config: &Path) -> String {
    let stem = config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    stem.strip_prefix("mergevq_256_").unwrap_or(&stem).to_string()
}
