//! MergeVQ tokenizer: image → encoder (ToMe keeps K tokens) → LFQ codes + source groups, and
//! codes + groups → token recovery → decoder → image (MergeVQModel.encode / decode).
pub mod config;
pub mod decoder;
pub mod encoder;
pub mod lfq;
pub mod recovery;
pub mod resblock;
pub mod tome;
pub mod vit;

use crate::io::output::Outputs;
use crate::io::safetensors::{write_safetensors, WEIGHTS};
use crate::io::weights::{export, Weights};
use crate::nn::{map_to_tokens, tokens_to_map};
use crate::tokenizer::config::TokenizerConfig;
use crate::tokenizer::decoder::Decoder;
use crate::tokenizer::encoder::Encoder;
use crate::tokenizer::lfq::Lfq;
use crate::tokenizer::recovery::{token_unmerge, SourceRecovery};
use crate::tokenizer::tome::KeepPlan;
use anyhow::{bail, Context, Result};
use burn::module::ParamId;
use burn::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Checkpoint entries that are not part of the tokenizer (loss networks, teacher, EMA copies).
const NOT_TOKENIZER: &[&str] = &["loss.", "dist_model.", "quantize.", "model_ema.", "inception_model.", "lpips_"];

#[derive(Module, Debug)]
pub struct Tokenizer {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub recovery: Option<SourceRecovery>,
    #[module(skip)]
    pub cfg: TokenizerConfig,
    /// The config's merge schedule (its K); `keep` gives the schedule for another K.
    #[module(skip)]
    pub plan: KeepPlan,
    /// State-dict name of every parameter, for saving.
    #[module(skip)]
    pub names: HashMap<ParamId, String>,
}

/// What `encode` returns for a batch.
pub struct Tokens {
    /// Encoder output before quantization, [B, d, √K, √K].
    pub h: Tensor<4>,
    /// Straight-through ±1 codes, [B, d, √K, √K] (merged order).
    pub quantized: Tensor<4>,
    /// LFQ indices in (b, k) order, B·K values.
    pub indices: Vec<i64>,
    /// For every image and each of the L grid positions, the kept token (0..K) that absorbed it.
    pub group: Vec<Vec<usize>>,
    pub k: usize,
}

impl Tokenizer {
    /// Builds the model from weights with the reference's state-dict names
    /// (`encoder.*`, `decoder.*`, `recovery.*`).
    pub fn load(w: &Weights, cfg: &TokenizerConfig) -> Result<Self> {
        cfg.validate()?;
        let d = &cfg.ddconfig;
        let plan = KeepPlan::new(cfg.embed_res(), d.num_att_blocks, d.merge_num, d.merge_ratio, d.cand_distribution)?;
        let k = &cfg.k2lconfig;
        let recovery = if k.learn_source {
            let full = cfg.embed_res().pow(2);
            let rec_dim = k.rec_embed_dim.unwrap_or(384);
            Some(SourceRecovery::load(
                w.root().pp("recovery"),
                cfg.embed_dim,
                full,
                rec_dim,
                k.num_layers.unwrap_or(2),
                k.num_heads.unwrap_or(8),
            )?)
        } else {
            None
        };
        let encoder = Encoder::load(w.root().pp("encoder"), cfg)?;
        let decoder = Decoder::load(w.root().pp("decoder"), cfg)?;
        w.finish(NOT_TOKENIZER)?;
        Ok(Self { encoder, decoder, recovery, cfg: cfg.clone(), plan, names: w.names() })
    }

    /// Loads weights from a safetensors file or an official Lightning checkpoint
    /// (`ema` takes the `model_ema.*` copies the published metrics use).
    pub fn open(cfg: &TokenizerConfig, weights: &Path, ema: bool, device: &Device) -> Result<Self> {
        let w = Weights::open(weights, ema, device)?;
        Self::load(&w, cfg).with_context(|| format!("weights {} do not fit the config", weights.display()))
    }

    /// Random initial weights (PyTorch's default inits, timm's for the ViT parts).
    pub fn init(cfg: &TokenizerConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::load(&Weights::random(seed, device), cfg)
    }

    /// Writes the weights under the reference's state-dict names, through `out`.
    pub fn save(&self, path: &Path, out: &Outputs) -> Result<()> {
        write_safetensors(path, &export(self, &self.names), WEIGHTS, out)
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.encoder.conv_out.weight.val().device()
    }

    pub fn lfq(&self) -> Lfq {
        let c = &self.cfg;
        Lfq { entropy_weights: [c.sample_minimization_weight, c.batch_maximization_weight], ..Lfq::new(c.embed_dim) }
    }

    /// L, the number of tokens before merging.
    pub fn full_len(&self) -> usize {
        self.cfg.embed_res().pow(2)
    }

    /// The merge schedule that keeps `keep` tokens (K), for `encode`; an unreachable K is refused
    /// with the reachable values. `self.plan` is the config's default schedule.
    pub fn keep(&self, keep: usize) -> Result<KeepPlan> {
        self.plan.with_keep(keep)
    }

    /// Encodes images [B, C, H, W] in [-1, 1], merging down to the K tokens of `plan`.
    pub fn encode(&self, image: Tensor<4>, plan: &KeepPlan) -> Result<Tokens> {
        let [_, c, h, w] = image.dims();
        let r = self.cfg.ddconfig.resolution;
        if c != self.cfg.ddconfig.in_channels || h != r || w != r {
            bail!("the tokenizer takes {}×{r}×{r} images, got {c}×{h}×{w}", self.cfg.ddconfig.in_channels);
        }
        let enc = self.encoder.forward(image, plan)?;
        let q = self.lfq().quantize(enc.z.clone());
        let k = enc.z.dims()[2] * enc.z.dims()[3];
        // The final output: the only reads from the device in an encode.
        let indices = crate::io::readback::ints(q.indices);
        Ok(Tokens { h: enc.z, quantized: q.quantized, indices, group: enc.track.image_groups(true), k })
    }

    /// The same model unmerging with the encoder's source map instead of its learned source
    /// recovery (the map is then side information the decoder receives).
    pub fn without_recovery(mut self) -> Self {
        self.recovery = None;
        self
    }

    /// Recovers the full token grid from the K quantized tokens and decodes it.
    pub fn decode(&self, quantized: Tensor<4>, group: &[Vec<usize>]) -> Tensor<4> {
        self.decoder.forward(self.unmerge(quantized, group))
    }

    /// [B, d, √K, √K] → [B, d, √L, √L] by the groups (or the learned recovery model).
    pub fn unmerge(&self, quantized: Tensor<4>, group: &[Vec<usize>]) -> Tensor<4> {
        self.recover(quantized, group).0
    }

    /// [`Self::unmerge`], and with the learned recovery the kept token it gave each grid
    /// position (None when the encoder's `group` placed them).
    pub fn recover(&self, quantized: Tensor<4>, group: &[Vec<usize>]) -> (Tensor<4>, Option<Vec<Vec<usize>>>) {
        let tokens = map_to_tokens(quantized);
        let (full, chosen) = match &self.recovery {
            Some(rec) => {
                let r = rec.forward(tokens);
                (r.full, Some(r.group))
            }
            None => (token_unmerge(tokens, group), None),
        };
        (tokens_to_map(full), chosen)
    }

    /// Decodes full rasters of LFQ codes, L per image in row-major grid order (what the AR model
    /// generates: every position carries its kept token's code, so nothing is unmerged):
    /// B·L indices → images [B, 3, H, W].
    pub fn decode_codes(&self, codes: &[i64]) -> Result<Tensor<4>> {
        let (l, side) = (self.full_len(), self.cfg.embed_res());
        if codes.is_empty() || !codes.len().is_multiple_of(l) {
            bail!("{} codes are not whole images of L={l} tokens", codes.len());
        }
        let q = Lfq::codes(codes, self.cfg.embed_dim, codes.len() / l, side, side, &self.device());
        Ok(self.decoder.forward(q))
    }

    /// Decodes LFQ indices (B·K, row-major) with their groups.
    pub fn decode_indices(&self, indices: &[i64], group: &[Vec<usize>], device: &Device) -> Result<Tensor<4>> {
        let b = group.len();
        if b == 0 || !indices.len().is_multiple_of(b) {
            bail!("{} indices do not split into {b} images", indices.len());
        }
        let k = indices.len() / b;
        let s = (k as f64).sqrt() as usize;
        if s * s != k {
            bail!("K={k} tokens per image is not a square");
        }
        let limit = 1i64 << self.cfg.embed_dim;
        if let Some(bad) = indices.iter().find(|&&i| i < 0 || i >= limit) {
            bail!("token index {bad} is outside the codebook (0..{limit})");
        }
        if let Some(bad) = group.iter().flatten().find(|&&g| g >= k) {
            bail!("group map refers to token {bad}, but there are only K={k}");
        }
        let codes = Lfq::codes(indices, self.cfg.embed_dim, b, s, s, device);
        Ok(self.decode(codes, group))
    }
}
