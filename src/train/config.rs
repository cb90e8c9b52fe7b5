//! The training config (TOML): the tokenizer, data, optimizer, loss weights and run settings.
//! Defaults follow the reference configs (configs/gpu_s1/*.yaml, VQLPIPSWithDiscriminator).
use super::optim::Schedule;
use crate::tokenizer::config::TokenizerConfig;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub tokenizer: TokenizerConfig,
    pub data: DataConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub loss: LossConfig,
    pub run: RunConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub source: DataSource,
    /// Folder of class sub-folders (source = "folder"), or the Fashion-MNIST directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Validation folder (folder source); Fashion-MNIST validates on its test split.
    #[serde(default)]
    pub val_path: Option<PathBuf>,
    pub batch_size: usize,
    #[serde(default)]
    pub random_crop: bool,
    /// Random-resized crops: each training image is a square of a random share of the photo's
    /// area in [lo, hi] (0 < lo ≤ hi ≤ 1), at a random position, resized to the resolution.
    #[serde(default)]
    pub crop_scale: Option<[f64; 2]>,
    #[serde(default = "yes")]
    pub flip: bool,
}

/// Where the training images come from.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// The Fashion-MNIST IDX files (`path`, or the system data set); validates on the test split.
    FashionMnist,
    /// A folder of class sub-folders (`path`, `val_path`).
    Folder,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Adam with L2 weight decay added to the gradient.
    #[default]
    Adam,
    /// AdamW (decoupled weight decay).
    AdamW,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    #[serde(default)]
    pub optimizer: Optimizer,
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default = "betas")]
    pub betas: [f64; 2],
    #[serde(default)]
    pub weight_decay: f64,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub accumulate: usize,
    /// Global-norm gradient clipping.
    #[serde(default)]
    pub clip: Option<f64>,
    #[serde(default = "no_schedule")]
    pub schedule: Schedule,
    #[serde(default = "ema")]
    pub ema: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// The pixel reconstruction loss.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Reconstruction {
    /// Mean absolute error.
    #[default]
    L1,
    /// Mean squared error.
    L2,
}

/// A GAN loss (VQGAN / Open-MAGVIT2): hinge, or the non-saturating (softplus) loss.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AdvLoss {
    Hinge,
    NonSaturate,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    #[serde(default)]
    pub reconstruction: Reconstruction,
    #[serde(default = "one_f")]
    pub perceptual_weight: f64,
    /// LPIPS weights (safetensors, `scripts/fetch-weights.sh`); needed when perceptual_weight > 0.
    #[serde(default)]
    pub lpips_weights: Option<PathBuf>,
    /// First step at which the discriminator trains and the adversarial loss applies.
    #[serde(default)]
    pub disc_start: usize,
    /// The discriminator's loss.
    #[serde(default = "hinge")]
    pub disc_loss: AdvLoss,
    /// The generator's adversarial loss.
    #[serde(default = "non_saturate")]
    pub gen_adv_loss: AdvLoss,
    #[serde(default = "gen_w")]
    pub gen_loss_weight: f64,
    /// The reference's adaptive generator weight (VQGAN): when set, the adversarial loss is
    /// weighted by ‖∇_W nll‖ / (‖∇_W g‖ + 1e-4), clamped to [0, 1e4], times this value
    /// (disc_weight), W the decoder's last layer; gen_loss_weight is then unused.
    #[serde(default)]
    pub adaptive_disc_weight: Option<f64>,
    #[serde(default = "lecam")]
    pub lecam_weight: f64,
    #[serde(default = "cb")]
    pub codebook_weight: f64,
    #[serde(default = "commit")]
    pub commit_weight: f64,
    #[serde(default)]
    pub codebook_enlarge_ratio: f64,
    #[serde(default = "enlarge_steps")]
    pub codebook_enlarge_steps: usize,
    /// Alignment loss on the [CLS] head: label-smoothed CE with labels, or KL to teacher features.
    #[serde(default = "one_f")]
    pub cls_weight: f64,
    #[serde(default = "smoothing")]
    pub label_smoothing: f64,
    /// Teacher [CLS] features, safetensors `features` [N, classes] in data-set order: KL (T = 4).
    #[serde(default)]
    pub teacher_features: Option<PathBuf>,
    #[serde(default = "ndf")]
    pub disc_ndf: usize,
    #[serde(default = "three")]
    pub disc_layers: usize,
    /// Source-recovery BCE weight (when the learned recovery model is on).
    #[serde(default = "one_f")]
    pub source_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub out_dir: PathBuf,
    pub steps: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "ten")]
    pub log_every: usize,
    #[serde(default = "two_hundred")]
    pub sample_every: usize,
    #[serde(default = "two_hundred")]
    pub checkpoint_every: usize,
    /// Validation PSNR (EMA weights) every N steps; 0 = only at the end.
    #[serde(default)]
    pub val_every: usize,
    #[serde(default = "val_images")]
    pub val_images: usize,
    /// Stop (with a checkpoint) after this many minutes.
    #[serde(default)]
    pub max_minutes: Option<f64>,
}

fn yes() -> bool {
    true
}
fn lr() -> f64 {
    1e-4
}
fn betas() -> [f64; 2] {
    [0.5, 0.9]
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn no_schedule() -> Schedule {
    Schedule::None
}
fn ema() -> f64 {
    0.999
}
fn hinge() -> AdvLoss {
    AdvLoss::Hinge
}
fn non_saturate() -> AdvLoss {
    AdvLoss::NonSaturate
}
fn gen_w() -> f64 {
    0.1
}
fn lecam() -> f64 {
    0.01
}
fn cb() -> f64 {
    0.1
}
fn commit() -> f64 {
    0.25
}
fn enlarge_steps() -> usize {
    2000
}
fn smoothing() -> f64 {
    0.1
}
fn ndf() -> usize {
    64
}
fn three() -> usize {
    3
}
fn ten() -> usize {
    10
}
fn two_hundred() -> usize {
    200
}
fn val_images() -> usize {
    1000
}

impl TrainConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| crate::validate::toml_error(path, &text, &e))?;
        // Relative paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in
            [&mut cfg.data.path, &mut cfg.data.val_path, &mut cfg.loss.lpips_weights, &mut cfg.loss.teacher_features]
                .into_iter()
                .flatten()
        {
            if p.is_relative() && !p.exists() && base.join(&*p).exists() {
                *p = base.join(&*p);
            }
        }
        cfg.validate().with_context(|| format!("bad config {}", path.display()))?;
        Ok(cfg)
    }
}
