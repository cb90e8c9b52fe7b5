//! `train-tokenizer` and `train-ar`: the training loops live in the library (`mergevq::train`).
use super::large::LargeArgs;
use anyhow::Result;
use mergevq::memory::Use;
use mergevq::train::ar::{ArConfig, ArTrainer};
use mergevq::train::config::TrainConfig;
use mergevq::train::run_dir::Start;
use mergevq::train::tokenizer::Trainer;
use std::path::PathBuf;

/// A training config and how its run starts in run.out_dir.
#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    config: PathBuf,
    /// Continue the run in run.out_dir from its checkpoint.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Start over in a run.out_dir that holds a run (its log starts anew; its checkpoint and
    /// weights are replaced).
    #[arg(long)]
    force: bool,
}

impl RunArgs {
    fn start(&self) -> Start {
        match (self.resume, self.force) {
            (true, _) => Start::Resume,
            (false, true) => Start::Force,
            (false, false) => Start::Fresh,
        }
    }
}

/// `mergevq train-tokenizer`.
#[derive(clap::Args)]
pub struct TrainTokenizerArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    large: LargeArgs,
}

impl TrainTokenizerArgs {
    pub fn run(self) -> Result<()> {
        let cfg = TrainConfig::load(&self.run.config)?;
        self.large.tokenizer(&cfg.tokenizer, cfg.data.batch_size, Use::Training)?;
        let mut t = Trainer::new(cfg, self.run.start())?;
        if self.run.resume {
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
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    large: LargeArgs,
}

impl TrainArArgs {
    pub fn run(self) -> Result<()> {
        let cfg = ArConfig::load(&self.run.config)?;
        self.large.check(cfg.gpt.memory(cfg.batch_size, Use::Training))?;
        let mut t = ArTrainer::new(cfg, self.run.start())?;
        if self.run.resume {
            println!("resuming at step {}", t.step);
        }
        let s = t.run()?;
        println!("validation loss (EMA) {:.4}; wrote {}", s.val, s.exported.display());
        Ok(())
    }
}
