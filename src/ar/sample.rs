//! Sampling from the GPT: temperature, top-k, top-p, classifier-free guidance, KV cache, and
//! MergeAR's cache eviction.
use crate::ar::gpt::Gpt;
use crate::ar::kv_cache::{DenseKvCache, KvCache};
use crate::ar::mergear::EvictionPolicy;
use crate::validate::{check_float, FloatRange};
use anyhow::{bail, Result};
use burn::prelude::*;
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

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [b, n] = t.dims();
    let v: Vec<f32> = t.into_data().convert::<f32>().try_into_vec().expect("f32");
    (0..b).map(|i| v[i * n..(i + 1) * n].to_vec()).collect()
}

/// Guided logits of batch row 0 (cond) against row 1 (uncond) when CFG is on.
fn guided(l: &[Vec<f32>], cfg: f64) -> Vec<f32> {
    if l.len() == 2 {
        l[0].iter().zip(&l[1]).map(|(c, u)| u + (c - u) * cfg as f32).collect()
    } else {
        l[0].clone()
    }
}

/// Generates one image of class `class`. `merge`: the merge-instruction index (MergeAR
/// models); `window`: MergeAR cache eviction (None keeps every entry, as plain AR);
/// `forced`: take these codes instead of sampling (teacher forcing, benchmarks).
pub fn generate(
    gpt: &Gpt,
    class: usize,
    merge: Option<usize>,
    window: Option<usize>,
    o: &SampleOpts,
    rng: &mut StdRng,
    forced: Option<&[i64]>,
) -> Result<Generated> {
    let cfg = &gpt.cfg;
    o.validate()?;
    if class >= cfg.class_num {
        bail!("class {class} is outside the model's {} classes", cfg.class_num);
    }
    if let Some(m) = merge {
        if m >= cfg.merge_tokens {
            bail!("merge instruction {m} is outside the model's {} kept-count candidates", cfg.merge_tokens);
        }
    }
    let guided_batch = o.cfg != 1.0;
    let labels: Vec<i64> = if guided_batch { vec![class as i64, cfg.class_num as i64] } else { vec![class as i64] };
    let b = labels.len();
    let merges: Option<Vec<i64>> = merge.map(|m| vec![m as i64; b]);
    let np = cfg.prefix();
    let l = cfg.block_size;
    let a_bits = cfg.factorized_bits[0];
    let mut cache = DenseKvCache::new(cfg.spatial_n_layer, b);
    let prefix_pos: Vec<usize> = (0..np).collect();
    let mut h = gpt.step(gpt.embed_prefix(&labels, merges.as_deref())?, &prefix_pos, &mut cache);
    let mut policy = window.map(EvictionPolicy::new);
    let mut codes = Vec::with_capacity(l);
    let mut trace = Vec::with_capacity(l);
    for j in 0..l {
        // Forced codes replace the samples but every head still runs (benchmarks time the whole step).
        let sampled = sample_logits(&guided(&rows(gpt.decode_pre(h.clone())), o.cfg), o, rng) as i64;
        let pre = forced.map_or(sampled, |f| f[j] & ((1 << a_bits) - 1));
        let sampled = sample_logits(&guided(&rows(gpt.decode_post(h.clone(), &vec![pre; b])), o.cfg), o, rng) as i64;
        let post = forced.map_or(sampled, |f| f[j] >> a_bits);
        let code = pre + (post << a_bits);
        codes.push(code);
        if j + 1 == l {
            break;
        }
        h = gpt.step(gpt.embed_token(&vec![pre; b], &vec![post; b]), &[np + j], &mut cache);
        if let Some(p) = policy.as_mut() {
            // The policy counts image tokens; the cache's entries start with the prefix.
            let evicted: Vec<usize> = p.push(j, code).into_iter().map(|i| np + i).collect();
            cache.evict(&vec![evicted; b]);
        }
        trace.push(cache.lens()[0]);
    }
    let peak_kv = trace.iter().copied().max().unwrap_or(np);
    Ok(Generated { codes, peak_kv, kv_trace: trace })
}
