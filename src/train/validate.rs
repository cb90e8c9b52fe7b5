//! Range checks of every training-config field (tokenizer and AR trainers), run by the configs'
//! `load`: each refusal names the field and its allowed range.
use super::ar::{ArConfig, ArMode};
use super::config::{DataConfig, DataSource, LossConfig, OptimConfig, RunConfig, TrainConfig};
use super::optim::Schedule;
use crate::validate::{check_float, check_int, FloatRange};
use anyhow::{bail, Result};

/// Largest batch, step count and interval accepted (far beyond any run, far from overflow).
const MAX_BATCH: usize = 1 << 16;
const MAX_STEPS: usize = 1 << 40;
/// Largest loss weight accepted.
const MAX_WEIGHT: f64 = 1e6;

impl TrainConfig {
    /// Every field in range; the tokenizer config too (with what training does not support).
    pub fn validate(&self) -> Result<()> {
        self.tokenizer.validate().map_err(|e| e.context("tokenizer"))?;
        let d = &self.tokenizer.ddconfig;
        if d.drop_path > 0.0 {
            bail!(
                "tokenizer.ddconfig.drop_path must be 0 in training (stochastic depth is not supported), got {}",
                d.drop_path
            );
        }
        self.optim.validate("optim")?;
        self.loss.validate()?;
        self.data.validate()?;
        self.run.validate()
    }
}

impl OptimConfig {
    /// Learning rate, betas, decay, accumulation, clipping, schedule and EMA in range.
    pub fn validate(&self, at: &str) -> Result<()> {
        // Any finite rate: a diverging run is stopped by the trainer with the step named.
        check_float(&format!("{at}.lr"), self.lr, FloatRange::POSITIVE)?;
        check_float(&format!("{at}.betas[0]"), self.betas[0], FloatRange::below(0.0, 1.0))?;
        check_float(&format!("{at}.betas[1]"), self.betas[1], FloatRange::below(0.0, 1.0))?;
        check_float(&format!("{at}.weight_decay"), self.weight_decay, FloatRange::closed(0.0, 10.0))?;
        check_int(&format!("{at}.accumulate"), self.accumulate, 1, MAX_BATCH)?;
        if let Some(c) = self.clip {
            check_float(&format!("{at}.clip"), c, FloatRange::positive_to(1e6))?;
        }
        check_float(&format!("{at}.ema"), self.ema, FloatRange::below(0.0, 1.0))?;
        match &self.schedule {
            Schedule::None => Ok(()),
            Schedule::Warmup { warmup } => check_int(&format!("{at}.schedule.warmup"), *warmup, 0, MAX_STEPS).map(drop),
            Schedule::WarmupCosine { warmup, min_lr } => {
                check_int(&format!("{at}.schedule.warmup"), *warmup, 0, MAX_STEPS)?;
                check_float(&format!("{at}.schedule.min_lr"), *min_lr, FloatRange::closed(0.0, self.lr)).map(drop)
            }
            Schedule::Step { drops, rate } => {
                for (i, &s) in drops.iter().enumerate() {
                    check_int(&format!("{at}.schedule.drops[{i}]"), s, 0, MAX_STEPS)?;
                }
                check_float(&format!("{at}.schedule.rate"), *rate, FloatRange::closed(0.0, 1.0)).map(drop)
            }
        }
    }
}

impl LossConfig {
    /// Weights finite and ≥ 0; discriminator sizes and label smoothing in range.
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("perceptual_weight", self.perceptual_weight),
            ("gen_loss_weight", self.gen_loss_weight),
            ("lecam_weight", self.lecam_weight),
            ("codebook_weight", self.codebook_weight),
            ("commit_weight", self.commit_weight),
            ("codebook_enlarge_ratio", self.codebook_enlarge_ratio),
            ("cls_weight", self.cls_weight),
            ("source_weight", self.source_weight),
            ("adaptive_disc_weight", self.adaptive_disc_weight.unwrap_or(0.0)),
        ] {
            check_float(&format!("loss.{name}"), v, FloatRange::closed(0.0, MAX_WEIGHT))?;
        }
        check_float("loss.label_smoothing", self.label_smoothing, FloatRange::below(0.0, 1.0))?;
        check_int("loss.codebook_enlarge_steps", self.codebook_enlarge_steps, 1, MAX_STEPS)?;
        check_int("loss.disc_start", self.disc_start, 0, MAX_STEPS)?;
        check_int("loss.disc_ndf", self.disc_ndf, 1, 4096)?;
        check_int("loss.disc_layers", self.disc_layers, 1, 8)?;
        if self.perceptual_weight > 0.0 && self.lpips_weights.is_none() {
            bail!("loss.perceptual_weight > 0 needs loss.lpips_weights (run scripts/fetch-weights.sh, or set perceptual_weight = 0)");
        }
        Ok(())
    }
}

impl DataConfig {
    fn validate(&self) -> Result<()> {
        check_int("data.batch_size", self.batch_size, 1, MAX_BATCH)?;
        if self.source == DataSource::Folder && self.path.is_none() {
            bail!("data.path is required for a folder source");
        }
        if let Some([lo, hi]) = self.crop_scale {
            if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
                bail!(
                    "data.crop_scale = [{lo}, {hi}] must be [lo, hi] with 0 < lo ≤ hi ≤ 1 (shares of the image's area)"
                );
            }
        }
        Ok(())
    }
}

impl RunConfig {
    /// Steps ≥ 1; logging, sampling, checkpoint and validation intervals and the time limit in range.
    pub fn validate(&self) -> Result<()> {
        check_int("run.steps", self.steps, 1, MAX_STEPS)?;
        check_int("run.log_every", self.log_every, 1, MAX_STEPS)?;
        check_int("run.sample_every", self.sample_every, 1, MAX_STEPS)?;
        check_int("run.checkpoint_every", self.checkpoint_every, 1, MAX_STEPS)?;
        check_int("run.val_every", self.val_every, 0, MAX_STEPS)?;
        check_int("run.val_images", self.val_images, 1, 1 << 24)?;
        if let Some(m) = self.max_minutes {
            check_float("run.max_minutes", m, FloatRange::positive_to(1e9))?;
        }
        Ok(())
    }
}

impl ArConfig {
    /// The GPT config, the mode's merge tokens, the window, batch, split, optimizer and run.
    pub fn validate(&self) -> Result<()> {
        self.gpt.validate().map_err(|e| e.context("gpt"))?;
        match self.mode {
            ArMode::Plain if self.gpt.merge_tokens != 0 => bail!("plain AR takes gpt.merge_tokens = 0"),
            ArMode::MergeAr if self.gpt.merge_tokens == 0 => {
                bail!("MergeAR needs gpt.merge_tokens = the number of kept-count candidates")
            }
            ArMode::Plain | ArMode::MergeAr => {}
        }
        check_int("window", self.window, 0, self.gpt.block_size)?;
        check_float("val_fraction", self.val_fraction, FloatRange::below(0.0, 1.0))?;
        check_int("batch_size", self.batch_size, 1, MAX_BATCH)?;
        self.optim.validate("optim")?;
        self.run.validate()
    }
}
