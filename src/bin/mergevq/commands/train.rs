//! `train-tokenizer` and `train-ar`: the training loops live in the library (`mergevq::train`).
use super::large::LargeArgs;
use anyhow::Result;
use mergevq::memory::Use;
use mergevq::train::ar::{ArConfig, ArTrainer};
use mergevq::train::config::TrainConfig;
use mergevq::train::tokenizer::Trainer;
use std::path::PathBuf;

/// `mergevq train-tokenizer`.
#[derive(clap::Args)]
pub struct TrainTokenizerArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    large: LargeArgs,
}

impl TrainTokenizerArgs {
    pub fn run(self) -> Result<()> {
        let cfg = TrainConfig::load(&self.config)?;
        self.large.tokenizer(&cfg.tokenizer, cfg.data.batch_size, Use::Training)?;
        let mut t = Trainer::new(cfg, self.resume)?;
        if self.resume {
            println!("resuming at step {}", t.step);
        }
        let s = t.run()?;
        println!(
            "trained {} steps ({:.1} images/s); validation PSNR (EMA) {:.2} dB; wrote {}",
            s.steps,
            s.images_per_s,
            s.val,
            s.exported.display()
        );
        Ok(())
    }
}

/// `mergevq train-ar`.
#[derive(clap::Args)]
pub struct TrainArArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    large: LargeArgs,
}

impl TrainArArgs {
    pub fn run(self) -> Result<()> {
        let cfg = ArConfig::load(&self.config)?;
        self.large.check(cfg.gpt.memory(cfg.batch_size, Use::Training))?;
        let mut t = ArTrainer::new(cfg, self.resume)?;
        if self.resume {
            println!("resuming at step {}", t.step);
        }
        let s = t.run()?;
        println!("validation loss (EMA) {:.4}; wrote {}", s.val, s.exported.display());
        Ok(())
    }
}
