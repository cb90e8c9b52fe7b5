//! `bench lfq`: the LFQ entropy + commitment loss, forward and backward — time and peak extra
//! memory.
use super::measure::{rss, sync, time};
use super::{Common, Record};
use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::Distribution;
use mergevq::tokenizer::lfq::Lfq;
use mergevq::validate::{int_in, square_in};

/// `mergevq bench lfq`.
#[derive(clap::Args)]
pub struct LfqBench {
    /// Code bits d (codebook 2^d).
    #[arg(long, default_value_t = 18, value_parser = int_in(1, 24))]
    bits: usize,
    #[arg(long, default_value_t = 16, value_parser = int_in(1, super::MAX_BATCH))]
    batch: usize,
    /// Tokens per image (a square number).
    #[arg(long, default_value_t = 256, value_parser = square_in(1, 65_536))]
    tokens: usize,
    #[command(flatten)]
    pub common: Common,
}

impl LfqBench {
    pub fn records(&self) -> Result<Vec<Record>> {
        Ok(vec![lfq(self.bits, self.batch, self.tokens, self.common.runs())?])
    }
}

/// The losses of `batch` maps of `tokens` codes with `bits` bits.
pub fn lfq(bits: usize, batch: usize, tokens: usize, runs: usize) -> Result<Record> {
    let device = mergevq::device().autodiff();
    let s = (tokens as f64).sqrt() as usize;
    let q = Lfq::new(bits);
    let z0 = Tensor::<4>::random([batch, bits, s, s], Distribution::Normal(0.0, 0.1), &device);
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
