//! Sampling from the GPT: temperature, top-k, top-p, classifier-free guidance; one image at a
//! time through the batched decoder (`batched`).
use crate::ar::batched::{generate_batch, Request};
use crate::ar::gpt::Gpt;
use crate::validate::{check_float, FloatRange};
use anyhow::Result;
use rand::rngs::StdRng;
use rand::Rng;

#[derive(Clone, Debug)]
pub struct SampleOpts {
    pub temperature: f64,
    /// Keep the k most likely codes (0: all).
    pub top_k: usize,
    /// Keep the smallest set with cumulative probability ≥ p (1: all).
    pub top_p: f64,
    /// Classifier-free guidance scale (1: off): uncond + (cond − uncond)·scale.
    pub cfg: f64,
}

impl Default for SampleOpts {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 1.0, cfg: 1.0 }
    }
}

impl SampleOpts {
    /// Temperature > 0, top-p in (0, 1] and a finite guidance scale, all finite.
    pub fn validate(&self) -> Result<()> {
        check_float("temperature", self.temperature, FloatRange::POSITIVE)?;
        check_float("top-p", self.top_p, FloatRange::PROBABILITY)?;
        check_float("cfg (guidance scale)", self.cfg, FloatRange::FINITE)?;
        Ok(())
    }
}

/// One generated image's codes (full raster, L entries) and cache statistics.
pub struct Generated {
    pub codes: Vec<i64>,
    /// Largest number of cached entries (prefix included) held between steps.
    pub peak_kv: usize,
    /// Cached entries after each token (for checks).
    pub kv_trace: Vec<usize>,
}

/// Draws one index from logits with the options (on the host).
pub fn sample_logits(logits: &[f32], o: &SampleOpts, rng: &mut StdRng) -> usize {
    let t = o.temperature.max(1e-6) as f32;
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    // Ranking is only needed to filter (top-k, top-p).
    if o.top_k > 0 || o.top_p < 1.0 {
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    } else {
        let best = idx.iter().copied().max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0);
        idx.swap(0, best);
    }
    if o.top_k > 0 {
        idx.truncate(o.top_k.max(1));
    }
    let m = logits[idx[0]] / t;
    let mut p: Vec<f64> = idx.iter().map(|&i| ((logits[i] / t - m) as f64).exp()).collect();
    let s: f64 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= s);
    if o.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = p.len();
        for (i, v) in p.iter().enumerate() {
            acc += v;
            if acc >= o.top_p {
                keep = i + 1;
                break;
            }
        }
        p.truncate(keep);
        idx.truncate(keep);
        let s: f64 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= s);
    }
    let mut u: f64 = rng.random();
    for (i, v) in p.iter().enumerate() {
        if u < *v {
            return idx[i];
        }
        u -= v;
    }
    idx[p.len() - 1]
}

/// Generates one image of class `class`: a batch of one through [`generate_batch`], the
/// code path of every batch. `merge`: the merge-instruction index (MergeAR models); `window`:
/// MergeAR cache eviction (None keeps every entry, as plain AR); `forced`: take these codes
/// instead of sampling (teacher forcing, benchmarks).
pub fn generate(
    gpt: &Gpt,
    class: usize,
    merge: Option<usize>,
    window: Option<usize>,
    o: &SampleOpts,
    rng: &mut StdRng,
    forced: Option<&[i64]>,
) -> Result<Generated> {
    let req = Request { class, merge, keep: gpt.cfg.block_size, forced: forced.map(<[i64]>::to_vec) };
    let b = generate_batch(gpt, &[req], window, o, std::slice::from_mut(rng), |_| {})?;
    Ok(b.images.into_iter().next().expect("one image per request"))
}
