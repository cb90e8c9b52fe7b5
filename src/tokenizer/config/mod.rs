//! Tokenizer configuration: the reference's `ddconfig` fields, as TOML, or read from the
//! official YAML configs (`model.init_args.{ddconfig, n_embed, embed_dim, k2lconfig}`).
use super::tome::CandDistribution;
use crate::io::preprocess::Preprocess;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

mod memory;
mod validate;
mod yaml;

pub use validate::MAX_BITS;

/// A field that the reference accepts as a flag or as a value (e.g. `isotropic: 768`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum FlagOr<T> {
    Flag(bool),
    Value(T),
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DdConfig {
    #[serde(default)]
    pub double_z: bool,
    pub z_channels: usize,
    pub resolution: usize,
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_ch: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub num_att_blocks: usize,
    #[serde(default = "eight")]
    pub num_heads: usize,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "one")]
    pub num_res_extra: usize,
    #[serde(default)]
    pub drop_path: f64,
    #[serde(default)]
    pub merge_num: Option<i64>,
    #[serde(default)]
    pub merge_ratio: Option<i64>,
    #[serde(default)]
    pub cand_distribution: Option<CandDistribution>,
    #[serde(default)]
    pub dist_head: Option<FlagOr<String>>,
    #[serde(default)]
    pub num_classes: Option<usize>,
    #[serde(default)]
    pub num_rep_blocks: usize,
    #[serde(default)]
    pub isotropic: Option<FlagOr<usize>>,
    /// A timm model name used to initialise the reference's encoder ViT; not used here
    /// (checkpoints carry the weights).
    #[serde(default)]
    pub model_path: Option<String>,
    #[serde(default)]
    pub use_flash_attn: bool,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn eight() -> usize {
    8
}
fn one_f() -> f64 {
    1.0
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct K2lConfig {
    #[serde(default)]
    pub learn_source: bool,
    #[serde(default)]
    pub rec_embed_dim: Option<usize>,
    #[serde(default)]
    pub num_layers: Option<usize>,
    #[serde(default)]
    pub num_heads: Option<usize>,
    #[serde(default)]
    pub keep_num: Option<usize>,
    #[serde(default)]
    pub full_num: Option<usize>,
    #[serde(default)]
    pub embed_dim: Option<usize>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerConfig {
    pub ddconfig: DdConfig,
    #[serde(default)]
    pub k2lconfig: K2lConfig,
    pub n_embed: u64,
    pub embed_dim: usize,
    #[serde(default)]
    pub token_factorization: bool,
    #[serde(default)]
    pub factorized_bits: Option<[usize; 2]>,
    /// Weight of the per-sample entropy in the LFQ entropy loss (minimized).
    #[serde(default = "one_f")]
    pub sample_minimization_weight: f64,
    /// Weight of the codebook (batch) entropy in the LFQ entropy loss (maximized).
    #[serde(default = "one_f")]
    pub batch_maximization_weight: f64,
    /// How inputs of another size than the resolution become model inputs (default `pad`).
    #[serde(default)]
    pub preprocess: Preprocess,
}

/// A training config (`train-tokenizer --config`): its `[tokenizer]` table is the model.
#[derive(Deserialize)]
struct InTraining {
    tokenizer: TokenizerConfig,
    #[serde(flatten)]
    _rest: std::collections::BTreeMap<String, toml::Value>,
}

/// Whether a TOML text is a training config (a `[tokenizer]` table, no top-level `ddconfig`).
fn is_training_config(text: &str) -> bool {
    text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("tokenizer") && !t.contains_key("ddconfig"))
}

impl TokenizerConfig {
    /// Reads a `.toml` config (a tokenizer config, or a training config's `[tokenizer]` table)
    /// or an official `.yaml` config.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let cfg: Self = if ext == "yaml" || ext == "yml" {
            Self::from_yaml(&text).with_context(|| format!("bad config {}", path.display()))?
        } else if is_training_config(&text) {
            let t: InTraining = toml::from_str(&text).map_err(|e| crate::validate::toml_error(path, &text, &e))?;
            t.tokenizer
        } else {
            toml::from_str(&text).map_err(|e| crate::validate::toml_error(path, &text, &e))?
        };
        cfg.validate().with_context(|| format!("bad config {}", path.display()))?;
        Ok(cfg)
    }

    /// Encoder width: ch·ch_mult[-1], or the isotropic width when given as a number > 1.
    pub fn encoder_dim(&self) -> usize {
        let d = &self.ddconfig;
        match d.isotropic {
            Some(FlagOr::Value(v)) if v > 1 => v,
            _ => d.ch * d.ch_mult.last().unwrap(),
        }
    }

    pub fn isotropic(&self) -> bool {
        matches!(self.ddconfig.isotropic, Some(FlagOr::Flag(true)) | Some(FlagOr::Value(1..)))
    }

    pub fn heads_for(&self, dim: usize) -> usize {
        let d = &self.ddconfig;
        match d.head_dim {
            Some(hd) => (dim / hd).max(d.num_heads),
            None => d.num_heads,
        }
    }

    /// Token grid side before merging.
    pub fn embed_res(&self) -> usize {
        self.ddconfig.resolution >> (self.ddconfig.ch_mult.len() - 1)
    }
}
