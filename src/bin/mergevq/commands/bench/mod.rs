//! `mergevq bench …`: medians over repeated runs after one warm-up, printed as a table and
//! optionally written as JSON records {bench, median_s, runs_s, peak_mib} — the same names and
//! layout as `bench/reference.py`, so `bench/compare.py` can put the two side by side.
mod ar;
mod group_maps;
mod lfq;
mod measure;
mod tokenizer;
mod tome;
mod train;

use super::large::LargeArgs;
use anyhow::Result;
use ar::{ArBench, ArModel, ArRun};
use clap::Subcommand;
use lfq::LfqBench;
use measure::{median, threads};
use mergevq::io::marker::{Format, Marker};
use mergevq::io::output::Outputs;
use mergevq::validate::int_in;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tokenizer::TokenizerBench;
use tome::TomeBench;
use train::TrainBench;

/// `mergevq bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Bench,
}

#[derive(Subcommand)]
pub enum Bench {
    /// Everything below at the sizes: tokenizer G+R d64 and G d64 at batch 1 and 8,
    /// a training step, a ToMe merge step, the LFQ entropy at d = 18, AR decoding.
    All(AllBench),
    /// Tokenizer encode, decode and encode+decode on random weights and inputs.
    Tokenizer(TokenizerBench),
    /// One tokenizer training step (generator + discriminator, all losses of the config) on
    /// a fixed batch.
    Train(TrainBench),
    /// One ToMe step: bipartite matching on the keys, size-weighted merge, source tracking.
    Tome(TomeBench),
    /// LFQ entropy + commitment loss, forward and backward: time and peak extra memory.
    Lfq(LfqBench),
    /// Batched AR decoding (B images, CFG), plain vs MergeAR, on a random MergeAR GPT with the
    /// group maps of the tokenizer encoding a photo: tokens/s and the KV memory allocated.
    Ar(ArBench),
}

/// The marker of a --json record file (the `impl` of bench/reference.py's records is
/// "pytorch"; ours are replaced only by ours).
const BENCH_JSON: Marker = Marker { key: "impl", value: Some("mergevq"), what: "mergevq benchmark record file" };

/// The largest batch a benchmark takes.
const MAX_BATCH: usize = 4096;

/// Flags every benchmark takes.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Timed runs after one warm-up.
    #[arg(long, default_value_t = 5, value_parser = int_in(1, 100_000))]
    runs: usize,
    /// Also write the records as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    large: LargeArgs,
}

impl Common {
    /// Timed runs (at least one: the parser refuses 0).
    fn runs(&self) -> usize {
        self.runs
    }
}

/// One benchmark's timings.
#[derive(Serialize)]
pub struct Record {
    bench: String,
    median_s: f64,
    runs_s: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_mib: Option<f64>,
    /// Throughput in the bench's unit (images/s, tokens/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    per_s: Option<f64>,
    /// KV-cache bytes allocated at the peak, MiB (AR decoding).
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_kv_mib: Option<f64>,
    /// Classifier-free guidance scale (AR decoding).
    #[serde(skip_serializing_if = "Option::is_none")]
    cfg: Option<f64>,
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
            peak_kv_mib: None,
            cfg: None,
            note: String::new(),
        }
    }
}

impl BenchArgs {
    pub fn run(self) -> Result<()> {
        let outs = Outputs::default();
        let json = self.common().json.as_ref();
        if let Some(p) = json {
            outs.check(p, Format::Json(BENCH_JSON))?;
        }
        let records = match &self.what {
            Bench::All(b) => b.records()?,
            Bench::Tokenizer(b) => b.records()?,
            Bench::Train(b) => b.records()?,
            Bench::Tome(b) => b.records()?,
            Bench::Lfq(b) => b.records()?,
            Bench::Ar(b) => b.records()?,
        };
        if let Some(p) = json {
            let v = serde_json::json!({"impl": "mergevq", "threads": threads(), "device": format!("{:?}", mergevq::device()), "results": records});
            outs.write(p, Format::Json(BENCH_JSON), serde_json::to_string_pretty(&v)?.as_bytes())?;
            println!("wrote {}", p.display());
        }
        Ok(())
    }

    /// The flags of the benchmark chosen.
    fn common(&self) -> &Common {
        match &self.what {
            Bench::All(b) => &b.common,
            Bench::Tokenizer(b) => &b.common,
            Bench::Train(b) => &b.common,
            Bench::Tome(b) => &b.common,
            Bench::Lfq(b) => &b.common,
            Bench::Ar(b) => &b.common,
        }
    }
}

/// `mergevq bench all`.
#[derive(clap::Args)]
pub struct AllBench {
    #[command(flatten)]
    common: Common,
    /// Batch sizes for the tokenizer benchmarks.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 8], value_parser = int_in(1, MAX_BATCH))]
    batches: Vec<usize>,
    /// Leave out the training step (it needs Fashion-MNIST and the LPIPS weights).
    #[arg(long)]
    no_train: bool,
}

impl AllBench {
    fn records(&self) -> Result<Vec<Record>> {
        let runs = self.common.runs();
        // The LFQ loss first: its peak-memory figure is only meaningful before large buffers exist.
        let mut out = vec![lfq::lfq(18, 16, 256, runs)?, tome::tome(8, 256, 512, 64, runs)?];
        for config in ["configs/mergevq_256_GR_d64.toml", "configs/mergevq_256_G_d64.toml"] {
            for &b in &self.batches {
                out.extend(tokenizer::tokenizer(Path::new(config), b, runs, None, self.common.large)?);
            }
        }
        if !self.no_train {
            out.push(train::train(Path::new("configs/train_fmnist_tiny.toml"), None, 8, runs, self.common.large)?);
        }
        let m = ArModel { dim: 256, layers: 8, heads: 8, gpt_b: false };
        let photo = Path::new("assets/rocket.jpg");
        let run = |lengths: &'static [usize], cfg, batch| ArRun {
            model: &m,
            lengths,
            cfg,
            batch,
            keep: None,
            window: 2,
            photo,
            runs,
        };
        out.extend(ar::ar(&run(&[256, 1024], 1.0, 1))?);
        out.extend(ar::ar(&run(&[1024], 1.5, 16))?);
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
}
