//! The GPT's decoding step fused on the host (CPU builds, f32 weights): weights packed once
//! ([`PackedLinear`]), then per step one pass per block over the S one-token rows — RMSNorm, the
//! qkv product, 2-D RoPE, single-query attention over the ragged cache in place, the output
//! product and residual, RMSNorm, one product for w1 and w3 together, SwiGLU, w2 and residual —
//! on plain slices instead of ~40 tensor ops per block. The factorized stage and both heads run
//! the same way. Nothing sums across rows, so a sequence's values do not depend on its batch.
use crate::ar::gpt::{Block, Gpt, RmsNorm, Rope};
use crate::ar::ragged_attention::{attend_one, Held};
use crate::ar::ragged_cache::RaggedKvCache;
use crate::io::readback::floats;
use crate::nn::cpu::packed::PackedLinear;
use crate::nn::fused::exp;
use crate::nn::Linear;

fn packed(l: &Linear) -> PackedLinear {
    let [n, k] = l.weight.dims();
    PackedLinear::new(&floats(l.weight.val()), n, k)
}

fn norm_weight(n: &RmsNorm) -> Vec<f32> {
    floats(n.weight.val())
}

/// RMSNorm of each row of x [S, D]: x / √(mean(x²) + 1e-5) · w.
fn rms_norm(x: &[f32], w: &[f32]) -> Vec<f32> {
    let d = w.len();
    let mut y = vec![0f32; x.len()];
    for (yr, xr) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + 1e-5).sqrt();
        yr.iter_mut().zip(xr).zip(w).for_each(|((y, x), w)| *y = x * inv * w);
    }
    y
}

/// Rotates the interleaved pairs of every head of x [S, D] by row `row` of the table:
/// (x0·cos − x1·sin, x1·cos + x0·sin).
fn rotate(x: &mut [f32], rope: &Rope, row: usize) {
    let half = rope.half;
    let (c, s) = (&rope.cos[row * half..(row + 1) * half], &rope.sin[row * half..(row + 1) * half]);
    for head in x.chunks_exact_mut(2 * half) {
        for (i, p) in head.chunks_exact_mut(2).enumerate() {
            let (x0, x1) = (p[0], p[1]);
            p[0] = x0 * c[i] - x1 * s[i];
            p[1] = x1 * c[i] + x0 * s[i];
        }
    }
}

/// Row i of a table [n, d].
fn row(t: &[f32], i: i64, d: usize) -> &[f32] {
    &t[i as usize * d..(i as usize + 1) * d]
}

fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

/// One transformer block's weights, packed.
struct HostBlock {
    attn_norm: Vec<f32>,
    wqkv: PackedLinear,
    wo: PackedLinear,
    ffn_norm: Vec<f32>,
    /// [w1; w3]: one product gives both halves of SwiGLU.
    w13: PackedLinear,
    w2: PackedLinear,
    /// The v rows of wqkv alone, for a position whose rotation zeroes q and k (factorized blocks).
    wv: Option<PackedLinear>,
}

impl HostBlock {
    /// `context`: also pack wqkv's v rows for [`Self::forward_context`].
    fn new(b: &Block, context: bool) -> Self {
        let [hidden, d] = b.w1.weight.dims();
        let w13 = [floats(b.w1.weight.val()), floats(b.w3.weight.val())].concat();
        let wqkv = floats(b.attention.wqkv.weight.val());
        Self {
            wv: context.then(|| PackedLinear::new(&wqkv[2 * d * d..], d, d)),
            attn_norm: norm_weight(&b.attention_norm),
            wqkv: PackedLinear::new(&wqkv, 3 * d, d),
            wo: packed(&b.attention.wo),
            ffn_norm: norm_weight(&b.ffn_norm),
            w13: PackedLinear::new(&w13, 2 * hidden, d),
            w2: packed(&b.w2),
        }
    }

    /// x [S, D] ← x + attention, then + SwiGLU; the rows sit at row `row` of `rope`, and
    /// `attend(q, k, v)` returns the attention output, all [S, D].
    fn forward(&self, x: &mut [f32], rope: &Rope, row: usize, attend: impl FnOnce(&[f32], &[f32], &[f32]) -> Vec<f32>) {
        let d = self.attn_norm.len();
        let s = x.len() / d;
        let qkv = self.wqkv.forward(&rms_norm(x, &self.attn_norm), s);
        let (mut q, mut k, mut v) = (Vec::with_capacity(s * d), Vec::with_capacity(s * d), Vec::with_capacity(s * d));
        for r in qkv.chunks_exact(3 * d) {
            q.extend_from_slice(&r[..d]);
            k.extend_from_slice(&r[d..2 * d]);
            v.extend_from_slice(&r[2 * d..]);
        }
        rotate(&mut q, rope, row);
        rotate(&mut k, rope, row);
        add(x, &self.wo.forward(&attend(&q, &k, &v), s));
        self.feed_forward(x, s);
    }

    /// The block at a position whose rotation is zero (the factorized context position, as the
    /// reference's class rows): q = k = 0, and the position sees only itself, so the attention
    /// output is v (softmax over one entry is exactly 1) and only wqkv's v rows are computed.
    /// Returns the entry (k, v) it leaves for later positions.
    fn forward_context(&self, x: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
        let d = self.attn_norm.len();
        let s = x.len() / d;
        let wv = self.wv.as_ref().expect("a factorized block packs its v rows");
        let v = wv.forward(&rms_norm(x, &self.attn_norm), s);
        add(x, &self.wo.forward(&v, s));
        self.feed_forward(x, s);
        (vec![0.0; s * d], v)
    }

    /// x ← x + w2(SiLU(w1 x̂) · w3 x̂), x̂ = RMSNorm(x).
    fn feed_forward(&self, x: &mut [f32], s: usize) {
        let ab = self.w13.forward(&rms_norm(x, &self.ffn_norm), s);
        let hidden = self.w13.out_dim() / 2;
        let mut g = vec![0f32; s * hidden];
        for (gr, r) in g.chunks_exact_mut(hidden).zip(ab.chunks_exact(2 * hidden)) {
            let (a, b) = r.split_at(hidden);
            gr.iter_mut().zip(a).zip(b).for_each(|((g, &a), &b)| *g = a / (1.0 + exp(-a)) * b);
        }
        add(x, &self.w2.forward(&g, s));
    }
}

/// The keys and values [S, D] of the context position of each factorized block, for the post pass.
pub struct FactorCache(Vec<(Vec<f32>, Vec<f32>)>);

/// A GPT's weights on the host, packed for decoding.
pub struct HostGpt {
    spatial: Vec<HostBlock>,
    factorized: Vec<HostBlock>,
    norm: Vec<f32>,
    head: [PackedLinear; 2],
    pre_emb: Vec<f32>,
    post_emb: Vec<f32>,
    heads: usize,
    rope: Rope,
    factor_rope: Rope,
}

impl HostGpt {
    pub fn new(gpt: &Gpt) -> Self {
        let zero = |t: &[f32]| t[..gpt.factor_rope.half].iter().all(|&c| c == 0.0);
        assert!(
            zero(&gpt.factor_rope.cos) && zero(&gpt.factor_rope.sin),
            "the factorized context position is unrotated (q, k zeroed)"
        );
        Self {
            spatial: gpt.spatial_blocks.iter().map(|b| HostBlock::new(b, false)).collect(),
            factorized: gpt.factorized_blocks.iter().map(|b| HostBlock::new(b, true)).collect(),
            norm: norm_weight(&gpt.norm),
            head: [packed(&gpt.head[0]), packed(&gpt.head[1])],
            pre_emb: floats(gpt.pre_emb.val()),
            post_emb: floats(gpt.post_emb.val()),
            heads: gpt.cfg.n_head,
            rope: gpt.rope.clone(),
            factor_rope: gpt.factor_rope.clone(),
        }
    }

    /// The model width D.
    pub fn dim(&self) -> usize {
        self.norm.len()
    }

    /// Token embeddings pre_emb[pre] + post_emb[post], [S, D].
    pub fn embed(&self, pre: &[i64], post: &[i64]) -> Vec<f32> {
        let d = self.dim();
        let mut x = vec![0f32; pre.len() * d];
        for ((xr, &a), &b) in x.chunks_exact_mut(d).zip(pre).zip(post) {
            xr.iter_mut()
                .zip(row(&self.pre_emb, a, d))
                .zip(row(&self.post_emb, b, d))
                .for_each(|((x, a), b)| *x = a + b);
        }
        x
    }

    /// Feeds one token per sequence, x [S, D] at sequence position `pos`, through the spatial
    /// blocks over the cache (layer i for block i); returns the hidden rows [S, D].
    pub fn step(&self, mut x: Vec<f32>, pos: usize, cache: &mut RaggedKvCache) -> Vec<f32> {
        for (layer, blk) in self.spatial.iter().enumerate() {
            blk.forward(&mut x, &self.rope, pos, |q, k, v| cache.attend_step(layer, q, k, v));
        }
        x
    }

    fn logits(&self, head: usize, mut ctx: Vec<f32>) -> Vec<f32> {
        ctx = rms_norm(&ctx, &self.norm);
        let s = ctx.len() / self.dim();
        self.head[head].forward(&ctx, s)
    }

    /// Pre logits [S, 2^a] from the context rows h [S, D] (factorized position 0), and the
    /// factorized blocks' keys and values of that position.
    pub fn decode_pre(&self, h: &[f32]) -> (Vec<f32>, FactorCache) {
        let mut ctx = h.to_vec();
        let kv = self.factorized.iter().map(|blk| blk.forward_context(&mut ctx)).collect();
        (self.logits(0, ctx), FactorCache(kv))
    }

    /// Post logits [S, 2^b] given the chosen pre parts: their embedding at factorized
    /// position 1 attends to the context's keys and values and its own.
    pub fn decode_post(&self, cache: &FactorCache, pre: &[i64]) -> Vec<f32> {
        let d = self.dim();
        let mut ctx: Vec<f32> = pre.iter().flat_map(|&p| row(&self.pre_emb, p, d)).copied().collect();
        for (blk, (k0, v0)) in self.factorized.iter().zip(&cache.0) {
            blk.forward(&mut ctx, &self.factor_rope, 1, |q, k, v| {
                let held: Vec<Held> = (0..pre.len())
                    .map(|s| Held {
                        k: &k0[s * d..(s + 1) * d],
                        v: &v0[s * d..(s + 1) * d],
                        len: 1,
                        next: Some((&k[s * d..(s + 1) * d], &v[s * d..(s + 1) * d])),
                    })
                    .collect();
                attend_one(q, &held, self.heads, d / self.heads)
            });
        }
        self.logits(1, ctx)
    }
}
