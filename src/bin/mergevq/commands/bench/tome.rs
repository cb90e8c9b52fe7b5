//! `bench tome`: one ToMe step — bipartite matching on the keys, size-weighted merge, source
//! tracking.
use super::measure::{rss, sync, time};
use super::{Common, Record};
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use burn::tensor::Distribution;
use mergevq::tokenizer::tome::{bipartite_soft_matching, Tracking};
use mergevq::validate::int_in;

/// `mergevq bench tome`.
#[derive(clap::Args)]
pub struct TomeBench {
    #[arg(long, default_value_t = 8, value_parser = int_in(1, super::MAX_BATCH))]
    batch: usize,
    /// Image tokens (a [CLS] token is added).
    #[arg(long, default_value_t = 256, value_parser = int_in(2, 65_536))]
    tokens: usize,
    #[arg(long, default_value_t = 512, value_parser = int_in(1, 16_384))]
    dim: usize,
    /// Tokens merged (at most half the image tokens).
    #[arg(long, default_value_t = 64, value_parser = int_in(1, 32_768))]
    r: usize,
    #[command(flatten)]
    pub common: Common,
}

impl TomeBench {
    pub fn records(&self) -> Result<Vec<Record>> {
        if 2 * self.r > self.tokens {
            bail!("--r {} merges more than half of the {} tokens of --tokens", self.r, self.tokens);
        }
        Ok(vec![tome(self.batch, self.tokens, self.dim, self.r as i64, self.common.runs())?])
    }
}

/// Merges `r` of `tokens` + 1 tokens of dimension `dim` in each of `batch` sequences.
pub fn tome(batch: usize, tokens: usize, dim: usize, r: i64, runs: usize) -> Result<Record> {
    let device = mergevq::device();
    let n = tokens + 1;
    let x = Tensor::<3>::random([batch, n, dim], Distribution::Normal(0.0, 1.0), &device);
    let metric = Tensor::<3>::random([batch, n, dim], Distribution::Normal(0.0, 1.0), &device);
    let base = rss::reset();
    let times = time(runs, || {
        let mut track = Tracking::new(batch, n, &device);
        let m = bipartite_soft_matching(metric.clone(), r, true).context("r > 0 merges")?;
        let merged = m.merge_wavg(x.clone(), track.size_tensor());
        track.apply(&m);
        sync(merged);
        Ok(())
    })?;
    let mut rec = Record::new(format!("tome_merge.b{batch}"), times);
    rec.peak_mib = base.zip(rss::peak()).map(|(b, p)| p - b);
    println!("{}: x [{batch}, {n}, {dim}], r = {r}: median {:.4} s", rec.bench, rec.median_s);
    Ok(rec)
}
