//! A trained generator: its GPT config, the kept count K each merge instruction stands for, and
//! its weights. The config is either the self-contained form the bundled model ships
//! (assets/demo/gpt.toml: `candidates`, `window`, `[gpt]`) or a `train-ar` config, whose
//! candidates come from the token set it was trained on.
use crate::ar::gpt::{Gpt, GptConfig};
use crate::io::tokens::TokenSet;
use crate::io::weights::Weights;
use crate::train::ar::ArConfig;
use crate::validate::toml_error;
use anyhow::{bail, Context, Result};
use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What sampling needs to know about a generator besides its weights.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    pub gpt: GptConfig,
    /// The kept count K of each merge instruction, in order (empty for plain AR).
    #[serde(default)]
    pub candidates: Vec<usize>,
    /// The MergeAR cache window the model was trained with.
    #[serde(default = "two")]
    pub window: usize,
}

fn two() -> usize {
    2
}

impl GeneratorConfig {
    /// Reads either config form (a `mode` key marks a train-ar config) and validates it.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read AR config {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?;
        let cfg = if table.contains_key("mode") {
            Self::from_train_ar(path)?
        } else {
            toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?
        };
        cfg.validate().with_context(|| format!("bad AR config {}", path.display()))?;
        Ok(cfg)
    }

    /// A train-ar config; a MergeAR one takes its candidates from its token set.
    fn from_train_ar(path: &Path) -> Result<Self> {
        let a = ArConfig::load(path)?;
        let candidates = if a.gpt.merge_tokens == 0 {
            Vec::new()
        } else {
            let set = TokenSet::load(&a.tokens).with_context(|| {
                format!("the MergeAR config {} takes its kept counts K from its token set", path.display())
            })?;
            set.candidates
        };
        Ok(Self { gpt: a.gpt, candidates, window: a.window })
    }

    /// The GPT config is sound and there is one kept count per merge instruction.
    pub fn validate(&self) -> Result<()> {
        self.gpt.validate()?;
        if self.candidates.len() != self.gpt.merge_tokens {
            bail!(
                "gpt.merge_tokens = {} needs as many kept-count candidates, got {:?}",
                self.gpt.merge_tokens,
                self.candidates
            );
        }
        Ok(())
    }

    /// The merge instruction for kept count `k`: its index among the candidates; `None` for a
    /// plain AR model.
    pub fn merge_index(&self, k: usize) -> Result<Option<usize>> {
        if self.gpt.merge_tokens == 0 {
            return Ok(None);
        }
        match self.candidates.iter().position(|&c| c == k) {
            Some(i) => Ok(Some(i)),
            None => bail!("K={k} is not among the model's kept-count candidates {:?}", self.candidates),
        }
    }

    /// "plain AR" or "MergeAR", for messages.
    pub fn kind(&self) -> &'static str {
        if self.gpt.merge_tokens == 0 {
            "plain AR"
        } else {
            "MergeAR"
        }
    }
}

/// A generator ready to sample.
pub struct Generator {
    pub cfg: GeneratorConfig,
    pub gpt: Gpt,
}

impl Generator {
    /// Loads the config at `config` and the weights at `weights`; an error names both files
    /// and the kind of model the config describes when the weights do not fit it.
    pub fn open(config: &Path, weights: &Path, device: &Device) -> Result<Self> {
        Self::with_config(GeneratorConfig::load(config)?, config, weights, device)
    }

    /// The weights at `weights` for `cfg`, already read from `config` (named in errors).
    pub fn with_config(cfg: GeneratorConfig, config: &Path, weights: &Path, device: &Device) -> Result<Self> {
        let w = Weights::open(weights, false, device)?;
        let misfit = || {
            let (kind, n) = (cfg.kind(), cfg.gpt.merge_tokens);
            let (w, c) = (weights.display(), config.display());
            format!("AR weights {w} do not fit the {kind} config {c} (gpt.merge_tokens = {n})")
        };
        let gpt = Gpt::load(w.root(), &cfg.gpt).with_context(misfit)?;
        w.finish(&[]).with_context(misfit)?;
        Ok(Self { cfg, gpt })
    }
}
