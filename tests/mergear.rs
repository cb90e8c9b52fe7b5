//! MergeAR: the sparse mask, cache eviction bounds, and equivalences with plain AR.
mod common;

use burn::prelude::*;
use mergevq::ar::gpt::{causal_bias, Gpt};
use mergevq::ar::kv_cache::{DenseKvCache, KvCache};
use mergevq::ar::mergear::{allowed, first_of_group, mergear_bias};
use mergevq::ar::sample::{generate, SampleOpts};
use rand::SeedableRng;

fn model(merge_tokens: usize, block: usize) -> Gpt {
    common::tiny_gpt(merge_tokens, block, 32, 2)
}

fn host(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

#[test]
fn paper_nine_token_example() {
    // Groups {1,2},{3,4},{5,6,7},{8,9} (1-based), window 2.
    let first = first_of_group(&[0, 0, 1, 1, 2, 2, 2, 3, 3]);
    let sees = |q: usize| -> Vec<usize> { (1..=q).filter(|&k| allowed(q - 1, k - 1, &first, 2)).collect() };
    assert_eq!(sees(9), vec![1, 3, 5, 7, 8, 9]);
    assert_eq!(sees(5), vec![1, 3, 4, 5]);
    assert_eq!(sees(1), vec![1]);
}

#[test]
fn wide_window_is_the_causal_mask_and_plain_generation() {
    let device = mergevq::device();
    let first = first_of_group(&[0, 0, 1, 1, 2, 2, 2, 3, 3]);
    let n = 2 + 9;
    assert_eq!(host(mergear_bias(2, &first, 9, n, &device)), host(causal_bias(n, &device)));
    assert_ne!(host(mergear_bias(2, &first, 2, n, &device)), host(causal_bias(n, &device)));

    let gpt = model(3, 16);
    for cfg in [1.0, 2.0] {
        let o = SampleOpts { temperature: 1.0, top_k: 0, top_p: 1.0, cfg };
        let a = generate(&gpt, 2, Some(1), Some(16), &o, &mut rand::rngs::StdRng::seed_from_u64(5), None).unwrap();
        let b = generate(&gpt, 2, Some(1), None, &o, &mut rand::rngs::StdRng::seed_from_u64(5), None).unwrap();
        assert_eq!(a.codes, b.codes, "cfg {cfg}");
        assert_eq!(a.peak_kv, b.peak_kv);
    }
}

#[test]
fn cache_never_exceeds_distinct_plus_window_plus_two() {
    let gpt = model(3, 64);
    // A synthetic merged image: 64 positions in 16 groups of 4 consecutive tokens.
    let codes: Vec<i64> = (0..64).map(|j| ((j / 4) * 3 % 64) as i64).collect();
    for w in [0usize, 1, 2, 4] {
        let g = generate(
            &gpt,
            1,
            Some(0),
            Some(w),
            &SampleOpts::default(),
            &mut rand::rngs::StdRng::seed_from_u64(1),
            Some(&codes),
        )
        .unwrap();
        let mut distinct = std::collections::HashSet::new();
        for (j, &held) in g.kv_trace.iter().enumerate() {
            distinct.insert(codes[j]);
            assert!(held <= distinct.len() + w + 2, "w={w} after token {j}: {held} > {} + {w} + 2", distinct.len());
        }
        assert!(g.peak_kv < 64 + 2, "w={w}: eviction must shrink the cache ({})", g.peak_kv);
    }
    // Sampled codes obey the bound as well.
    let g = generate(
        &gpt,
        0,
        Some(2),
        Some(2),
        &SampleOpts { temperature: 0.7, ..Default::default() },
        &mut rand::rngs::StdRng::seed_from_u64(9),
        None,
    )
    .unwrap();
    let mut distinct = std::collections::HashSet::new();
    for (j, &held) in g.kv_trace.iter().enumerate() {
        distinct.insert(g.codes[j]);
        assert!(held <= distinct.len() + 4);
    }
}

/// Teacher-forced logits under the sparse mask equal incremental decoding with eviction.
#[test]
fn evicting_cache_equals_the_sparse_mask() {
    let gpt = model(3, 16);
    let device = mergevq::device();
    let codes: Vec<i64> = vec![5, 5, 9, 9, 9, 12, 5, 7, 7, 1, 1, 1, 3, 12, 40, 40];
    let first = first_of_group(&codes.iter().map(|&c| c as usize).collect::<Vec<_>>());
    let (pre, post): (Vec<i64>, Vec<i64>) = codes.iter().map(|c| (c & 7, c >> 3)).unzip();
    let window = 2;
    let bias = mergear_bias(2, &first, window, 2 + 15, &device);
    let full = gpt.forward(&pre, &post, &[1], Some(&[2]), Some(bias)).unwrap();
    let full_pre: Vec<f32> = full.pre.into_data().convert::<f32>().try_into_vec().unwrap();

    let mut cache = DenseKvCache::new(2, 1);
    let mut h = gpt.step(gpt.embed_prefix(&[1], Some(&[2])).unwrap(), &[0, 1], &mut cache);
    let mut policy = mergevq::ar::mergear::EvictionPolicy::new(window);
    for j in 0..16 {
        let inc: Vec<f32> = gpt.decode_pre(h.clone()).0.into_data().convert::<f32>().try_into_vec().unwrap();
        for (a, b) in inc.iter().zip(&full_pre[j * 8..(j + 1) * 8]) {
            assert!((a - b).abs() < 1e-4, "token {j}: {a} vs {b}");
        }
        if j == 15 {
            break;
        }
        h = gpt.step(gpt.embed_token(&[pre[j]], &[post[j]]), &[2 + j], &mut cache);
        cache.evict(&[policy.push(j, codes[j]).into_iter().map(|i| 2 + i).collect()]);
    }
}

#[test]
fn bad_generation_requests_are_refused() {
    let gpt = model(3, 16);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let e = generate(&gpt, 9, Some(0), Some(2), &SampleOpts::default(), &mut rng, None).err().unwrap();
    assert!(e.to_string().contains("class 9"), "{e}");
    let e = generate(&gpt, 1, Some(7), Some(2), &SampleOpts::default(), &mut rng, None).err().unwrap();
    assert!(e.to_string().contains("merge instruction 7"), "{e}");
    let e = generate(&gpt, 1, None, Some(2), &SampleOpts::default(), &mut rng, None).err().unwrap();
    assert!(e.to_string().contains("needs a merge instruction"), "{e}");
}
