//! Token recovery: put the K kept tokens back on the L-token grid, either with the encoder's
//! source matrix (token_unmerge) or with the learned SourceRecovery model that predicts it.
use crate::io::{scope::Scope, weights::Init};
use crate::nn::{attention, gelu, LayerNorm, Linear};
use anyhow::Result;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::softmax;

/// token_unmerge: full[b, j] = keep[b, group[b][j]] (each kept token copied to every position
/// it absorbed). `keep` is [B, K, C], `group[b]` has L entries in 0..K.
pub fn token_unmerge(keep: Tensor<3>, group: &[Vec<usize>]) -> Tensor<3> {
    let [b, k, c] = keep.dims();
    let l = group[0].len();
    // One 1-D select over the batch-flattened rows: B·L indices, not one per element.
    let idx: Vec<i64> =
        (group.iter().enumerate()).flat_map(|(bi, g)| g.iter().map(move |&j| (bi * k + j) as i64)).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [b * l]), &keep.device());
    keep.reshape([b * k, c]).select(0, idx).reshape([b, l, c])
}

/// Groups from a 0/1 source matrix S [B, K, L] (one 1 per column).
pub fn groups_from_source(source: &[f32], b: usize, k: usize, l: usize) -> Vec<Vec<usize>> {
    (0..b)
        .map(|bi| (0..l).map(|j| (0..k).find(|&i| source[bi * k * l + i * l + j] == 1.0).unwrap_or(0)).collect())
        .collect()
}

/// Pre-norm cross-attention block: queries attend to the (already normalised) kept tokens.
#[derive(Module, Debug)]
pub struct CrossAttentionBlock {
    pub norm1: LayerNorm,
    pub q: Linear,
    pub kv: Linear,
    pub proj: Linear,
    pub gamma1: Param<Tensor<1>>,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub gamma2: Param<Tensor<1>>,
    #[module(skip)]
    heads: usize,
}

impl CrossAttentionBlock {
    fn load(w: Scope, dim: usize, heads: usize) -> Result<Self> {
        let tn = Init::TruncNormal(0.02);
        Ok(Self {
            norm1: LayerNorm::load(w.pp("norm1"), dim)?,
            q: Linear::load(w.pp("q"), dim, dim, true, tn)?,
            kv: Linear::load(w.pp("kv"), dim, 2 * dim, true, tn)?,
            proj: Linear::load(w.pp("proj"), dim, dim, true, tn)?,
            gamma1: w.param("gamma1", [dim], Init::Const(1e-5))?,
            norm2: LayerNorm::load(w.pp("norm2"), dim)?,
            fc1: Linear::load(w.pp("mlp.fc1"), dim, 4 * dim, true, tn)?,
            fc2: Linear::load(w.pp("mlp.fc2"), 4 * dim, dim, true, tn)?,
            gamma2: w.param("gamma2", [dim], Init::Const(1e-5))?,
            heads,
        })
    }

    fn attention(&self, q: Tensor<3>, kv: Tensor<3>) -> Tensor<3> {
        let [b, n, c] = q.dims();
        let l = kv.dims()[1];
        let (h, hd) = (self.heads, c / self.heads);
        let q = self.q.forward(q).reshape([b, n, h, hd]).swap_dims(1, 2);
        let kv = self.kv.forward(kv).reshape([b, l, 2, h, hd]).permute([2, 0, 3, 1, 4]);
        let k = kv.clone().narrow(0, 0, 1).reshape([b, h, l, hd]);
        let v = kv.narrow(0, 1, 1).reshape([b, h, l, hd]);
        let x = attention(q, k, v, None);
        self.proj.forward(x.swap_dims(1, 2).reshape([b, n, c]))
    }

    pub fn forward(&self, q: Tensor<3>, kv: Tensor<3>) -> Tensor<3> {
        let q = q.clone() + self.attention(self.norm1.forward(q), kv) * self.gamma1.val().unsqueeze::<3>();
        q.clone() + self.fc2.forward(gelu(self.fc1.forward(self.norm2.forward(q)))) * self.gamma2.val().unsqueeze::<3>()
    }
}

/// SourceRecovery(learn_source=True): L learnable queries cross-attend to the K tokens and
/// predict the source matrix S = softmax(head(q)·head(kv)ᵀ) over kept tokens.
#[derive(Module, Debug)]
pub struct SourceRecovery {
    pub rec_embed: Linear,
    pub rec_tokens: Param<Tensor<3>>,
    pub norm_in: LayerNorm,
    pub blocks: Vec<CrossAttentionBlock>,
    pub rec_head: Linear,
}

/// Recovery output: full tokens [B, L, C], soft source [B, K, L], hard groups [B][L].
pub struct Recovered {
    pub full: Tensor<3>,
    pub source: Tensor<3>,
    pub group: Vec<Vec<usize>>,
}

impl SourceRecovery {
    pub fn load(
        w: Scope,
        embed_dim: usize,
        full_num: usize,
        rec_dim: usize,
        layers: usize,
        heads: usize,
    ) -> Result<Self> {
        let tn = Init::TruncNormal(0.02);
        Ok(Self {
            rec_embed: Linear::load(w.pp("rec_embed"), embed_dim, rec_dim, true, tn)?,
            rec_tokens: w.param("rec_tokens", [1, full_num, rec_dim], Init::Normal(1e-6))?,
            norm_in: LayerNorm::load(w.pp("norm_in"), rec_dim)?,
            blocks: (0..layers)
                .map(|i| CrossAttentionBlock::load(w.pp(format!("blocks.{i}")), rec_dim, heads))
                .collect::<Result<_>>()?,
            rec_head: Linear::load(w.pp("rec_head"), rec_dim, rec_dim, true, tn)?,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Recovered {
        let [b, k, _] = x.dims();
        let kv = self.norm_in.forward(self.rec_embed.forward(x.clone()));
        let [_, l, c] = self.rec_tokens.dims();
        let mut q = self.rec_tokens.val().expand([b, l, c]);
        for blk in &self.blocks {
            q = blk.forward(q, kv.clone());
        }
        let logits = self.rec_head.forward(q).matmul(self.rec_head.forward(kv).swap_dims(1, 2)); // [B, L, K]
        let source = softmax(logits, 2);
        let arg = crate::io::readback::ints(source.clone().argmax(2));
        let group: Vec<Vec<usize>> = arg.chunks(l).map(|r| r.iter().map(|&v| v as usize).collect()).collect();
        debug_assert!(group.iter().flatten().all(|&g| g < k));
        let full = token_unmerge(x.detach(), &group);
        Recovered { full, source: source.swap_dims(1, 2), group }
    }
}
