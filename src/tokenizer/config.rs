//! Tokenizer configuration: the reference's `ddconfig` fields, as TOML, or read from the
//! official YAML configs (`model.init_args.{ddconfig, n_embed, embed_dim, k2lconfig}`).
use crate::io::preprocess::Preprocess;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    pub cand_distribution: Option<String>,
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
    /// How inputs of another size than the resolution become model inputs (default `pad`).
    #[serde(default)]
    pub preprocess: Preprocess,
}

impl TokenizerConfig {
    /// Reads a `.toml` config or an official `.yaml` config.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let cfg: Self = if ext == "yaml" || ext == "yml" {
            Self::from_yaml(&text).with_context(|| format!("bad config {}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| anyhow!("bad config {}: {}", path.display(), e.message()))?
        };
        cfg.validate().with_context(|| format!("bad config {}", path.display()))?;
        Ok(cfg)
    }

    fn from_yaml(text: &str) -> Result<Self> {
        let v: serde_yaml::Value = serde_yaml::from_str(text)?;
        let args = v
            .get("model")
            .and_then(|m| m.get("init_args"))
            .ok_or_else(|| anyhow!("no model.init_args section (is this a MergeVQ stage-1 config?)"))?;
        let field = |k: &str| args.get(k).cloned().ok_or_else(|| anyhow!("model.init_args has no `{k}`"));
        let ddconfig: DdConfig =
            serde_yaml::from_value(field("ddconfig")?).map_err(|e| anyhow!("model.init_args.ddconfig: {e}"))?;
        let k2lconfig: K2lConfig = match args.get("k2lconfig") {
            Some(serde_yaml::Value::Null) | None => K2lConfig::default(),
            Some(k) => serde_yaml::from_value(k.clone()).map_err(|e| anyhow!("model.init_args.k2lconfig: {e}"))?,
        };
        let n_embed = serde_yaml::from_value(field("n_embed")?).map_err(|e| anyhow!("n_embed: {e}"))?;
        let embed_dim = serde_yaml::from_value(field("embed_dim")?).map_err(|e| anyhow!("embed_dim: {e}"))?;
        let token_factorization = args.get("token_factorization").and_then(|v| v.as_bool()).unwrap_or(false);
        let preprocess = Preprocess::default();
        Ok(Self { ddconfig, k2lconfig, n_embed, embed_dim, token_factorization, factorized_bits: None, preprocess })
    }

    pub fn validate(&self) -> Result<()> {
        let d = &self.ddconfig;
        if d.ch_mult.is_empty() {
            bail!("ch_mult is empty");
        }
        if self.n_embed != 1u64 << self.embed_dim {
            bail!("n_embed {} must be 2^embed_dim (embed_dim {})", self.n_embed, self.embed_dim);
        }
        if d.z_channels != self.embed_dim {
            bail!("z_channels {} must equal embed_dim {} (LFQ quantizes every channel)", d.z_channels, self.embed_dim);
        }
        let down = 1usize << (d.ch_mult.len() - 1);
        if d.resolution % down != 0 || d.resolution == 0 {
            bail!("resolution {} is not divisible by the downsampling factor {down}", d.resolution);
        }
        for m in &d.ch_mult {
            if (d.ch * m) % 32 != 0 {
                bail!("ch*ch_mult = {} is not divisible by 32 (GroupNorm(32))", d.ch * m);
            }
        }
        if d.merge_num.is_none() && d.merge_ratio.is_none() {
            bail!("set merge_num (tokens merged away; 0 for plain LFQ) or merge_ratio");
        }
        if let Some(n) = d.merge_num {
            let l = (d.resolution / down).pow(2) as i64;
            if n < 0 || n >= l {
                bail!("merge_num {n} must be in 0..{l} (the encoder makes {l} tokens)");
            }
            let k = l - n;
            let s = (k as f64).sqrt() as i64;
            if s * s != k {
                bail!("merge_num {n} keeps K={k} tokens, which is not a perfect square");
            }
        }
        if self.token_factorization {
            let [a, b] = self.factorized_bits.unwrap_or([self.embed_dim / 2, self.embed_dim - self.embed_dim / 2]);
            if a + b != self.embed_dim {
                bail!("factorized_bits {a}+{b} must add up to embed_dim {}", self.embed_dim);
            }
        }
        Ok(())
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
