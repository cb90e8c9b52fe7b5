//! The GPT's decoding step fused on the host (CPU builds, f32 weights): weights packed once
//! ([`PackedLinear`]), then per step one pass per block over the S one-token rows — RMSNorm, the
//! qkv product, 2-D RoPE, single-query attention over the ragged cache in place, the output
//! product and residual, RMSNorm, one product for w1 and w3 together that stores SwiGLU, w2 and residual —
//! on plain slices instead of ~40 tensor ops per block. The factorized stage and both heads run
//! the same way. A [`Team`] runs each pass: its threads split every phase (rows, panels or
//! sequences) and meet at a barrier between phases, one wake-up per pass. Nothing sums across
//! rows, so a sequence's values do not depend on its batch or on the thread count.
use crate::ar::gpt::{Block, Gpt, RmsNorm, Rope};
use crate::ar::ragged_attention::{attend_sequence, Held};
use crate::ar::ragged_cache::RaggedKvCache;
use crate::io::readback::floats;
use crate::nn::cpu::packed::PackedLinear;
use crate::nn::cpu::team::{Member, Shared, Team};
use crate::nn::Linear;

fn packed(l: &Linear) -> PackedLinear {
    let [n, k] = l.weight.dims();
    PackedLinear::new(&floats(l.weight.val()), n, k)
}

fn norm_weight(n: &RmsNorm) -> Vec<f32> {
    floats(n.weight.val())
}

/// y = x / √(mean(x²) + 1e-5) · w for this member's rows of x [S, D]; then syncs.
///
/// # Safety
/// Nobody writes x meanwhile, nobody else the same rows of y.
unsafe fn rms_norm(m: &Member, x: Shared, y: Shared, w: &[f32]) {
    let d = w.len();
    let xs = x.read();
    for r in m.share(x.len() / d) {
        let xr = &xs[r * d..(r + 1) * d];
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + 1e-5).sqrt();
        y.part(r * d..(r + 1) * d).iter_mut().zip(xr).zip(w).for_each(|((y, x), w)| *y = x * inv * w);
    }
    m.sync();
}

/// y (=|+=) x·Wᵀ for the first `rows` rows of x and y, on this member's panels; then syncs.
///
/// # Safety
/// Nobody writes x meanwhile, nobody else y.
unsafe fn product(m: &Member, w: &PackedLinear, x: Shared, y: Shared, rows: usize, add: bool) {
    w.forward_into(&x.read()[..rows * w.in_dim()], rows, m.share(w.panels()), y, add);
    m.sync();
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

/// The activations of one pass over S rows, reused by every block: normalised rows, qkv,
/// attention output and SwiGLU, each [S, ·].
#[derive(Clone, Copy)]
struct Buffers<'a> {
    xn: Shared<'a>,
    qkv: Shared<'a>,
    o: Shared<'a>,
    g: Shared<'a>,
}

/// Attention of sequence s: o [D] (zeroed) for its rotated q, k and its v, all [D].
type Attend<'a> = dyn Fn(usize, &[f32], &[f32], &[f32], &mut [f32]) + Sync + 'a;

/// Owns [`Buffers`] for S rows.
struct Scratch(Vec<Vec<f32>>);

impl Scratch {
    fn new(s: usize, d: usize, hidden: usize) -> Self {
        Self([d, 3 * d, d, hidden].iter().map(|w| vec![0f32; s * w]).collect())
    }

    fn buffers(&mut self) -> Buffers<'_> {
        let [xn, qkv, o, g] = self.0.as_mut_slice() else { unreachable!("four buffers") };
        Buffers { xn: Shared::new(xn), qkv: Shared::new(qkv), o: Shared::new(o), g: Shared::new(g) }
    }
}

/// One transformer block's weights, packed.
struct HostBlock {
    attn_norm: Vec<f32>,
    wqkv: PackedLinear,
    wo: PackedLinear,
    ffn_norm: Vec<f32>,
    /// w1 and w3 packed together: one product gives SiLU(w1 x)·w3 x.
    w13: PackedLinear,
    w2: PackedLinear,
    /// The v rows of wqkv alone, for a position whose rotation zeroes q and k (factorized blocks).
    wv: Option<PackedLinear>,
}

impl HostBlock {
    /// `context`: also pack wqkv's v rows for [`Self::forward_context`].
    fn new(b: &Block, context: bool) -> Self {
        let [hidden, d] = b.w1.weight.dims();
        let wqkv = floats(b.attention.wqkv.weight.val());
        Self {
            wv: context.then(|| PackedLinear::new(&wqkv[2 * d * d..], d, d)),
            attn_norm: norm_weight(&b.attention_norm),
            wqkv: PackedLinear::new(&wqkv, 3 * d, d),
            wo: packed(&b.attention.wo),
            ffn_norm: norm_weight(&b.ffn_norm),
            w13: PackedLinear::gated(&floats(b.w1.weight.val()), &floats(b.w3.weight.val()), hidden, d),
            w2: packed(&b.w2),
        }
    }

    fn hidden(&self) -> usize {
        self.w13.out_dim()
    }

    /// x [S, D] ← x + attention, then + SwiGLU, on this member's share of every phase; the rows
    /// sit at row `row` of `rope`; the step's rotated k and its v land in k, v [S, D].
    ///
    /// # Safety
    /// Every member of the team calls it with the same buffers, which nothing else touches.
    #[allow(clippy::too_many_arguments)]
    unsafe fn forward(
        &self,
        m: &Member,
        x: Shared,
        b: Buffers,
        k: Shared,
        v: Shared,
        rope: &Rope,
        row: usize,
        attend: &Attend,
    ) {
        let d = self.attn_norm.len();
        rms_norm(m, x, b.xn, &self.attn_norm);
        let s = x.len() / d;
        product(m, &self.wqkv, b.xn, b.qkv, s, false);
        // Per sequence: 2-D RoPE on q and k, then its attention.
        for r in m.share(s) {
            let (q, kv) = b.qkv.part(r * 3 * d..(r + 1) * 3 * d).split_at_mut(d);
            let (kr, vr) = kv.split_at_mut(d);
            rotate(q, rope, row);
            rotate(kr, rope, row);
            let (kd, vd) = (k.part(r * d..(r + 1) * d), v.part(r * d..(r + 1) * d));
            kd.copy_from_slice(kr);
            vd.copy_from_slice(vr);
            let o = b.o.part(r * d..(r + 1) * d);
            o.fill(0.0);
            attend(r, q, kd, vd, o);
        }
        m.sync();
        product(m, &self.wo, b.o, x, s, true);
        self.feed_forward(m, x, b);
    }

    /// The block at a position whose rotation is zero (the factorized context position, as the
    /// reference's class rows): q = k = 0, and the position sees only itself, so the attention
    /// output is v (softmax over one entry is exactly 1) and only wqkv's v rows are computed,
    /// into v [S, D] (the entry later positions see, with k = 0).
    ///
    /// # Safety
    /// As [`Self::forward`].
    unsafe fn forward_context(&self, m: &Member, x: Shared, b: Buffers, v: Shared) {
        let wv = self.wv.as_ref().expect("a factorized block packs its v rows");
        rms_norm(m, x, b.xn, &self.attn_norm);
        let s = x.len() / self.attn_norm.len();
        product(m, wv, b.xn, v, s, false);
        product(m, &self.wo, v, x, s, true);
        self.feed_forward(m, x, b);
    }

    /// x ← x + w2(SiLU(w1 x̂) · w3 x̂), x̂ = RMSNorm(x).
    unsafe fn feed_forward(&self, m: &Member, x: Shared, b: Buffers) {
        rms_norm(m, x, b.xn, &self.ffn_norm);
        let s = x.len() / self.ffn_norm.len();
        product(m, &self.w13, b.xn, b.g, s, false);
        product(m, &self.w2, b.g, x, s, true);
    }
}

/// The values [S, D] of the context position of each factorized block (its keys are zero),
/// for the post pass.
pub struct FactorCache {
    v: Vec<Vec<f32>>,
    zeros: Vec<f32>,
}

/// A GPT's weights on the host, packed for decoding, and the team that runs its passes.
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
    team: Team,
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
            team: Team::global(),
        }
    }

    /// The model width D.
    pub fn dim(&self) -> usize {
        self.norm.len()
    }

    fn scratch(&self, s: usize) -> Scratch {
        let hidden = self.spatial.iter().chain(&self.factorized).map(HostBlock::hidden).max().unwrap_or(0);
        Scratch::new(s, self.dim(), hidden)
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
    /// blocks over the cache (layer i for block i), then stores each layer's entries; returns
    /// the hidden rows [S, D].
    pub fn step(&self, mut x: Vec<f32>, pos: usize, cache: &mut RaggedKvCache) -> Vec<f32> {
        let (d, layers) = (self.dim(), self.spatial.len());
        let s = x.len() / d;
        let (mut k, mut v) = (vec![0f32; layers * s * d], vec![0f32; layers * s * d]);
        let mut scratch = self.scratch(s);
        {
            let (b, xs, held) = (scratch.buffers(), Shared::new(&mut x), &*cache);
            let kv: Vec<(Shared, Shared)> =
                k.chunks_mut(s * d).zip(v.chunks_mut(s * d)).map(|(k, v)| (Shared::new(k), Shared::new(v))).collect();
            let hd = d / self.heads;
            self.team.run(|m| {
                for (layer, (blk, &(k, v))) in self.spatial.iter().zip(&kv).enumerate() {
                    let attend = |r: usize, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32]| {
                        attend_sequence(o, q, &held.held(layer, r, (k, v)), self.heads, hd)
                    };
                    // SAFETY: every member runs the same blocks on buffers only this team touches.
                    unsafe { blk.forward(m, xs, b, k, v, &self.rope, pos, &attend) };
                }
            });
        }
        for layer in 0..layers {
            let lv = layer * s * d..(layer + 1) * s * d;
            cache.store_step(layer, &k[lv.clone()], &v[lv]);
        }
        x
    }

    /// The head's logits [S, n] of rows x [S, D] after the final RMSNorm.
    ///
    /// # Safety
    /// As [`HostBlock::forward`].
    unsafe fn logits(&self, m: &Member, head: usize, x: Shared, b: Buffers, out: Shared) {
        rms_norm(m, x, b.xn, &self.norm);
        product(m, &self.head[head], b.xn, out, x.len() / self.dim(), false);
    }

    /// Pre logits [S, 2^a] from the context rows h [S, D] (factorized position 0), and the
    /// factorized blocks' values of that position.
    pub fn decode_pre(&self, h: &[f32]) -> (Vec<f32>, FactorCache) {
        let (d, s) = (self.dim(), h.len() / self.dim());
        let mut ctx = h.to_vec();
        let mut v = vec![vec![0f32; s * d]; self.factorized.len()];
        let mut logits = vec![0f32; s * self.head[0].out_dim()];
        let mut scratch = self.scratch(s);
        {
            let (b, xs, out) = (scratch.buffers(), Shared::new(&mut ctx), Shared::new(&mut logits));
            let vs: Vec<Shared> = v.iter_mut().map(|v| Shared::new(v)).collect();
            self.team.run(|m| {
                // SAFETY: as in `step`.
                unsafe {
                    for (blk, &v) in self.factorized.iter().zip(&vs) {
                        blk.forward_context(m, xs, b, v);
                    }
                    self.logits(m, 0, xs, b, out);
                }
            });
        }
        (logits, FactorCache { v, zeros: vec![0.0; s * d] })
    }

    /// Post logits [S, 2^b] given the chosen pre parts: their embedding at factorized
    /// position 1 attends to the context's keys and values and its own.
    pub fn decode_post(&self, cache: &FactorCache, pre: &[i64]) -> Vec<f32> {
        let (d, s) = (self.dim(), pre.len());
        let hd = d / self.heads;
        let mut ctx: Vec<f32> = pre.iter().flat_map(|&p| row(&self.pre_emb, p, d)).copied().collect();
        let (mut k, mut v) = (vec![0f32; s * d], vec![0f32; s * d]);
        let mut logits = vec![0f32; s * self.head[1].out_dim()];
        let mut scratch = self.scratch(s);
        {
            let (b, xs, out) = (scratch.buffers(), Shared::new(&mut ctx), Shared::new(&mut logits));
            let (ks, vs) = (Shared::new(&mut k), Shared::new(&mut v));
            self.team.run(|m| {
                for (blk, v0) in self.factorized.iter().zip(&cache.v) {
                    let attend = |r: usize, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32]| {
                        let rows = r * d..(r + 1) * d;
                        let held = Held { k: &cache.zeros[rows.clone()], v: &v0[rows], len: 1, next: Some((k, v)) };
                        attend_sequence(o, q, &held, self.heads, hd)
                    };
                    // SAFETY: as in `step`.
                    unsafe { blk.forward(m, xs, b, ks, vs, &self.factor_rope, 1, &attend) };
                }
                // SAFETY: as in `step`.
                unsafe { self.logits(m, 1, xs, b, out) };
            });
        }
        logits
    }
}
