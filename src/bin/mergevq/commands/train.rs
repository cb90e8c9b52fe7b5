//! `train-tokenizer` and `train-ar`: the training loops live in the library (`mergevq::train`).
use anyhow::Result;
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
}

impl TrainTokenizerArgs {
    pub fn run(self) -> Result<()> {
        let mut t = Trainer::new(TrainConfig::load(&self.config)?, self.resume)?;
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
}

impl TrainArArgs {
    pub fn run(self) -> Result<()> {
        let mut t = ArTrainer::new(ArConfig::load(&self.config)?, self.resume)?;
        if self.resume {
            println!("resuming at step {}", t.step);
        }
        let s = t.run()?;
        println!("validation loss (EMA) {:.4}; wrote {}", s.val, s.exported.display());
        Ok(())
    }
}
