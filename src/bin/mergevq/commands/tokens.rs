//! `extract-tokens`: a data set tokenized once for AR training (`TokenSet::extract`).
use super::large::LargeArgs;
use crate::progress;
use anyhow::Result;
use mergevq::io::data;
use mergevq::io::tokens::TokenSet;
use mergevq::memory::Use;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use mergevq::validate::{int_in, MAX_SIZE};
use std::path::PathBuf;

/// `mergevq extract-tokens`.
#[derive(clap::Args)]
pub struct ExtractTokensArgs {
    /// Tokenizer weights.
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long)]
    config: PathBuf,
    /// An image folder (class sub-folders), or fashion-mnist[:train|test].
    #[arg(long)]
    data: String,
    #[arg(short, long)]
    output: PathBuf,
    /// Fix K for every image (default: drawn from the tokenizer's candidate list).
    #[arg(long, value_parser = int_in(1, MAX_SIZE))]
    keep: Option<usize>,
    /// Only the first N images.
    #[arg(long, value_parser = int_in(1, MAX_SIZE))]
    limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    large: LargeArgs,
}

impl ExtractTokensArgs {
    pub fn run(self) -> Result<()> {
        let cfg = TokenizerConfig::load(&self.config)?;
        self.large.tokenizer(&cfg, 1, Use::Inference)?;
        let tok = Tokenizer::open(&cfg, &self.tokenizer, false, &mergevq::device())?;
        let source = data::open(&self.data)?;
        let n = self.limit.unwrap_or(usize::MAX).min(source.len());
        let pb = progress::bar(n as u64, "extract-tokens");
        let set = TokenSet::extract(&tok, source, n, self.keep, self.seed, &|k| pb.inc(k))?;
        pb.finish_and_clear();
        set.save(&self.output)?;
        println!(
            "wrote {} images × L={} codes (K ∈ {:?}, {} classes) to {}",
            set.len(),
            tok.full_len(),
            set.candidates,
            set.classes,
            self.output.display()
        );
        Ok(())
    }
}
