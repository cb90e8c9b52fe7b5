//! Batched generation: B images in one forward per step, two sequences each with classifier-free
//! guidance (cond, uncond), each image with its own class, merge instruction, kept count K and
//! random stream, over one ragged KV cache where every sequence has its own length
//! (`RaggedKvCache` in host memory on the CPU, stepped by the fused host decoder `HostGpt`;
//! `SlotKvCache` and tensor ops on GPUs). Batch 1, plain decoding (no window, or w ≥ L) and MergeAR all run this loop; a
//! sequence's tokens depend only on its image's request and stream, not on the batch.
use crate::ar::gpt::Gpt;
#[cfg(feature = "flex")]
use crate::ar::host_step::{FactorCache, HostGpt};
use crate::ar::kv_cache::{DenseKvCache, RaggedCache};
use crate::ar::mergear::EvictionPolicy;
use crate::ar::ragged_cache::RaggedKvCache;
use crate::ar::sample::{sample_logits, Generated, SampleOpts};
use crate::ar::slot_cache::SlotKvCache;
use anyhow::{bail, Result};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

/// One image to generate.
#[derive(Clone, Debug)]
pub struct Request {
    pub class: usize,
    /// The merge-instruction index (MergeAR models; `None` for plain models).
    pub merge: Option<usize>,
    /// The kept count K that instruction stands for: it sizes the image's cache under MergeAR.
    pub keep: usize,
    /// Codes to take instead of sampling (teacher forcing, benchmarks), L of them.
    pub forced: Option<Vec<i64>>,
}

/// The images of one batch, in request order, and the KV memory it allocated.
pub struct Batch {
    pub images: Vec<Generated>,
    /// The most bytes the KV cache held allocated at once.
    pub peak_kv_bytes: usize,
}

/// The random stream of image `index` of a run seeded with `seed` (the same stream whatever
/// batch the image runs in).
pub fn image_rng(seed: u64, index: u64) -> StdRng {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&index.to_le_bytes());
    StdRng::from_seed(s)
}

/// Cache slots one sequence needs. A step attends to its own entry from its activations and
/// stores it only after dropping what no later query sees, so a sequence holds what the queries
/// after the current one need: the prefix, then under MergeAR with window w the firsts of the
/// K groups and the w entries of the window, at most the L − 2 fed tokens a later query sees
/// (the last fed token L − 2 is seen by its own query only).
pub fn slots(np: usize, l: usize, keep: usize, window: Option<usize>) -> usize {
    let seen = l.saturating_sub(2);
    np + window.map_or(seen, |w| (keep + w).min(seen))
}

/// Guided logits: uncond + (cond − uncond)·scale for a (cond, uncond) pair, else the row.
fn guided(rows: &[Vec<f32>], scale: f64) -> Vec<f32> {
    match rows {
        [c, u] => c.iter().zip(u).map(|(c, u)| u + (c - u) * scale as f32).collect(),
        _ => rows[0].clone(),
    }
}

fn host_rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, n] = t.dims();
    let v = crate::io::readback::floats(t);
    v.chunks(n).map(|c| c.to_vec()).collect()
}

/// The requests fit the model, one stream each.
fn check(gpt: &Gpt, reqs: &[Request], rngs: usize) -> Result<()> {
    let cfg = &gpt.cfg;
    if reqs.is_empty() || rngs != reqs.len() {
        bail!("a batch needs at least one image and one random stream per image ({} for {})", rngs, reqs.len());
    }
    for r in reqs {
        if r.class >= cfg.class_num {
            bail!("class {} is outside the model's {} classes", r.class, cfg.class_num);
        }
        match r.merge {
            Some(m) if m >= cfg.merge_tokens => {
                bail!("merge instruction {m} is outside the model's {} kept-count candidates", cfg.merge_tokens)
            }
            None if cfg.merge_tokens > 0 => bail!("this MergeAR model needs a merge instruction (kept count)"),
            _ => {}
        }
        if let Some(f) = &r.forced {
            if f.len() != cfg.block_size {
                bail!("forced codes: {} given for L={} tokens", f.len(), cfg.block_size);
            }
        }
    }
    Ok(())
}

/// The stages of one decoding step for a batch of sequences: the pre head, the post head given
/// the chosen pre parts, then the sampled token fed through the spatial blocks over the cache.
trait Decoder {
    fn cache(&mut self) -> &mut dyn RaggedCache;
    /// Pre logits per sequence from the last hidden state.
    fn logits_pre(&mut self) -> Vec<Vec<f32>>;
    /// Post logits per sequence given the chosen pre parts.
    fn logits_post(&mut self, pre: &[i64]) -> Vec<Vec<f32>>;
    /// Feeds one token per sequence at sequence position `pos`.
    fn step(&mut self, pre: &[i64], post: &[i64], pos: usize);
}

/// Any backend: tensor ops over the ragged host cache (CPU) or device slots (GPUs).
struct TensorDecoder<'a, C: RaggedCache> {
    gpt: &'a Gpt,
    cache: C,
    h: Tensor<3>,
    factor: Option<DenseKvCache>,
}

impl<C: RaggedCache> Decoder for TensorDecoder<'_, C> {
    fn cache(&mut self) -> &mut dyn RaggedCache {
        &mut self.cache
    }

    fn logits_pre(&mut self) -> Vec<Vec<f32>> {
        let (logits, factor) = self.gpt.decode_pre(self.h.clone());
        self.factor = Some(factor);
        host_rows(logits)
    }

    fn logits_post(&mut self, pre: &[i64]) -> Vec<Vec<f32>> {
        let factor = self.factor.take().expect("the pre logits come first");
        host_rows(self.gpt.decode_post(factor, pre))
    }

    fn step(&mut self, pre: &[i64], post: &[i64], pos: usize) {
        self.h = self.gpt.step(self.gpt.embed_token(pre, post), &[pos], &mut self.cache);
    }
}

/// The CPU with f32 weights: the fused host step over the ragged cache.
#[cfg(feature = "flex")]
struct HostDecoder {
    gpt: HostGpt,
    cache: RaggedKvCache,
    h: Vec<f32>,
    factor: Option<FactorCache>,
}

#[cfg(feature = "flex")]
impl Decoder for HostDecoder {
    fn cache(&mut self) -> &mut dyn RaggedCache {
        &mut self.cache
    }

    fn logits_pre(&mut self) -> Vec<Vec<f32>> {
        let (logits, factor) = self.gpt.decode_pre(&self.h);
        self.factor = Some(factor);
        split_rows(logits, self.h.len() / self.gpt.dim())
    }

    fn logits_post(&mut self, pre: &[i64]) -> Vec<Vec<f32>> {
        let factor = self.factor.take().expect("the pre logits come first");
        split_rows(self.gpt.decode_post(&factor, pre), pre.len())
    }

    fn step(&mut self, pre: &[i64], post: &[i64], pos: usize) {
        self.h = self.gpt.step(self.gpt.embed(pre, post), pos, &mut self.cache);
    }
}

#[cfg(feature = "flex")]
fn split_rows(v: Vec<f32>, rows: usize) -> Vec<Vec<f32>> {
    let n = v.len() / rows.max(1);
    v.chunks(n.max(1)).map(<[f32]>::to_vec).collect()
}

/// Runs the prefix (class and merge-instruction tokens) into a fresh cache with `caps[s]` slots
/// for sequence s and returns the decoder for the tokens: the fused host step on the CPU with f32
/// weights, tensor ops elsewhere.
fn decoder<'a>(gpt: &'a Gpt, prefix: Tensor<3>, caps: &[usize]) -> Box<dyn Decoder + 'a> {
    let cfg = &gpt.cfg;
    let (layers, heads, hd) = (cfg.spatial_n_layer, cfg.n_head, cfg.dim / cfg.n_head);
    let device = gpt.pre_emb.device();
    let pos: Vec<usize> = (0..cfg.prefix()).collect();
    if !crate::nn::fused::host_kernels(&device) {
        let mut cache = SlotKvCache::new(layers, heads, hd, caps, &device);
        let h = gpt.step(prefix, &pos, &mut cache);
        return Box::new(TensorDecoder { gpt, cache, h, factor: None });
    }
    let mut cache = RaggedKvCache::new(layers, heads, hd, caps);
    let h = gpt.step(prefix, &pos, &mut cache);
    #[cfg(feature = "flex")]
    if h.dtype() == burn::tensor::DType::F32 {
        let h = crate::io::readback::floats(h);
        return Box::new(HostDecoder { gpt: HostGpt::new(gpt), cache, h, factor: None });
    }
    Box::new(TensorDecoder { gpt, cache, h, factor: None })
}

/// Generates every request's image; `window` turns on MergeAR eviction (None keeps every
/// entry); `rngs[i]` is image i's stream; `on_step(images)` runs after every token.
pub fn generate_batch(
    gpt: &Gpt,
    reqs: &[Request],
    window: Option<usize>,
    o: &SampleOpts,
    rngs: &mut [StdRng],
    mut on_step: impl FnMut(usize),
) -> Result<Batch> {
    o.validate()?;
    check(gpt, reqs, rngs.len())?;
    let cfg = &gpt.cfg;
    let (np, l, a_bits) = (cfg.prefix(), cfg.block_size, cfg.factorized_bits[0]);
    // Rows per image: (cond, uncond) with guidance, else cond.
    let rp = if o.cfg != 1.0 { 2 } else { 1 };
    let per_row = |f: &dyn Fn(&Request, usize) -> i64| -> Vec<i64> {
        reqs.iter().flat_map(|r| (0..rp).map(move |i| f(r, i))).collect()
    };
    let labels = per_row(&|r: &Request, i: usize| if i == 0 { r.class as i64 } else { cfg.class_num as i64 });
    let merges = (cfg.merge_tokens > 0).then(|| per_row(&|r: &Request, _: usize| r.merge.unwrap_or(0) as i64));
    let caps: Vec<usize> = reqs.iter().flat_map(|r| std::iter::repeat_n(slots(np, l, r.keep, window), rp)).collect();
    let prefix = gpt.embed_prefix(&labels, merges.as_deref())?;
    let mut dec = decoder(gpt, prefix, &caps);
    let mut policies: Vec<Option<EvictionPolicy>> = reqs.iter().map(|_| window.map(EvictionPolicy::new)).collect();
    let mut images: Vec<Generated> =
        reqs.iter().map(|_| Generated { codes: Vec::with_capacity(l), peak_kv: np, kv_trace: Vec::new() }).collect();
    for j in 0..l {
        // Forced codes replace the samples but every head still runs (benchmarks time the whole step).
        // Images sample in parallel, each from its own stream.
        let pick = |logits: Vec<Vec<f32>>, rngs: &mut [StdRng], part: &(dyn Fn(i64) -> i64 + Sync)| -> Vec<i64> {
            rngs.par_iter_mut()
                .enumerate()
                .map(|(i, rng)| {
                    let s = sample_logits(&guided(&logits[i * rp..(i + 1) * rp], o.cfg), o, rng) as i64;
                    reqs[i].forced.as_ref().map_or(s, |f| part(f[j]))
                })
                .collect()
        };
        let pre = pick(dec.logits_pre(), &mut *rngs, &|c: i64| c & ((1 << a_bits) - 1));
        let pre_rows: Vec<i64> = pre.iter().flat_map(|&p| std::iter::repeat_n(p, rp)).collect();
        let post = pick(dec.logits_post(&pre_rows), &mut *rngs, &|c: i64| c >> a_bits);
        let post_rows: Vec<i64> = post.iter().flat_map(|&p| std::iter::repeat_n(p, rp)).collect();
        for (i, img) in images.iter_mut().enumerate() {
            img.codes.push(pre[i] + (post[i] << a_bits));
        }
        on_step(reqs.len());
        if j + 1 == l {
            break;
        }
        // Entries that only token j's query still sees: dropped once it attended, before its
        // own entry is stored (the last fed token's entry is never stored).
        let held = dec.cache().lens();
        let mut retired = vec![Vec::new(); reqs.len() * rp];
        for (i, p) in policies.iter_mut().enumerate() {
            if let Some(p) = p {
                // The policy counts image tokens; the cache's entries start with the prefix.
                let e: Vec<usize> = p.push(j, images[i].codes[j]).into_iter().map(|x| np + x).collect();
                retired[i * rp..(i + 1) * rp].fill(e);
            }
        }
        if j + 2 == l {
            for (r, &len) in retired.iter_mut().zip(&held) {
                if r.last() != Some(&len) {
                    r.push(len);
                }
            }
        }
        dec.cache().retire(&retired);
        dec.step(&pre_rows, &post_rows, np + j);
        let lens = dec.cache().lens();
        for (i, img) in images.iter_mut().enumerate() {
            img.kv_trace.push(lens[i * rp]);
            img.peak_kv = img.peak_kv.max(lens[i * rp]);
        }
    }
    Ok(Batch { images, peak_kv_bytes: dec.cache().peak_bytes() })
}
