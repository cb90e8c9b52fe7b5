//! `--allow-large`, shared by every command that builds a model: before any weight is
//! allocated, the model's memory estimate (`mergevq::memory`) is checked against the
//! available memory, and a model that does not fit is refused unless the flag is given.
use anyhow::Result;
use mergevq::ar::gpt::GptConfig;
use mergevq::memory::{Estimate, Use};
use mergevq::tokenizer::config::TokenizerConfig;

#[derive(clap::Args, Clone, Copy, Debug)]
pub struct LargeArgs {
    /// Build the model even when its memory estimate exceeds the available memory.
    #[arg(long)]
    pub allow_large: bool,
}

impl LargeArgs {
    /// Refuses an estimate that does not fit (unless --allow-large).
    pub fn check(&self, e: Estimate) -> Result<()> {
        e.check(self.allow_large)
    }

    /// A tokenizer of `cfg` running `batch` images.
    pub fn tokenizer(&self, cfg: &TokenizerConfig, batch: usize, usage: Use) -> Result<()> {
        self.check(cfg.memory(batch, usage))
    }

    /// A GPT of `gpt` with a tokenizer of `tok`, sampling `batch` sequences.
    pub fn generator(&self, gpt: &GptConfig, tok: &TokenizerConfig, batch: usize) -> Result<()> {
        self.check(gpt.memory(batch, Use::Inference).plus(tok.memory(1, Use::Inference)))
    }
}
