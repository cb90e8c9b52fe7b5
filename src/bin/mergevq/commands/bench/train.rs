//! `bench train`: one tokenizer training step (generator + discriminator, every loss of the
//! config) on a fixed batch.
use super::measure::{rss, time};
use super::{Common, Record};
use crate::commands::large::LargeArgs;
use anyhow::Result;
use mergevq::io::data::{Augment, Loader};
use mergevq::io::preprocess::Preprocess;
use mergevq::memory::Use;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::train::config::TrainConfig;
use mergevq::train::run_dir::Start;
use mergevq::train::tokenizer::Trainer;
use mergevq::validate::int_in;
use std::path::{Path, PathBuf};

/// `mergevq bench train`.
#[derive(clap::Args)]
pub struct TrainBench {
    /// A train-tokenizer config (its data, losses and model).
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 8, value_parser = int_in(1, super::MAX_BATCH))]
    batch: usize,
    /// Train this tokenizer config (TOML or official YAML) instead of the config's, on its data
    /// resized to the tokenizer's resolution (e.g. the official GR_d64 at 256²).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

impl TrainBench {
    pub fn records(&self) -> Result<Vec<Record>> {
        Ok(vec![train(&self.config, self.tokenizer.as_deref(), self.batch, self.common.runs(), self.common.large)?])
    }
}

pub fn train(config: &Path, tokenizer: Option<&Path>, batch: usize, runs: usize, large: LargeArgs) -> Result<Record> {
    let mut cfg = TrainConfig::load(config)?;
    if let Some(path) = tokenizer {
        cfg.tokenizer = TokenizerConfig { preprocess: Preprocess::Resize, ..TokenizerConfig::load(path)? };
    }
    let tag = tokenizer.map_or("tiny".into(), super::tokenizer::config_tag);
    cfg.data.batch_size = batch;
    cfg.optim.accumulate = 1;
    // Every loss on from the first step (the discriminator too).
    cfg.loss.disc_start = 0;
    large.tokenizer(&cfg.tokenizer, batch, Use::Training)?;
    cfg.run.out_dir = std::env::temp_dir().join(format!("mergevq-bench-train-{}", std::process::id()));
    let mut t = Trainer::new(cfg.clone(), Start::Fresh)?;
    let res = cfg.tokenizer.ddconfig.resolution as u32;
    let loader = Loader {
        source: t.train_source(),
        augment: Augment {
            resolution: res,
            random_crop: false,
            crop_scale: None,
            flip: false,
            preprocess: cfg.tokenizer.preprocess,
        },
        strong: Augment {
            resolution: res,
            random_crop: true,
            crop_scale: None,
            flip: true,
            preprocess: cfg.tokenizer.preprocess,
        },
        batch,
        seed: 0,
        skipped: Default::default(),
    };
    let b = loader.batch_at(0)?;
    let base = rss::reset();
    let times = time(runs, || t.train_step(std::slice::from_ref(&b)).map(|_| ()))?;
    let _ = std::fs::remove_dir_all(&cfg.run.out_dir);
    let mut rec = Record::new(format!("train_step.{tag}.b{batch}"), times);
    rec.per_s = Some(batch as f64 / rec.median_s);
    rec.peak_mib = base.zip(rss::peak()).map(|(b, p)| p - b);
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
