//! Batched generation: B images in one forward per step, two sequences each with classifier-free
//! guidance (cond, uncond), each image with its own class, merge instruction, kept count K and
//! random stream, over one ragged KV cache where every sequence has its own length
//! (`RaggedKvCache` in host memory on the CPU, `SlotKvCache` on GPUs). Batch 1, plain decoding (no window, or w ≥ L) and MergeAR all run this loop; a
//! sequence's tokens depend only on its image's request and stream, not on the batch.
use crate::ar::gpt::Gpt;
use crate::ar::kv_cache::RaggedCache;
use crate::ar::mergear::EvictionPolicy;
use crate::ar::ragged_cache::RaggedKvCache;
use crate::ar::sample::{sample_logits, Generated, SampleOpts};
use crate::ar::slot_cache::SlotKvCache;
use anyhow::{bail, Result};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

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
    let (heads, d) = (cfg.n_head, cfg.dim);
    let device = gpt.pre_emb.device();
    let mut cache: Box<dyn RaggedCache> = if crate::nn::fused::host_kernels(&device) {
        Box::new(RaggedKvCache::new(cfg.spatial_n_layer, heads, d / heads, &caps))
    } else {
        Box::new(SlotKvCache::new(cfg.spatial_n_layer, heads, d / heads, &caps, &device))
    };
    let prefix_pos: Vec<usize> = (0..np).collect();
    let mut h = gpt.step(gpt.embed_prefix(&labels, merges.as_deref())?, &prefix_pos, cache.as_mut());
    let mut policies: Vec<Option<EvictionPolicy>> = reqs.iter().map(|_| window.map(EvictionPolicy::new)).collect();
    let mut images: Vec<Generated> =
        reqs.iter().map(|_| Generated { codes: Vec::with_capacity(l), peak_kv: np, kv_trace: Vec::new() }).collect();
    for j in 0..l {
        // Forced codes replace the samples but every head still runs (benchmarks time the whole step).
        let pick = |logits: Vec<Vec<f32>>, rngs: &mut [StdRng], part: &dyn Fn(i64) -> i64| -> Vec<i64> {
            (0..reqs.len())
                .map(|i| {
                    let s = sample_logits(&guided(&logits[i * rp..(i + 1) * rp], o.cfg), o, &mut rngs[i]) as i64;
                    reqs[i].forced.as_ref().map_or(s, |f| part(f[j]))
                })
                .collect()
        };
        let (logits, factor) = gpt.decode_pre(h.clone());
        let pre = pick(host_rows(logits), &mut *rngs, &|c: i64| c & ((1 << a_bits) - 1));
        let pre_rows: Vec<i64> = pre.iter().flat_map(|&p| std::iter::repeat_n(p, rp)).collect();
        let post = pick(host_rows(gpt.decode_post(factor, &pre_rows)), &mut *rngs, &|c: i64| c >> a_bits);
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
        let held = cache.lens();
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
        cache.retire(&retired);
        h = gpt.step(gpt.embed_token(&pre_rows, &post_rows), &[np + j], cache.as_mut());
        let lens = cache.lens();
        for (i, img) in images.iter_mut().enumerate() {
            img.kv_trace.push(lens[i * rp]);
            img.peak_kv = img.peak_kv.max(lens[i * rp]);
        }
    }
    Ok(Batch { images, peak_kv_bytes: cache.peak_bytes() })
}
