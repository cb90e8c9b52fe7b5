//! MergeVQEncoder: a CNN (or a patchify conv, "isotropic") down to L = (res/2^n)² tokens, a
//! [CLS] token, ToMe ViT blocks that keep K tokens, then GroupNorm → SiLU → 1×1 conv to z.
//! The [CLS] token feeds a representation head for alignment.
use crate::io::scope::Scope;
use crate::nn::{gelu, map_to_tokens, Conv2d, ConvSpec, GroupNorm, LayerNorm, Linear};
use crate::tokenizer::config::{FlagOr, TokenizerConfig};
use crate::tokenizer::resblock::ResBlock;
use crate::tokenizer::tome::{KeepPlan, Tracking};
use crate::tokenizer::vit::TomeTransformer;
use anyhow::{bail, Result};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Level {
    pub block: Vec<ResBlock>,
    pub downsample: Option<Conv2d>,
}

/// The stem: conv_in + CNN levels, or patchify conv + GroupNorm(C, C).
#[derive(Module, Debug)]
pub enum Stem {
    Cnn(CnnStem),
    Patchify(PatchStem),
}

#[derive(Module, Debug)]
pub struct CnnStem {
    pub conv_in: Conv2d,
    pub down: Vec<Level>,
}

#[derive(Module, Debug)]
pub struct PatchStem {
    pub conv: Conv2d,
    pub norm: GroupNorm,
}

/// The [CLS] head: `layer3` (3 Linear with GELU) or Linear → GELU → LayerNorm → Linear.
#[derive(Module, Debug)]
pub struct DistHead {
    pub fc: Vec<Linear>,
    pub norm: Option<LayerNorm>,
}

impl DistHead {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = gelu(self.fc[0].forward(x));
        match &self.norm {
            Some(norm) => self.fc[1].forward(norm.forward(x)),
            None => {
                x = gelu(self.fc[1].forward(x));
                self.fc[2].forward(x)
            }
        }
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub stem: Stem,
    pub attn: TomeTransformer,
    pub norm_out: GroupNorm,
    pub conv_out: Conv2d,
    pub rep_attn: Option<TomeTransformer>,
    pub dist_head: Option<DistHead>,
}

/// Encoder output: z [B, d, √K, √K] (tokens in merged order, not spatial) and the groups.
pub struct Encoded {
    pub z: Tensor<4>,
    pub track: Tracking,
}

impl Encoder {
    pub fn load(w: Scope, cfg: &TokenizerConfig) -> Result<Self> {
        let d = &cfg.ddconfig;
        let dim = cfg.encoder_dim();
        let heads = cfg.heads_for(dim);
        if !dim.is_multiple_of(heads) {
            bail!("encoder width {dim} is not divisible by {heads} heads");
        }
        let stem = if cfg.isotropic() {
            let patch = d.resolution / cfg.embed_res();
            let s = ConvSpec { stride: patch, padding: 0, ..ConvSpec::same(d.in_channels, dim, patch, true) };
            Stem::Patchify(PatchStem {
                conv: Conv2d::load(w.pp("conv_in.0"), s, None)?,
                norm: GroupNorm::load(w.pp("conv_in.1"), dim, dim, 1e-6)?,
            })
        } else {
            let conv_in = Conv2d::load(w.pp("conv_in"), ConvSpec::same(d.in_channels, d.ch, 3, false), None)?;
            let mut down = Vec::new();
            let mut c_in = d.ch;
            for (i, m) in d.ch_mult.iter().enumerate() {
                let c_out = d.ch * m;
                let mut block = Vec::new();
                for j in 0..d.num_res_blocks {
                    block.push(ResBlock::load(w.pp(format!("down.{i}.block.{j}")), c_in, c_out)?);
                    c_in = c_out;
                }
                let downsample = if i + 1 < d.ch_mult.len() {
                    let s = ConvSpec { stride: 2, ..ConvSpec::same(c_out, c_out, 3, true) };
                    Some(Conv2d::load(w.pp(format!("down.{i}.downsample")), s, None)?)
                } else {
                    None
                };
                down.push(Level { block, downsample });
            }
            Stem::Cnn(CnnStem { conv_in, down })
        };
        let rep_attn = if d.num_rep_blocks > 0 && d.dist_head.is_some() {
            Some(TomeTransformer::load_plain(w.pp("rep_attn"), dim, d.num_rep_blocks, heads)?)
        } else {
            None
        };
        let dist_head = match &d.dist_head {
            None | Some(FlagOr::Flag(false)) => None,
            Some(kind) => {
                let hidden = 4 * dim;
                let classes = d.num_classes.unwrap_or(dim);
                let h = w.pp("dist_head");
                Some(if kind == &FlagOr::Value("layer3".to_string()) {
                    DistHead {
                        fc: vec![
                            Linear::torch(h.pp("0"), dim, hidden, true)?,
                            Linear::torch(h.pp("2"), hidden, hidden, true)?,
                            Linear::torch(h.pp("4"), hidden, classes, true)?,
                        ],
                        norm: None,
                    }
                } else {
                    DistHead {
                        fc: vec![
                            Linear::torch(h.pp("0"), dim, hidden, true)?,
                            Linear::torch(h.pp("3"), hidden, classes, true)?,
                        ],
                        norm: Some(LayerNorm::load(h.pp("2"), hidden)?),
                    }
                })
            }
        };
        Ok(Self {
            stem,
            attn: TomeTransformer::load(w.pp("attn"), dim, d.num_att_blocks, heads)?,
            norm_out: GroupNorm::load(w.pp("norm_out"), 32, dim, 1e-6)?,
            conv_out: Conv2d::load(w.pp("conv_out"), ConvSpec::same(dim, d.z_channels, 1, true), None)?,
            rep_attn,
            dist_head,
        })
    }

    /// Image [B, 3, H, W] → the L tokens [B, L, C] before the transformer.
    fn tokens(&self, x: Tensor<4>) -> Tensor<3> {
        let x = match &self.stem {
            Stem::Patchify(s) => s.norm.forward(s.conv.forward(x)),
            Stem::Cnn(s) => {
                let mut x = s.conv_in.forward(x);
                for level in &s.down {
                    for blk in &level.block {
                        x = blk.forward(x);
                    }
                    if let Some(ds) = &level.downsample {
                        x = ds.forward(x);
                    }
                }
                x
            }
        };
        map_to_tokens(x)
    }

    /// Encodes with the schedule of `plan`: z [B, d, √K, √K] and the token groups.
    pub fn forward(&self, x: Tensor<4>, plan: &KeepPlan) -> Result<Encoded> {
        let (h, track) = self.attn.forward(self.tokens(x), &plan.per_layer()?);
        let [b, n, c] = h.dims();
        let k = n - 1;
        let s = (k as f64).sqrt() as usize;
        if s * s != k {
            bail!("the merge schedule kept {k} tokens, which is not a square grid");
        }
        let map = h.narrow(1, 1, k).swap_dims(1, 2).reshape([b, c, s, s]);
        let z = self.conv_out.forward(self.norm_out.forward_silu(map));
        Ok(Encoded { z, track })
    }

    /// Frozen features for linear probing: the [CLS] token after the ToMe transformer, and the
    /// mean of the K merged tokens, each [B, C].
    pub fn probe_features(&self, x: Tensor<4>, plan: &KeepPlan) -> Result<(Tensor<2>, Tensor<2>)> {
        let (h, _) = self.attn.forward(self.tokens(x), &plan.per_layer()?);
        let [b, n, c] = h.dims();
        Ok((h.clone().narrow(1, 0, 1).reshape([b, c]), h.narrow(1, 1, n - 1).mean_dim(1).reshape([b, c])))
    }

    /// The representation head on the [CLS] token (after the same merging transformer).
    pub fn head(&self, x: Tensor<4>, plan: &KeepPlan) -> Result<Tensor<2>> {
        let Some(head) = &self.dist_head else { bail!("this encoder has no dist_head") };
        let (mut h, _) = self.attn.forward(self.tokens(x), &plan.per_layer()?);
        if let Some(rep) = &self.rep_attn {
            h = rep.forward_plain(h);
        }
        let [b, _, c] = h.dims();
        Ok(head.forward(h.narrow(1, 0, 1).reshape([b, c])))
    }
}
