//! Sampling from the GPT: temperature, top-k, top-p, classifier-free guidance; one image at a
//! time through the batched decoder (`batched`).
use crate::ar::batched::{generate_batch, Request};
use crate::ar::gpt::Gpt;
use crate::nn::fused::exp;
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

/// Draws one index from logits with the options (on the host): softmax(logits / T) over the
/// candidates (all, or the top-k, then the top-p of them, most likely first), by inverting its
/// cumulative sum at a uniform draw.
pub fn sample_logits(logits: &[f32], o: &SampleOpts, rng: &mut StdRng) -> usize {
    let t = o.temperature.max(1e-6) as f32;
    // Ranking is only needed to filter (top-k, top-p); unfiltered, the candidates are all
    // indices in order.
    let ranked = (o.top_k > 0 || o.top_p < 1.0).then(|| {
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        idx.truncate(if o.top_k > 0 { o.top_k } else { idx.len() });
        idx
    });
    let index = |i: usize| ranked.as_ref().map_or(i, |r| r[i]);
    let values: Vec<f32> = match &ranked {
        Some(r) => r.iter().map(|&i| logits[i]).collect(),
        None => logits.to_vec(),
    };
    // Unnormalised probabilities e^(l/T − max/T) (vectorised exp; exactly 0 where f32's e^x
    // underflows, so a masked −∞ logit is never drawn), summed in f64.
    let m = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) / t;
    let p: Vec<f32> = values
        .iter()
        .map(|&l| {
            let z = l / t - m;
            exp(z) * (z >= -87.0) as u32 as f32
        })
        .collect();
    let mut total: f64 = p.iter().map(|&v| v as f64).sum();
    let mut keep = p.len();
    if o.top_p < 1.0 {
        // The smallest prefix of the ranked candidates with probability ≥ top-p.
        let mut acc = 0.0;
        for (i, &v) in p.iter().enumerate() {
            acc += v as f64;
            if acc >= o.top_p * total {
                keep = i + 1;
                total = acc;
                break;
            }
        }
    }
    let target = rng.random::<f64>() * total;
    let mut acc = 0.0;
    for (i, &v) in p[..keep].iter().enumerate() {
        acc += v as f64;
        if target < acc {
            return index(i);
        }
    }
    index(keep.max(1) - 1)
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
