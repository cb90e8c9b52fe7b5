//! Single-query attention over ragged lengths, the CPU kernel of a decoding step: every
//! sequence has one new query per head and its own number of cached entries, read in place
//! from the ragged KV cache (no padding, no copy). Each (sequence, head) is computed alone by
//! the same loop, so a sequence's result does not depend on the batch it runs in.
use crate::nn::fused::exp;
use rayon::prelude::*;

/// The keys and values one sequence holds in one layer, slot-major [len, H·hd].
pub struct Held<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub len: usize,
}

/// o = softmax(q·Kᵀ/√hd)·V for q [S, H, hd] (one query per sequence and head) against each
/// sequence's held entries; returns o [S, H, hd].
pub fn attend_one(q: &[f32], held: &[Held], heads: usize, hd: usize) -> Vec<f32> {
    let d = heads * hd;
    let mut out = vec![0f32; held.len() * d];
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(hd).enumerate().for_each(|(sh, o)| {
        let (s, h) = (sh / heads, sh % heads);
        let qh = &q[s * d + h * hd..s * d + (h + 1) * hd];
        let seq = &held[s];
        // s_j = q·k_j/√hd, o = softmax(s)·V (scaled dot-product attention).
        let scores: Vec<f32> =
            (0..seq.len).map(|j| dot(qh, &seq.k[j * d + h * hd..j * d + (h + 1) * hd]) * scale).collect();
        let mut p = scores;
        let m = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Softmax numerators in one vectorised pass, then o = Σ_j p_j v_j.
        p.iter_mut().for_each(|x| *x = exp(*x - m));
        let sum: f32 = p.iter().sum();
        for (j, pj) in p.iter().enumerate() {
            let vj = &seq.v[j * d + h * hd..j * d + (h + 1) * hd];
            o.iter_mut().zip(vj).for_each(|(a, b)| *a += pj * b);
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|a| *a *= inv);
    });
    out
}

/// A dot product in eight independent lanes (vectorises; the order is fixed by the length).
#[inline]
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
