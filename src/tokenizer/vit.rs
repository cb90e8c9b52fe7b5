//! timm-style ViT blocks (pre-norm, LayerScale), in the two flavours MergeVQ uses: the encoder's
//! with ToMe between attention and MLP, and the decoder's with a depth-wise-conv positional
//! embedding and MixFFN.
use crate::io::{scope::Scope, weights::Init};
use crate::nn::{attention, gelu, map_to_tokens, tokens_to_map, Conv2d, ConvSpec, LayerNorm, Linear};
use crate::tokenizer::tome::{bipartite_soft_matching, Tracking};
use anyhow::Result;
use burn::module::Param;
use burn::prelude::*;

/// Multi-head self-attention; with token sizes, proportional attention (logits + log size).
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    #[module(skip)]
    heads: usize,
}

impl Attention {
    /// Returns the output and the ToMe metric: keys averaged over heads [B, N, C/heads].
    pub fn forward(&self, x: Tensor<3>, size: Option<Tensor<3>>) -> (Tensor<3>, Tensor<3>) {
        let [b, n, c] = x.dims();
        let hd = c / self.heads;
        let qkv = self.qkv.forward(x).reshape([b, n, 3, self.heads, hd]).permute([2, 0, 3, 1, 4]);
        let q = qkv.clone().narrow(0, 0, 1).reshape([b, self.heads, n, hd]);
        let k = qkv.clone().narrow(0, 1, 1).reshape([b, self.heads, n, hd]);
        let v = qkv.narrow(0, 2, 1).reshape([b, self.heads, n, hd]);
        // Proportional attention (ToMe eq. 2): logits + log(size of each key).
        let bias = size.map(|s| s.log().reshape([b, 1, 1, n]));
        let out = attention(q, k.clone(), v, bias).swap_dims(1, 2).reshape([b, n, c]);
        (self.proj.forward(out), k.mean_dim(1).reshape([b, n, hd]))
    }
}

/// timm Mlp (fc1 → GELU → fc2), or MixMlp (fc1 → depth-wise 3×3 conv → GELU → fc2).
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub dwconv: Option<Conv2d>,
    pub fc2: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mut x = self.fc1.forward(x);
        if let Some(dw) = &self.dwconv {
            x = map_to_tokens(dw.forward(tokens_to_map(x)));
        }
        self.fc2.forward(gelu(x))
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub ls1: Param<Tensor<1>>,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    pub ls2: Param<Tensor<1>>,
}

impl Block {
    fn load(w: Scope, dim: usize, heads: usize, mix: bool) -> Result<Self> {
        let hidden = dim * 4;
        let tn = Init::TruncNormal(0.02);
        Ok(Self {
            norm1: LayerNorm::load(w.pp("norm1"), dim)?,
            attn: Attention {
                qkv: Linear::load(w.pp("attn.qkv"), dim, 3 * dim, true, tn)?,
                proj: Linear::load(w.pp("attn.proj"), dim, dim, true, tn)?,
                heads,
            },
            ls1: w.param("ls1.gamma", [dim], Init::Const(1e-5))?,
            norm2: LayerNorm::load(w.pp("norm2"), dim)?,
            mlp: Mlp {
                fc1: Linear::load(w.pp("mlp.fc1"), dim, hidden, true, tn)?,
                dwconv: if mix {
                    let s = ConvSpec { groups: hidden, ..ConvSpec::same(hidden, hidden, 3, true) };
                    Some(Conv2d::load(w.pp("mlp.dwconv"), s, Some(tn))?)
                } else {
                    None
                },
                fc2: Linear::load(w.pp("mlp.fc2"), hidden, dim, true, tn)?,
            },
            ls2: w.param("ls2.gamma", [dim], Init::Const(1e-5))?,
        })
    }

    fn attend(&self, x: Tensor<3>, size: Option<Tensor<3>>) -> (Tensor<3>, Tensor<3>) {
        let (a, metric) = self.attn.forward(self.norm1.forward(x.clone()), size);
        (x + a * self.ls1.val().unsqueeze::<3>(), metric)
    }

    fn feed_forward(&self, x: Tensor<3>) -> Tensor<3> {
        x.clone() + self.mlp.forward(self.norm2.forward(x)) * self.ls2.val().unsqueeze::<3>()
    }
}

/// The encoder's ToMe transformer: a learnable [CLS] token and blocks that merge r tokens each.
#[derive(Module, Debug)]
pub struct TomeTransformer {
    pub cls_token: Option<Param<Tensor<3>>>,
    pub blocks: Vec<Block>,
}

impl TomeTransformer {
    pub fn load(w: Scope, dim: usize, layers: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            cls_token: Some(w.param("cls_token", [1, 1, dim], Init::Normal(1e-6))?),
            blocks: Self::blocks(w, dim, layers, heads)?,
        })
    }

    /// Blocks without a [CLS] token (the representation blocks `rep_attn`).
    pub fn load_plain(w: Scope, dim: usize, layers: usize, heads: usize) -> Result<Self> {
        Ok(Self { cls_token: None, blocks: Self::blocks(w, dim, layers, heads)? })
    }

    fn blocks(w: Scope, dim: usize, layers: usize, heads: usize) -> Result<Vec<Block>> {
        (0..layers).map(|i| Block::load(w.pp(format!("blocks.{i}")), dim, heads, false)).collect()
    }

    /// x [B, L, C] → [B, 1 + K, C] and the sizes/sources of the K groups (row 0 = [CLS]).
    pub fn forward(&self, x: Tensor<3>, per_layer_r: &[i64]) -> (Tensor<3>, Tracking) {
        let [b, l, c] = x.dims();
        let cls = self.cls_token.as_ref().expect("ToMe transformer with a [CLS] token").val().expand([b, 1, c]);
        let mut x = Tensor::cat(vec![cls, x], 1);
        let mut track = Tracking::new(b, l + 1, &x.device());
        let mut merged = false;
        for (blk, &r) in self.blocks.iter().zip(per_layer_r) {
            // Proportional attention from the first merge on (block 0 sees no sizes).
            let size = merged.then(|| track.size_tensor());
            let (h, metric) = blk.attend(x, size.clone());
            x = h;
            if let Some(m) = bipartite_soft_matching(metric, r, true) {
                let size = size.unwrap_or_else(|| track.size_tensor());
                x = m.merge_wavg(x, size);
                track.apply(&m);
                merged = true;
            }
            x = blk.feed_forward(x);
        }
        (x, track)
    }

    /// The blocks without merging or [CLS] (the representation blocks).
    pub fn forward_plain(&self, mut x: Tensor<3>) -> Tensor<3> {
        for blk in &self.blocks {
            x = blk.feed_forward(blk.attend(x, None).0);
        }
        x
    }
}

/// The decoder's transformer: x + dwconv(x) positional embedding, then MixFFN blocks.
#[derive(Module, Debug)]
pub struct ConvPosTransformer {
    pub pos_embed: Conv2d,
    pub blocks: Vec<Block>,
}

impl ConvPosTransformer {
    pub fn load(w: Scope, dim: usize, layers: usize, heads: usize) -> Result<Self> {
        let s = ConvSpec { groups: dim, ..ConvSpec::same(dim, dim, 3, true) };
        Ok(Self {
            pos_embed: Conv2d::load(w.pp("pos_embed"), s, Some(Init::TruncNormal(0.02)))?,
            blocks: (0..layers)
                .map(|i| Block::load(w.pp(format!("blocks.{i}")), dim, heads, true))
                .collect::<Result<_>>()?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = x.clone() + self.pos_embed.forward(x);
        let [b, c, h, w] = x.dims();
        let mut t = map_to_tokens(x);
        for blk in &self.blocks {
            t = blk.feed_forward(blk.attend(t, None).0);
        }
        t.swap_dims(1, 2).reshape([b, c, h, w])
    }
}
