//! The class-conditional autoregressive transformer of LlamaGen / Open-MAGVIT2 as the reference
//! uses it (taming/modules/transformer/gpt.py): RMSNorm, SwiGLU, 2-D RoPE, factorized token
//! embeddings and heads (the code splits into a low "pre" part and a high "post" part, predicted
//! one after the other by small factorized blocks), a class token with a null class for CFG, and
//! an optional merge-instruction token for MergeAR.
pub use crate::ar::gpt_config::GptConfig;
use crate::ar::kv_cache::{DenseKvCache, KvCache};
use crate::io::{scope::Scope, weights::Init};
use crate::nn::{attention, silu, Linear};
use anyhow::{bail, Result};
use burn::module::Param;
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
}

impl RmsNorm {
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let ms = x.clone().powi_scalar(2).mean_dim(D - 1);
        x / (ms + 1e-5).sqrt() * self.weight.val().unsqueeze()
    }
}

/// The rotation of every sequence position: `prefix` zero rows (q, k zeroed, as the reference's
/// class rows), then the g×g grid: pair i < hd/4 turns with the row, the rest with the column.
#[derive(Clone, Debug)]
pub struct Rope {
    /// [rows, hd/2] cos and sin.
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub half: usize,
}

impl Rope {
    pub fn new(grid: usize, head_dim: usize, base: f64, prefix: usize) -> Self {
        let half = head_dim / 2;
        let quarter = half / 2;
        let freqs: Vec<f64> = (0..quarter).map(|i| 1.0 / base.powf((2 * i) as f64 / half as f64)).collect();
        let rows = prefix + grid * grid;
        let (mut cos, mut sin) = (vec![0f32; rows * half], vec![0f32; rows * half]);
        for p in 0..grid * grid {
            let (r, c) = (p / grid, p % grid);
            for i in 0..half {
                let a = if i < quarter { r as f64 * freqs[i] } else { c as f64 * freqs[i - quarter] };
                cos[(prefix + p) * half + i] = a.cos() as f32;
                sin[(prefix + p) * half + i] = a.sin() as f32;
            }
        }
        Self { cos, sin, half }
    }

    /// (cos, ±sin) rows for the given sequence positions, [1, n, 1, hd] each, every angle twice
    /// (once per element of its pair) and the sine signed for `apply`: (−sin, +sin).
    pub fn rows(&self, pos: &[usize], device: &Device) -> (Tensor<4>, Tensor<4>) {
        let n = pos.len();
        let (mut c, mut s) = (Vec::with_capacity(n * 2 * self.half), Vec::with_capacity(n * 2 * self.half));
        for &p in pos {
            for i in p * self.half..(p + 1) * self.half {
                c.extend([self.cos[i], self.cos[i]]);
                s.extend([-self.sin[i], self.sin[i]]);
            }
        }
        (
            Tensor::from_data(TensorData::new(c, [1, n, 1, 2 * self.half]), device),
            Tensor::from_data(TensorData::new(s, [1, n, 1, 2 * self.half]), device),
        )
    }

    /// Rotates interleaved pairs (x[2i], x[2i+1]) of x [B, n, H, hd]:
    /// (x0·cos − x1·sin, x1·cos + x0·sin) = x∘cos + swap(x)∘(−sin, +sin).
    fn apply(&self, x: Tensor<4>, cs: &(Tensor<4>, Tensor<4>)) -> Tensor<4> {
        let [b, n, h, hd] = x.dims();
        let swapped = x.clone().reshape([b, n, h, hd / 2, 2]).flip([4]).reshape([b, n, h, hd]);
        x * cs.0.clone() + swapped * cs.1.clone()
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub wqkv: Linear,
    pub wo: Linear,
    #[module(skip)]
    heads: usize,
}

#[derive(Module, Debug)]
pub struct Block {
    pub attention_norm: RmsNorm,
    pub attention: Attention,
    pub ffn_norm: RmsNorm,
    pub w1: Linear,
    pub w2: Linear,
    pub w3: Linear,
}

impl Block {
    fn load(w: Scope, cfg: &GptConfig) -> Result<Self> {
        let d = cfg.dim;
        let hidden = cfg.hidden();
        let n = Init::Normal(0.02);
        Ok(Self {
            attention_norm: RmsNorm { weight: w.param("attention_norm.weight", [d], Init::Const(1.0))? },
            attention: Attention {
                wqkv: Linear::load(w.pp("attention.wqkv"), d, 3 * d, false, n)?,
                wo: Linear::load(w.pp("attention.wo"), d, d, false, n)?,
                heads: cfg.n_head,
            },
            ffn_norm: RmsNorm { weight: w.param("ffn_norm.weight", [d], Init::Const(1.0))? },
            w1: Linear::load(w.pp("feed_forward.w1"), d, hidden, false, n)?,
            w2: Linear::load(w.pp("feed_forward.w2"), hidden, d, false, n)?,
            w3: Linear::load(w.pp("feed_forward.w3"), d, hidden, false, n)?,
        })
    }

    /// x [B, n, D] with the rotations `cs` of its positions (`Rope::rows`); attends to x itself
    /// under `bias` (additive mask [n, n] or [B, 1, n, n]), or with `cache` (the cache and this
    /// block's layer index) to what the cache holds after appending this chunk, under its mask.
    fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        cs: &(Tensor<4>, Tensor<4>),
        bias: Option<Tensor<4>>,
        cache: Option<(&mut dyn KvCache, usize)>,
    ) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.attention.heads;
        let hd = d / h;
        let qkv = self.attention.wqkv.forward(self.attention_norm.forward(x.clone()));
        let q = rope.apply(qkv.clone().narrow(2, 0, d).reshape([b, n, h, hd]), cs).swap_dims(1, 2);
        let k = rope.apply(qkv.clone().narrow(2, d, d).reshape([b, n, h, hd]), cs).swap_dims(1, 2);
        let v = qkv.narrow(2, 2 * d, d).reshape([b, n, h, hd]).swap_dims(1, 2);
        let a = match cache {
            Some((c, layer)) => c.attend(layer, q, k, v),
            None => attention(q, k, v, bias),
        };
        let a = a.swap_dims(1, 2).reshape([b, n, d]);
        let x = x + self.attention.wo.forward(a);
        let f = self.ffn_norm.forward(x.clone());
        x.clone() + self.w2.forward(silu(self.w1.forward(f.clone())) * self.w3.forward(f))
    }
}

/// Additive causal mask [1, 1, n, n] (0 where allowed, −inf elsewhere).
pub fn causal_bias(n: usize, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = (0..n * n).map(|i| if i % n <= i / n { 0.0 } else { f32::NEG_INFINITY }).collect();
    Tensor::from_data(TensorData::new(v, [1, 1, n, n]), device)
}

#[derive(Module, Debug)]
pub struct Gpt {
    pub pre_emb: Param<Tensor<2>>,
    pub post_emb: Param<Tensor<2>>,
    pub class_emb: Param<Tensor<2>>,
    pub merge_emb: Option<Param<Tensor<2>>>,
    pub spatial_blocks: Vec<Block>,
    pub factorized_blocks: Vec<Block>,
    pub norm: RmsNorm,
    pub head: Vec<Linear>,
    #[module(skip)]
    pub cfg: GptConfig,
    #[module(skip)]
    pub rope: Rope,
    #[module(skip)]
    pub(crate) factor_rope: Rope,
}

/// Per-position logits of the two factors: [B, T, 2^a] and [B, T, 2^b].
pub struct Logits {
    pub pre: Tensor<3>,
    pub post: Tensor<3>,
}

impl Gpt {
    pub fn load(w: Scope, cfg: &GptConfig) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.dim;
        let [a, b] = cfg.factorized_bits;
        let n = Init::Normal(0.02);
        let grid = (cfg.block_size as f64).sqrt() as usize;
        let hd = d / cfg.n_head;
        Ok(Self {
            pre_emb: w.param("pre_emb.weight", [1 << a, d], n)?,
            post_emb: w.param("post_emb.weight", [1 << b, d], n)?,
            class_emb: w.param("class_emb.embedding_table.weight", [cfg.class_num + 1, d], n)?,
            merge_emb: if cfg.merge_tokens > 0 {
                Some(w.param("merge_emb.weight", [cfg.merge_tokens, d], n)?)
            } else {
                None
            },
            spatial_blocks: (0..cfg.spatial_n_layer)
                .map(|i| Block::load(w.pp(format!("spatial_blocks.{i}")), cfg))
                .collect::<Result<_>>()?,
            factorized_blocks: (0..cfg.factorized_n_layer)
                .map(|i| Block::load(w.pp(format!("factorized_blocks.{i}")), cfg))
                .collect::<Result<_>>()?,
            norm: RmsNorm { weight: w.param("norm.weight", [d], Init::Const(1.0))? },
            head: vec![
                Linear::load(w.pp("head.0"), d, 1 << a, false, n)?,
                Linear::load(w.pp("head.1"), d, 1 << b, false, n)?,
            ],
            rope: Rope::new(grid, hd, cfg.rope_base, cfg.prefix()),
            // Slot 0 (the context) unrotated, slot 1 (the pre sub-token) at grid (0, 0).
            factor_rope: Rope::new(grid, hd, cfg.rope_base, 1),
            cfg: cfg.clone(),
        })
    }

    fn embed(table: &Param<Tensor<2>>, idx: &[i64], shape: [usize; 2]) -> Tensor<3> {
        let w = table.val();
        let device = w.device();
        let d = w.dims()[1];
        let i = Tensor::<1, Int>::from_data(TensorData::new(idx.to_vec(), [idx.len()]), &device);
        w.select(0, i).reshape([shape[0], shape[1], d])
    }

    /// The prefix embeddings [B, prefix, D]: class (or null class), then merge instruction.
    fn prefix(&self, labels: &[i64], merge: Option<&[i64]>) -> Result<Tensor<3>> {
        let b = labels.len();
        let cls = Self::embed(&self.class_emb, labels, [b, 1]);
        match (&self.merge_emb, merge) {
            (Some(table), Some(m)) => Ok(Tensor::cat(vec![cls, Self::embed(table, m, [b, 1])], 1)),
            (None, None) => Ok(cls),
            (Some(_), None) => bail!("this MergeAR model needs a merge instruction (kept count)"),
            (None, Some(_)) => bail!("this model has no merge-instruction tokens (plain AR)"),
        }
    }

    /// Teacher-forced logits for token rows `pre`/`post` [B, T] (T ≤ L). `bias` is the
    /// attention mask over the prefix+tokens sequence (causal when `None`).
    pub fn forward(
        &self,
        pre: &[i64],
        post: &[i64],
        labels: &[i64],
        merge: Option<&[i64]>,
        bias: Option<Tensor<4>>,
    ) -> Result<Logits> {
        let b = labels.len();
        let t = pre.len() / b;
        let np = self.cfg.prefix();
        let prefix = self.prefix(labels, merge)?;
        // Inputs: prefix then tokens 0..T−2 (position n predicts token n − (np − 1)).
        let tok = Self::embed(&self.pre_emb, pre, [b, t]) + Self::embed(&self.post_emb, post, [b, t]);
        let h = Tensor::cat(vec![prefix, tok.narrow(1, 0, t - 1)], 1);
        let n = np + t - 1;
        let device = h.device();
        let bias = bias.unwrap_or_else(|| causal_bias(n, &device));
        let pos: Vec<usize> = (0..n).collect();
        let cs = self.rope.rows(&pos, &device);
        let mut h = h;
        for blk in &self.spatial_blocks {
            h = blk.forward(h, &self.rope, &cs, Some(bias.clone()), None);
        }
        let h = h.narrow(1, np - 1, t);
        self.factorized(h, Self::embed(&self.pre_emb, pre, [b, t]))
    }

    /// The factorized stage: per position the 2-token sequence [h, pre_emb(pre)].
    fn factorized(&self, h: Tensor<3>, pre_emb: Tensor<3>) -> Result<Logits> {
        let [b, t, d] = h.dims();
        let device = h.device();
        let mut ctx = Tensor::stack::<4>(vec![h, pre_emb], 2).reshape([b * t, 2, d]);
        let bias = causal_bias(2, &device);
        let cs = self.factor_rope.rows(&[0, 1], &device);
        for blk in &self.factorized_blocks {
            ctx = blk.forward(ctx, &self.factor_rope, &cs, Some(bias.clone()), None);
        }
        let ctx = self.norm.forward(ctx.reshape([b, t, 2, d]));
        let pre = self.head[0].forward(ctx.clone().narrow(2, 0, 1).reshape([b, t, d]));
        let post = self.head[1].forward(ctx.narrow(2, 1, 1).reshape([b, t, d]));
        Ok(Logits { pre, post })
    }

    /// Incremental decoding: feeds embeddings x [B, n, D] at sequence positions `pos` through
    /// the spatial blocks with the KV cache (layer i for block i); returns the last hidden state.
    pub fn step(&self, x: Tensor<3>, pos: &[usize], cache: &mut dyn KvCache) -> Tensor<3> {
        let mut h = x;
        let n = pos.len();
        let cs = self.rope.rows(pos, &h.device());
        for (layer, blk) in self.spatial_blocks.iter().enumerate() {
            h = blk.forward(h, &self.rope, &cs, None, Some((&mut *cache, layer)));
        }
        let [b, _, d] = h.dims();
        h.narrow(1, n - 1, 1).reshape([b, 1, d])
    }

    /// Pre logits [B, 2^a] from a context h [B, 1, D], and the factorized blocks' keys and values
    /// of that position for [`Self::decode_post`].
    pub fn decode_pre(&self, h: Tensor<3>) -> (Tensor<2>, DenseKvCache) {
        let [b, _, d] = h.dims();
        let mut cache = DenseKvCache::new(self.factorized_blocks.len(), b);
        let cs = self.factor_rope.rows(&[0], &h.device());
        let mut ctx = h;
        for (i, blk) in self.factorized_blocks.iter().enumerate() {
            ctx = blk.forward(ctx, &self.factor_rope, &cs, None, Some((&mut cache, i)));
        }
        (self.head[0].forward(self.norm.forward(ctx).reshape([b, d])), cache)
    }

    /// Post logits [B, 2^b] given the chosen pre parts: their embedding at position 1 attends
    /// to the context's keys and values that `decode_pre` left in `cache` (position 0 is not
    /// run again).
    pub fn decode_post(&self, mut cache: DenseKvCache, pre: &[i64]) -> Tensor<2> {
        let b = pre.len();
        let mut ctx = Self::embed(&self.pre_emb, pre, [b, 1]);
        let d = ctx.dims()[2];
        let cs = self.factor_rope.rows(&[1], &ctx.device());
        for (i, blk) in self.factorized_blocks.iter().enumerate() {
            ctx = blk.forward(ctx, &self.factor_rope, &cs, None, Some((&mut cache, i)));
        }
        self.head[1].forward(self.norm.forward(ctx).reshape([b, d]))
    }

    pub fn embed_prefix(&self, labels: &[i64], merge: Option<&[i64]>) -> Result<Tensor<3>> {
        self.prefix(labels, merge)
    }

    pub fn embed_token(&self, pre: &[i64], post: &[i64]) -> Tensor<3> {
        let b = pre.len();
        Self::embed(&self.pre_emb, pre, [b, 1]) + Self::embed(&self.post_emb, post, [b, 1])
    }
}
