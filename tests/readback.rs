//! The generic path (`MERGEVQ_GENERIC=1`) runs every op as a GPU build does — ToMe's matching
//! with tensor ops, the KV cache in device slots — so on the CPU device it shows what a GPU would
//! compute and read. On a GPU every device→host read drains the queue: an encode reads nothing
//! before its final output (the LFQ indices and the groups), counted by `mergevq::io::readback`;
//! batched generation reads the logits it samples and never its KV cache. And the generic path
//! gives the CPU path's results. This file is its own process: the switch does not reach the
//! other tests.
mod common;

use burn::prelude::*;
use burn::tensor::Distribution;
use common::root;
use mergevq::ar::batched::{generate_batch, image_rng, Request};
use mergevq::ar::sample::SampleOpts;
use mergevq::io::readback;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::tome::bipartite_soft_matching;
use mergevq::tokenizer::Tokenizer;

/// Turns the generic path on or off (read at every op; only the test below computes).
fn generic(on: bool) {
    if on {
        std::env::set_var("MERGEVQ_GENERIC", "1");
    } else {
        std::env::remove_var("MERGEVQ_GENERIC");
    }
}

/// One test, so that switching the generic path on and off cannot race another test.
#[test]
fn generic_path_reads_nothing_it_need_not_and_equals_the_cpu_path() {
    let device = mergevq::device();
    device.seed(7);
    // Device matching (argsort, scatter) gives the host's row maps, odd shapes, r past its clamp.
    for (b, t, r, cls) in
        [(3, 33, 5, true), (2, 257, 64, true), (1, 32, 40, false), (4, 9, 2, true), (2, 65, 28, false)]
    {
        let metric = Tensor::<3>::random([b, t, 8], Distribution::Normal(0.0, 1.0), &device);
        generic(false);
        let host = bipartite_soft_matching(metric.clone(), r, cls).unwrap().host_map();
        generic(true);
        let before = readback::count();
        let m = bipartite_soft_matching(metric, r, cls).unwrap();
        assert_eq!(readback::count(), before, "{b}x{t} r={r}: device matching read from the device");
        assert_eq!(m.host_map(), host, "{b}x{t} r={r} cls={cls}: device and host row maps differ");
    }

    let cfg = TokenizerConfig::load(&root().join("configs/tiny_32.toml")).unwrap();
    let tok = Tokenizer::init(&cfg, 3, &device).unwrap();
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Uniform(-1.0, 1.0), &device);
    for keep in [64, 36, 16] {
        let plan = tok.keep(keep).unwrap();
        generic(false);
        let want = tok.encode(x.clone(), &plan).unwrap();
        generic(true);
        let before = readback::count();
        let enc = tok.encoder.forward(x.clone(), &plan).unwrap();
        let q = tok.lfq().quantize(enc.z.clone());
        assert_eq!(readback::count(), before, "K={keep}: the encoder or LFQ read from the device");
        drop((enc, q));
        let got = tok.encode(x.clone(), &plan).unwrap();
        assert_eq!(readback::count(), before + 2, "K={keep}: an encode reads its indices and groups once each");
        assert_eq!(got.group, want.group, "K={keep}: groups differ between the generic and CPU paths");
        let same = got.indices.iter().zip(&want.indices).filter(|(a, b)| a == b).count();
        assert!(same * 100 >= 99 * want.indices.len(), "K={keep}: {same}/{} indices agree", want.indices.len());
    }

    // Batched MergeAR and plain decoding with guidance: the slot cache gives the ragged cache's
    // tokens, reading only two rows of logits per token (factorized heads), nothing per layer.
    let gpt = common::tiny_gpt(3, 36, 48, 3);
    let reqs: Vec<Request> =
        (0..3).map(|i| Request { class: i % 4, merge: Some(i % 3), keep: 4 + 3 * i, forced: None }).collect();
    let o = SampleOpts { temperature: 1.0, top_k: 0, top_p: 1.0, cfg: 1.5 };
    for window in [Some(2), None] {
        let run = || {
            let mut rngs: Vec<_> = (0..reqs.len() as u64).map(|i| image_rng(5, i)).collect();
            let b = generate_batch(&gpt, &reqs, window, &o, &mut rngs, |_| {}).unwrap();
            b.images.into_iter().map(|g| g.codes).collect::<Vec<_>>()
        };
        generic(false);
        let want = run();
        generic(true);
        let before = readback::count();
        let got = run();
        assert_eq!(readback::count() - before, 2 * 36, "window {window:?}: reads other than the sampled logits");
        assert_eq!(got, want, "window {window:?}: the slot cache's tokens differ from the ragged cache's");
    }
    generic(false);
}

/// Every read of tensor values in the library and the Python binding goes through the counter.
#[test]
fn library_reads_only_through_readback() {
    let mut stack = vec![root().join("src"), root().join("python/src")];
    let mut offenders = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("io/readback.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    if [".into_data()", ".to_data()", ".into_scalar"].iter().any(|p| line.contains(p)) {
                        offenders.push(format!("{}:{}", path.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "reads outside mergevq::io::readback: {offenders:?}");
}
