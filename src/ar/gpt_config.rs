//! The GPT's config (the reference's GPT constructor arguments), its range checks and its
//! memory estimate.
use crate::memory::{Estimate, Use, INFERENCE_FACTOR, TRAINING_FACTOR};
use crate::validate::{check_float, check_int, FloatRange};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GptConfig {
    /// Bits of the pre and post parts of a code (e.g. [4, 6] for 10-bit codes).
    pub factorized_bits: [usize; 2],
    /// Number of image tokens L (a square).
    pub block_size: usize,
    pub dim: usize,
    pub n_head: usize,
    pub spatial_n_layer: usize,
    #[serde(default = "two")]
    pub factorized_n_layer: usize,
    pub class_num: usize,
    /// Merge-instruction embeddings (one per kept-count candidate); 0 for plain AR.
    #[serde(default)]
    pub merge_tokens: usize,
    #[serde(default = "multiple_of")]
    pub multiple_of: usize,
    #[serde(default = "rope_base")]
    pub rope_base: f64,
    /// Label dropout for classifier-free guidance (training).
    #[serde(default = "token_drop")]
    pub class_dropout: f64,
}

fn two() -> usize {
    2
}
fn multiple_of() -> usize {
    256
}
fn rope_base() -> f64 {
    10000.0
}
fn token_drop() -> f64 {
    0.1
}

impl GptConfig {
    /// Tokens before the image tokens: [class] or [class][merge instruction].
    pub fn prefix(&self) -> usize {
        1 + (self.merge_tokens > 0) as usize
    }

    /// Every field in range: a square grid, whole heads of a multiple of 4 (2-D RoPE), code
    /// bits whose logits fit, and sizes far from overflow. Each refusal names the field.
    pub fn validate(&self) -> Result<()> {
        for (i, &b) in self.factorized_bits.iter().enumerate() {
            check_int(&format!("factorized_bits[{i}]"), b, 1, 20)?;
        }
        check_int("block_size", self.block_size, 1, 1 << 16)?;
        let g = (self.block_size as f64).sqrt() as usize;
        if g * g != self.block_size {
            bail!("block_size {} is not a square", self.block_size);
        }
        check_int("dim", self.dim, 4, 1 << 14)?;
        check_int("n_head", self.n_head, 1, self.dim)?;
        if !self.dim.is_multiple_of(self.n_head) || !(self.dim / self.n_head).is_multiple_of(4) {
            bail!("dim {} must split into {} heads of a multiple of 4 (2-D RoPE)", self.dim, self.n_head);
        }
        check_int("spatial_n_layer", self.spatial_n_layer, 1, 256)?;
        check_int("factorized_n_layer", self.factorized_n_layer, 1, 64)?;
        check_int("class_num", self.class_num, 1, 1 << 20)?;
        check_int("merge_tokens", self.merge_tokens, 0, self.block_size)?;
        check_int("multiple_of", self.multiple_of, 1, 1 << 14)?;
        check_float("rope_base", self.rope_base, FloatRange::closed(2.0, 1e12))?;
        check_float("class_dropout", self.class_dropout, FloatRange::below(0.0, 1.0))?;
        Ok(())
    }

    pub fn bits(&self) -> usize {
        self.factorized_bits[0] + self.factorized_bits[1]
    }
}

impl GptConfig {
    /// SwiGLU width: check_int(2·4d/3) rounded up to a multiple of `multiple_of`.
    pub fn hidden(&self) -> usize {
        (8 * self.dim / 3).div_ceil(self.multiple_of) * self.multiple_of
    }

    /// Memory to build the GPT and run (or train) `batch` sequences (see [`crate::memory`]):
    /// per layer attention 4d², SwiGLU 3·d·hidden; the factorized embeddings and heads; per
    /// layer activations of the T = prefix + L positions and the attention matrix; the logits.
    pub fn memory(&self, batch: usize, usage: Use) -> Estimate {
        let (d, h) = (self.dim as f64, self.hidden() as f64);
        let layers = (self.spatial_n_layer + self.factorized_n_layer) as f64;
        let codes = self.factorized_bits.iter().map(|&b| (1u64 << b) as f64).sum::<f64>();
        let params = layers * (4.0 * d * d + 3.0 * d * h)
            + 2.0 * codes * d
            + (self.class_num + self.merge_tokens + 1) as f64 * d;
        let t = (self.block_size + self.prefix()) as f64;
        let layer = t * (4.0 * d + 3.0 * h) + self.n_head as f64 * t * t;
        let logits = t * codes;
        let b = batch as f64;
        let activations = match usage {
            Use::Inference => layer.max(logits) * b * INFERENCE_FACTOR,
            Use::Training => (layers * layer + logits) * b * TRAINING_FACTOR,
        };
        Estimate::new(params, activations, batch, usage)
    }
}

#[cfg(test)]
mod tests {
    use crate::ar::gpt::Gpt;
    use crate::io::weights::Weights;
    use crate::memory::Use;
    use burn::module::Module;

    /// The estimate's parameter count is within 25 % of the built GPT's.
    #[test]
    fn parameter_estimate_matches_the_built_model() {
        let text = std::fs::read_to_string("configs/ar_fmnist_mergear.toml").unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let cfg: super::GptConfig = v["gpt"].clone().try_into().unwrap();
        let gpt = Gpt::load(Weights::random(0, &crate::device()).root(), &cfg).unwrap();
        let real = gpt.num_params() as f64;
        let est = cfg.memory(1, Use::Inference).parameters / 4.0;
        assert!((est / real - 1.0).abs() < 0.25, "estimate {est} vs {real} parameters");
    }
}
