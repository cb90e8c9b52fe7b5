//! Range checks of every tokenizer config field, run by `TokenizerConfig::load` (and by
//! `Tokenizer::load`): a config that would make no model, or one the program cannot hold, is
//! refused here with the field's name and its allowed range.
use super::{DdConfig, FlagOr, K2lConfig, TokenizerConfig};
use crate::tokenizer::tome::KeepPlan;
use crate::validate::{check_float, check_int, FloatRange};
use anyhow::{bail, Result};

/// Bits per code: LFQ indices are i64 and the codebook entropy forms 2^(d/2) columns per token.
pub const MAX_BITS: usize = 32;
/// Upper bounds that keep every size product far from overflow (a 256² ViT-L is well inside).
const MAX_WIDTH: usize = 16384;
const MAX_RESOLUTION: usize = 8192;
const MAX_DEPTH: usize = 256;

impl TokenizerConfig {
    /// Refuses a config that makes no model, naming the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        check_int("embed_dim", self.embed_dim, 1, MAX_BITS)?;
        if self.n_embed != 1u64 << self.embed_dim {
            bail!("n_embed {} must be 2^embed_dim (embed_dim {})", self.n_embed, self.embed_dim);
        }
        check_float("sample_minimization_weight", self.sample_minimization_weight, FloatRange::closed(0.0, 1e6))?;
        check_float("batch_maximization_weight", self.batch_maximization_weight, FloatRange::closed(0.0, 1e6))?;
        if let Some([a, b]) = self.factorized_bits {
            check_int("factorized_bits[0]", a, 1, MAX_BITS)?;
            check_int("factorized_bits[1]", b, 1, MAX_BITS)?;
            if a + b != self.embed_dim {
                bail!("factorized_bits {a}+{b} must add up to embed_dim {}", self.embed_dim);
            }
        }
        self.ddconfig.validate_sizes()?;
        if self.ddconfig.z_channels != self.embed_dim {
            bail!(
                "ddconfig.z_channels {} must equal embed_dim {} (LFQ quantizes every channel)",
                self.ddconfig.z_channels,
                self.embed_dim
            );
        }
        self.validate_widths()?;
        self.validate_merge()?;
        self.k2lconfig.validate(self.embed_dim, self.embed_res().pow(2))
    }

    /// Encoder and decoder widths split into whole heads; the isotropic width fits GroupNorm(32).
    fn validate_widths(&self) -> Result<()> {
        let d = &self.ddconfig;
        if let Some(FlagOr::Value(v)) = d.isotropic {
            if v > 1 && (v > MAX_WIDTH || !v.is_multiple_of(32)) {
                bail!("ddconfig.isotropic must be a width from 32 to {MAX_WIDTH}, a multiple of 32, got {v}");
            }
        }
        let top = d.ch * d.ch_mult[d.ch_mult.len() - 1];
        for (part, width) in [("encoder", self.encoder_dim()), ("decoder", top)] {
            if let Some(hd) = d.head_dim {
                check_int("ddconfig.head_dim", hd, 1, width)?;
            }
            check_int("ddconfig.num_heads", d.num_heads, 1, width)?;
            let heads = self.heads_for(width);
            if !width.is_multiple_of(heads) {
                bail!("ddconfig.num_heads: the {part} width {width} is not divisible by {heads} heads");
            }
        }
        Ok(())
    }

    /// merge_num / merge_ratio make a schedule that keeps a square number of tokens.
    fn validate_merge(&self) -> Result<()> {
        let d = &self.ddconfig;
        let l = self.embed_res().pow(2) as i64;
        if d.merge_num.is_none() && d.merge_ratio.is_none() {
            bail!("ddconfig.merge_num is missing: set merge_num (tokens merged away; 0 for plain LFQ) or merge_ratio");
        }
        if let Some(n) = d.merge_num {
            if n < 0 || n >= l {
                bail!("ddconfig.merge_num {n} must be an integer from 0 to {} (the encoder makes {l} tokens)", l - 1);
            }
            let k = l - n;
            let s = (k as f64).sqrt() as i64;
            if s * s != k {
                bail!("ddconfig.merge_num = {n} keeps K={k} tokens, which is not a perfect square");
            }
        }
        if let Some(r) = d.merge_ratio {
            if r < 0 || r >= l {
                bail!("ddconfig.merge_ratio must be an integer from 0 to {} (tokens merged per layer), got {r}", l - 1);
            }
        }
        if d.merge_num.is_some_and(|n| n > 0) && d.num_att_blocks == 0 {
            bail!("ddconfig.num_att_blocks must be an integer from 1 to {MAX_DEPTH} to merge tokens (merge_num > 0), got 0");
        }
        let plan = KeepPlan::new(self.embed_res(), d.num_att_blocks, d.merge_num, d.merge_ratio, d.cand_distribution)
            .map_err(|e| anyhow::anyhow!("ddconfig.merge_num/merge_ratio: {e}"))?;
        if let Some(c) = &plan.candidates {
            if let Some(k) = c.remain.iter().find(|&&k| k < 1 || k > l) {
                bail!(
                    "ddconfig.cand_distribution must make kept counts K from 1 to {l} (the {s}×{s} grid), \
                     got a candidate K={k}: use fewer candidates",
                    s = self.embed_res()
                );
            }
        }
        let kept = plan.kept().map_err(|e| anyhow::anyhow!("ddconfig.merge_num/merge_ratio: {e}"))?;
        let s = (kept as f64).sqrt() as i64;
        if kept < 1 || s * s != kept {
            bail!("ddconfig.merge_ratio keeps K={kept} tokens, which is not a positive perfect square");
        }
        Ok(())
    }
}

impl DdConfig {
    /// Every size field in its range; ch·ch_mult fits GroupNorm(32); the resolution divides.
    fn validate_sizes(&self) -> Result<()> {
        rgb("in_channels", self.in_channels)?;
        rgb("out_ch", self.out_ch)?;
        check_int("ddconfig.z_channels", self.z_channels, 1, MAX_BITS)?;
        check_int("ddconfig.ch", self.ch, 1, MAX_WIDTH)?;
        check_int("ddconfig.ch_mult length", self.ch_mult.len(), 1, 8)?;
        for (i, &m) in self.ch_mult.iter().enumerate() {
            check_int(&format!("ddconfig.ch_mult[{i}]"), m, 1, 64)?;
            let c = self.ch * m;
            if c > MAX_WIDTH || !c.is_multiple_of(32) {
                bail!("ddconfig.ch*ch_mult[{i}] must be a multiple of 32 (GroupNorm(32)) up to {MAX_WIDTH}, got {c}");
            }
        }
        check_int("ddconfig.resolution", self.resolution, 1, MAX_RESOLUTION)?;
        let down = 1usize << (self.ch_mult.len() - 1);
        if !self.resolution.is_multiple_of(down) {
            bail!(
                "ddconfig.resolution {} is not divisible by the downsampling factor {down} (2^(len(ch_mult)-1))",
                self.resolution
            );
        }
        check_int("ddconfig.num_res_blocks", self.num_res_blocks, 1, 64)?;
        check_int("ddconfig.num_res_extra", self.num_res_extra, 0, 64)?;
        check_int("ddconfig.num_att_blocks", self.num_att_blocks, 0, MAX_DEPTH)?;
        check_int("ddconfig.num_rep_blocks", self.num_rep_blocks, 0, MAX_DEPTH)?;
        check_float("ddconfig.drop_path", self.drop_path, FloatRange::closed(0.0, 1.0))?;
        if let Some(n) = self.num_classes {
            check_int("ddconfig.num_classes", n, 1, 1 << 20)?;
        }
        self.validate_dist_head()
    }

    /// `dist_head`: true/false, "layer3" (three linear layers) or "layer2" (two, with a norm).
    fn validate_dist_head(&self) -> Result<()> {
        match &self.dist_head {
            Some(FlagOr::Value(s)) if s != "layer3" && s != "layer2" => {
                bail!("ddconfig.dist_head must be true, false, \"layer3\" or \"layer2\", got {s:?}")
            }
            _ => Ok(()),
        }
    }
}

/// The image pipeline (loading, LPIPS, metrics) is RGB.
fn rgb(field: &str, v: usize) -> Result<()> {
    if v != 3 {
        bail!("ddconfig.{field} must be 3 (only RGB images are supported), got {v}");
    }
    Ok(())
}

impl K2lConfig {
    /// The source-recovery sizes; full_num and embed_dim, when given, must match the tokenizer.
    fn validate(&self, embed_dim: usize, full: usize) -> Result<()> {
        let heads = self.num_heads.unwrap_or(8);
        let width = self.rec_embed_dim.unwrap_or(384);
        check_int("k2lconfig.num_heads", heads, 1, 256)?;
        check_int("k2lconfig.rec_embed_dim", width, 1, MAX_WIDTH)?;
        if !width.is_multiple_of(heads) {
            bail!("k2lconfig.rec_embed_dim {width} is not divisible by k2lconfig.num_heads {heads}");
        }
        check_int("k2lconfig.num_layers", self.num_layers.unwrap_or(2), 1, MAX_DEPTH)?;
        if let Some(f) = self.full_num.filter(|&f| f != full) {
            bail!("k2lconfig.full_num = {f} must equal the encoder's token count L = {full}");
        }
        if let Some(e) = self.embed_dim.filter(|&e| e != embed_dim) {
            bail!("k2lconfig.embed_dim = {e} must equal embed_dim = {embed_dim}");
        }
        if let Some(k) = self.keep_num {
            check_int("k2lconfig.keep_num", k, 1, full)?;
        }
        Ok(())
    }
}
