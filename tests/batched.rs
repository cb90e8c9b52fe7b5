//! Batched, guided generation over the ragged KV cache: batched == one at a time token for
//! token, MergeAR with w ≥ L == plain decoding, the ragged single-query kernel == the generic
//! attention, the GPU builds' slot cache == the CPU's ragged cache, and the caches' memory
//! accounting and compaction.
mod common;

use burn::prelude::*;
use mergevq::ar::batched::{generate_batch, image_rng, slots, Request};
use mergevq::ar::gpt::Gpt;
use mergevq::ar::kv_cache::{KvCache, RaggedCache};
use mergevq::ar::ragged_attention::{attend_one, Held};
use mergevq::ar::ragged_cache::RaggedKvCache;
use mergevq::ar::sample::{sample_logits, SampleOpts};
use mergevq::ar::slot_cache::SlotKvCache;
use mergevq::nn::attention;

fn model(merge_tokens: usize, block: usize) -> Gpt {
    common::tiny_gpt(merge_tokens, block, 48, 3)
}

/// Four images with their own class, merge instruction and K.
fn requests() -> Vec<Request> {
    (0..4).map(|i| Request { class: i % 4, merge: Some(i % 3), keep: 4 + 3 * i, forced: None }).collect()
}

fn codes(gpt: &Gpt, reqs: &[Request], window: Option<usize>, o: &SampleOpts, seed: u64, first: u64) -> Vec<Vec<i64>> {
    let mut rngs: Vec<_> = (0..reqs.len() as u64).map(|i| image_rng(seed, first + i)).collect();
    let b = generate_batch(gpt, reqs, window, o, &mut rngs, |_| {}).unwrap();
    b.images.into_iter().map(|g| g.codes).collect()
}

#[test]
fn batched_equals_one_at_a_time() {
    let gpt = model(3, 36);
    let reqs = requests();
    for (cfg, window) in [(1.0, Some(2)), (1.5, Some(2)), (1.5, None), (1.0, None)] {
        let o = SampleOpts { temperature: 1.0, top_k: 0, top_p: 1.0, cfg };
        let batched = codes(&gpt, &reqs, window, &o, 11, 0);
        for (i, r) in reqs.iter().enumerate() {
            let alone = codes(&gpt, std::slice::from_ref(r), window, &o, 11, i as u64);
            assert_eq!(alone[0], batched[i], "cfg {cfg} window {window:?} image {i}");
        }
        // Split 3 + 1: the same again.
        let mut split = codes(&gpt, &reqs[..3], window, &o, 11, 0);
        split.extend(codes(&gpt, &reqs[3..], window, &o, 11, 3));
        assert_eq!(split, batched, "cfg {cfg} window {window:?}");
        // The images differ from one another (their own streams and instructions).
        assert_ne!(batched[0], batched[1]);
    }
}

#[test]
fn thread_count_does_not_change_the_tokens() {
    // The host step's team takes the pool's size: 1, 2 and 3 threads split rows, panels and
    // sequences differently, and every sequence still gets the same bits.
    let gpt = model(3, 36);
    let reqs = requests();
    let o = SampleOpts { temperature: 1.0, top_k: 0, top_p: 1.0, cfg: 1.5 };
    let run = |threads: usize, window: Option<usize>| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| codes(&gpt, &reqs, window, &o, 5, 0))
    };
    for window in [Some(2), None] {
        let one = run(1, window);
        assert_eq!(run(2, window), one, "window {window:?}");
        assert_eq!(run(3, window), one, "window {window:?}");
    }
}

#[test]
fn mergear_with_a_window_of_l_is_plain_decoding() {
    let gpt = model(3, 25);
    let reqs = requests();
    for cfg in [1.0, 2.0] {
        let o = SampleOpts { temperature: 0.9, top_k: 5, top_p: 1.0, cfg };
        assert_eq!(codes(&gpt, &reqs, Some(25), &o, 3, 0), codes(&gpt, &reqs, None, &o, 3, 0), "cfg {cfg}");
        assert_eq!(codes(&gpt, &reqs, Some(1000), &o, 3, 0), codes(&gpt, &reqs, None, &o, 3, 0), "cfg {cfg}");
    }
    // Slots: w ≥ L − 1 − K is the plain cache; a small window holds prefix + K + w + 1.
    assert_eq!(slots(2, 25, 4, Some(25)), slots(2, 25, 4, None));
    assert_eq!(slots(2, 25, 4, None), 2 + 23);
    // Against plain's L slots (prefix 2 + L − 2): exactly (K + w + 2)/L.
    assert_eq!(slots(2, 1024, 256, Some(2)), 256 + 2 + 2);
    assert_eq!(slots(2, 1024, 256, None), 1024);
}

/// Rows of a seeded uniform(−1, 1) generator.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn ragged_kernel_matches_generic_attention_on_odd_shapes() {
    let device = mergevq::device();
    for (heads, hd, lens) in [(3usize, 12usize, vec![1usize, 7, 13]), (1, 4, vec![5]), (5, 20, vec![2, 1, 31, 9])] {
        let (s, d) = (lens.len(), heads * hd);
        let q = noise(s * d, 1);
        let kv: Vec<(Vec<f32>, Vec<f32>)> =
            lens.iter().enumerate().map(|(i, &n)| (noise(n * d, 10 + i as u64), noise(n * d, 20 + i as u64))).collect();
        let held: Vec<Held> = kv.iter().zip(&lens).map(|((k, v), &len)| Held { k, v, len, next: None }).collect();
        let fast = attend_one(&q, &held, heads, hd);
        // The generic path, one sequence at a time: [1, H, len, hd] from slot-major [len, H·hd].
        for (i, &len) in lens.iter().enumerate() {
            let t = |x: &[f32]| {
                Tensor::<3>::from_data(TensorData::new(x.to_vec(), [len, heads, hd]), &device)
                    .swap_dims(0, 1)
                    .unsqueeze::<4>()
            };
            let qi =
                Tensor::<4>::from_data(TensorData::new(q[i * d..(i + 1) * d].to_vec(), [1, heads, 1, hd]), &device);
            let o = attention(qi, t(&kv[i].0), t(&kv[i].1), None);
            let o: Vec<f32> = o.into_data().convert::<f32>().try_into_vec().unwrap();
            for (a, b) in fast[i * d..(i + 1) * d].iter().zip(&o) {
                assert!((a - b).abs() < 1e-5, "heads {heads} hd {hd} len {len}: {a} vs {b}");
            }
        }
    }
}

fn entries(c: &mut RaggedKvCache, seqs: usize, heads: usize, hd: usize, values: &[f32]) {
    let device = mergevq::device();
    let k = Tensor::<4>::from_data(TensorData::new(values.to_vec(), [seqs, heads, 1, hd]), &device);
    c.append(0, k.clone(), k);
}

#[test]
fn cache_memory_is_the_allocated_slots() {
    let (heads, hd) = (2, 4);
    let caps = [3usize, 5, 1];
    let mut c = RaggedKvCache::new(1, heads, hd, &caps);
    // Keys and values, f32, one layer: 2 · 4 B · slots · H · hd.
    assert_eq!(c.allocated_bytes(), 2 * 4 * 9 * heads * hd);
    assert_eq!(c.peak_bytes(), c.allocated_bytes());
    // A step appends in place: no allocation while a sequence has free slots.
    entries(&mut c, 3, heads, hd, &noise(3 * heads * hd, 1));
    assert_eq!(c.allocated_bytes(), 2 * 4 * 9 * heads * hd);
    assert_eq!(c.lens(), vec![1, 1, 1]);
    // Sequence 2 outgrows its one slot: it gets twice as many, and the peak counts them.
    entries(&mut c, 3, heads, hd, &noise(3 * heads * hd, 2));
    assert_eq!(c.capacity(), vec![3, 5, 2]);
    assert_eq!(c.peak_bytes(), 2 * 4 * 10 * heads * hd);
}

#[test]
fn eviction_compacts_in_order() {
    let (heads, hd) = (1, 4);
    let mut c = RaggedKvCache::new(1, heads, hd, &[6, 6]);
    for t in 0..5 {
        let v: Vec<f32> = (0..2 * hd).map(|i| (t * 10 + i / hd) as f32).collect();
        entries(&mut c, 2, heads, hd, &v);
    }
    c.evict(&[vec![1, 3], vec![]]);
    assert_eq!(c.lens(), vec![3, 5]);
    // The attend path reads what is held: sequence 0 keeps steps 0, 2, 4 (values 0, 20, 40).
    let device = mergevq::device();
    let a = c.append(0, Tensor::zeros([2, 1, 1, hd], &device), Tensor::zeros([2, 1, 1, hd], &device));
    let k: Vec<f32> = a.k.into_data().convert::<f32>().try_into_vec().unwrap();
    let held0: Vec<f32> = (0..4).map(|t| k[t * hd]).collect();
    assert_eq!(held0, vec![0.0, 20.0, 40.0, 0.0]);
    let held1: Vec<f32> = (0..6).map(|t| k[(6 + t) * hd]).collect();
    assert_eq!(held1, vec![1.0, 11.0, 21.0, 31.0, 41.0, 0.0]);
    // The mask closes sequence 0's padding (slots 4, 5).
    let bias: Vec<f32> = a.bias.unwrap().into_data().convert::<f32>().try_into_vec().unwrap();
    assert!(bias[..4].iter().all(|&b| b == 0.0) && bias[4..6].iter().all(|&b| b == f32::NEG_INFINITY));
    assert!(bias[6..].iter().all(|&b| b == 0.0));
}

/// A decoding step attends to its own entry before storing it, and drops the retired entries
/// first: the CPU kernel and the generic (padded, masked) path agree on the output and on what
/// the cache then holds, and a retired step entry is never stored.
#[test]
fn retired_entries_leave_before_the_step_is_stored() {
    let device = mergevq::device();
    let (heads, hd, seqs) = (2usize, 8usize, 3usize);
    let d = heads * hd;
    let fill = |c: &mut RaggedKvCache| {
        for t in 0..4 {
            entries(c, seqs, heads, hd, &noise(seqs * d, 40 + t));
        }
    };
    let (mut fast, mut generic) =
        (RaggedKvCache::new(1, heads, hd, &[4; 3]), RaggedKvCache::new(1, heads, hd, &[4; 3]));
    fill(&mut fast);
    fill(&mut generic);
    // Sequence 0 drops entry 1, sequence 1 its step entry (index 4), sequence 2 nothing.
    let retired = [vec![1], vec![4], vec![]];
    fast.retire(&retired);
    generic.retire(&retired);
    let t = |x: Vec<f32>| Tensor::<4>::from_data(TensorData::new(x, [seqs, heads, 1, hd]), &device);
    let (q, k, v) = (noise(seqs * d, 1), noise(seqs * d, 2), noise(seqs * d, 3));
    let a = fast.attend(0, t(q.clone()), t(k.clone()), t(v.clone()));
    let g = generic.append(0, t(k), t(v));
    let b = attention(t(q), g.k, g.v, g.bias);
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.into_data().convert::<f32>().try_into_vec().unwrap(),
        b.into_data().convert::<f32>().try_into_vec().unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    assert_eq!(fast.lens(), vec![4, 4, 5]);
    assert_eq!(generic.lens(), vec![4, 4, 5]);
    // No slot was added for the step: only sequence 2 (nothing retired) outgrew its four.
    assert_eq!(fast.capacity(), vec![4, 4, 8]);
}

/// The slot cache (GPU builds: slots reused in place, a mask) attends like the ragged cache
/// (CPU: compaction, its own kernel) through a prefix chunk, one-query steps, retired entries
/// (held ones and a step's own), an immediate eviction and a sequence outgrowing its slots.
#[test]
fn slot_cache_attends_like_the_ragged_cache() {
    let device = mergevq::device();
    let (heads, hd, layers) = (2usize, 8usize, 2usize);
    let caps = [4usize, 6, 3];
    let seqs = caps.len();
    let mut ragged = RaggedKvCache::new(layers, heads, hd, &caps);
    let mut slot = SlotKvCache::new(layers, heads, hd, &caps, &device);
    // Keys, values f32, every layer: 2 · 4 B · S · (max cap + 1) · H · hd.
    assert_eq!(slot.allocated_bytes(), 2 * 4 * layers * seqs * 7 * heads * hd);
    let t = |x: Vec<f32>, n: usize| Tensor::<4>::from_data(TensorData::new(x, [seqs, heads, n, hd]), &device);
    for step in 0..8u64 {
        let n = if step == 0 { 2 } else { 1 };
        let lens = ragged.lens();
        if step >= 2 {
            // Sequence 0 drops its oldest image entry, sequence 1 its own step entry once.
            let retired = [vec![2], if step == 3 { vec![lens[1]] } else { vec![] }, vec![]];
            ragged.retire(&retired);
            slot.retire(&retired);
        }
        if step == 5 {
            ragged.evict(&[vec![], vec![], vec![1]]);
            slot.evict(&[vec![], vec![], vec![1]]);
        }
        for layer in 0..layers {
            let size = seqs * heads * n * hd;
            let (q, k, v) = (noise(size, 100 * step + 1), noise(size, 100 * step + 2), noise(size, 100 * step + 3));
            let a = ragged.attend(layer, t(q.clone(), n), t(k.clone(), n), t(v.clone(), n));
            let b = slot.attend(layer, t(q, n), t(k, n), t(v, n));
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.into_data().convert::<f32>().try_into_vec().unwrap(),
                b.into_data().convert::<f32>().try_into_vec().unwrap(),
            );
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5, "step {step} layer {layer}: {x} vs {y}");
            }
        }
        assert_eq!(ragged.lens(), slot.lens(), "step {step}");
    }
    // Sequence 2 outgrew the common capacity: the slot cache grew for everyone, and counts it.
    assert!(slot.peak_bytes() > 2 * 4 * layers * seqs * 7 * heads * hd);
}

#[test]
fn sampling_follows_the_tempered_softmax_and_its_filters() {
    let logits = [0.5f32, 2.0, -1.0, 1.0, 0.0];
    let softmax = |t: f64, keep: &[usize]| -> Vec<f64> {
        let e: Vec<f64> = (0..5).map(|i| if keep.contains(&i) { (logits[i] as f64 / t).exp() } else { 0.0 }).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    };
    let n = 60_000;
    let freq = |o: &SampleOpts| -> Vec<f64> {
        let mut rng = image_rng(9, 0);
        let mut c = [0usize; 5];
        (0..n).for_each(|_| c[sample_logits(&logits, o, &mut rng)] += 1);
        c.iter().map(|&k| k as f64 / n as f64).collect()
    };
    let opts = |temperature, top_k, top_p| SampleOpts { temperature, top_k, top_p, cfg: 1.0 };
    // Ranked: 1 (2.0), 3 (1.0), 0 (0.5), 4 (0.0), 2 (−1.0). At T = 0.7, softmax ≈ .70 .17 .08 .04 .01.
    let t07 = softmax(0.7, &[0, 1, 2, 3, 4]);
    let cases = [
        (opts(0.7, 0, 1.0), t07.clone()),
        (opts(1.3, 0, 1.0), softmax(1.3, &[0, 1, 2, 3, 4])),
        (opts(0.7, 2, 1.0), softmax(0.7, &[1, 3])),
        // Top-p 0.9 at T = 0.7: 1 and 3 hold ≈ .87 < .9, so 0 joins.
        (opts(0.7, 0, 0.9), softmax(0.7, &[1, 3, 0])),
        (opts(0.7, 4, 0.5), softmax(0.7, &[1])),
    ];
    assert!(t07[1] + t07[3] < 0.9 && t07[1] + t07[3] + t07[0] > 0.9 && t07[1] > 0.5);
    for (o, want) in cases {
        let got = freq(&o);
        for i in 0..5 {
            assert!((got[i] - want[i]).abs() < 0.01, "{o:?}: index {i} drawn {:.4}, softmax {:.4}", got[i], want[i]);
        }
    }
}
