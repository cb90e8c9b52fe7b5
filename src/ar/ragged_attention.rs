//! Single-query attention over ragged lengths, the CPU kernel of a decoding step: every
//! sequence has one new query per head and its own number of cached entries, read in place
//! from the ragged KV cache (no padding, no copy), then the step's own entry, read from the
//! step's activations (it needs no cache slot: the cache stores it after the step attended).
//! One task per sequence walks its entries in slot order, every head from the same contiguous
//! row, so the cache streams from memory once per layer; a sequence's result does not depend
//! on the batch it runs in.
use crate::nn::fused::exp;
use rayon::prelude::*;

/// The keys and values one sequence holds in one layer, slot-major [len, H·hd], and the
/// step's own entry [H·hd] (attended last) if it is not among them.
pub struct Held<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub len: usize,
    pub next: Option<(&'a [f32], &'a [f32])>,
}

impl Held<'_> {
    /// Row j of the keys and values (the step's entry after the held ones).
    #[inline(always)]
    fn row(&self, j: usize, d: usize) -> (&[f32], &[f32]) {
        match self.next {
            Some(kv) if j == self.len => kv,
            _ => (&self.k[j * d..(j + 1) * d], &self.v[j * d..(j + 1) * d]),
        }
    }

    #[inline(always)]
    fn entries(&self) -> usize {
        self.len + self.next.is_some() as usize
    }
}

/// o = softmax(q·Kᵀ/√hd)·V for q [S, H, hd] (one query per sequence and head) against each
/// sequence's entries; returns o [S, H, hd].
pub fn attend_one(q: &[f32], held: &[Held], heads: usize, hd: usize) -> Vec<f32> {
    let d = heads * hd;
    let mut out = vec![0f32; held.len() * d];
    out.par_chunks_mut(d)
        .zip(q.par_chunks(d))
        .zip(held)
        .for_each(|((o, q), seq)| attend_sequence(o, q, seq, heads, hd));
    out
}

/// One sequence's o [H, hd] (zeroed by the caller) for its query q [H, hd], in AVX2 registers
/// when the CPU has them.
pub fn attend_sequence(o: &mut [f32], q: &[f32], seq: &Held, heads: usize, hd: usize) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were detected.
        unsafe { attend_seq_avx2(o, q, seq, heads, hd) };
        return;
    }
    attend_seq(o, q, seq, heads, hd)
}

/// The same operations as [`attend_seq`] in 8-lane registers (no fused multiply-adds: the
/// results equal the baseline build's).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_seq_avx2(o: &mut [f32], q: &[f32], seq: &Held, heads: usize, hd: usize) {
    attend_seq(o, q, seq, heads, hd)
}

/// One sequence: o [H, hd] for its query q [H, hd].
#[inline(always)]
fn attend_seq(o: &mut [f32], q: &[f32], seq: &Held, heads: usize, hd: usize) {
    let d = heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let n = seq.entries();
    // s[h, j] = q_h·k_j,h/√hd, head-major so each head's softmax runs over one slice.
    let mut s = vec![0f32; heads * n];
    for j in 0..n {
        let (k, _) = seq.row(j, d);
        for h in 0..heads {
            s[h * n + j] = dot(&q[h * hd..(h + 1) * hd], &k[h * hd..(h + 1) * hd]) * scale;
        }
    }
    for p in s.chunks_mut(n.max(1)) {
        let m = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        p.iter_mut().for_each(|x| *x = exp(*x - m));
        let inv = 1.0 / p.iter().sum::<f32>();
        p.iter_mut().for_each(|x| *x *= inv);
    }
    // o_h = Σ_j p[h, j]·v_j,h, again one row per entry.
    for j in 0..n {
        let (_, v) = seq.row(j, d);
        for h in 0..heads {
            let pj = s[h * n + j];
            o[h * hd..(h + 1) * hd].iter_mut().zip(&v[h * hd..(h + 1) * hd]).for_each(|(a, b)| *a += pj * b);
        }
    }
}

/// A dot product in eight independent lanes (vectorises; the order is fixed by the length).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a[chunks..].iter().zip(&b[chunks..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}
