//! Invariants beyond the golden data: source matrices, sizes, index round-trips, schedules.
mod common;

use burn::prelude::*;
use common::root;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::lfq::Lfq;
use mergevq::tokenizer::tome::{
    bipartite_soft_matching, check_parse_r, parse_r, CandDistribution, Distribution, KeepPlan, RSpec, Tracking,
};
use mergevq::tokenizer::Tokenizer;

fn config(name: &str) -> TokenizerConfig {
    TokenizerConfig::load(&root().join(name)).unwrap()
}

/// Through the encoder: every column of S sums to 1 (each original token sits in exactly one
/// group), Σ sizes = L, and group sizes equal S's row sums.
#[test]
fn source_columns_sum_to_one_and_sizes_to_l() {
    let device = mergevq::device();
    let cfg = config("configs/tiny_32.toml");
    for keep in [64, 49, 36, 25, 16] {
        let tok = Tokenizer::init(&cfg, 3, &device).unwrap();
        let plan = tok.keep(keep).unwrap();
        let x = Tensor::<4>::random([3, 3, 32, 32], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
        let enc = tok.encoder.forward(x, &plan).unwrap();
        let t = &enc.track;
        let (sizes, groups) = (t.sizes(), t.groups());
        let (rows, l) = (t.rows(), groups[0].len());
        assert_eq!(rows, keep + 1, "K + [CLS] rows");
        assert_eq!(l, 65);
        let s = t.source();
        for b in 0..3 {
            for j in 0..l {
                let col: f32 = (0..rows).map(|i| s[b * rows * l + i * l + j]).sum();
                assert_eq!(col, 1.0, "column {j} of S sums to {col}");
            }
            let total: f32 = sizes[b].iter().sum();
            assert_eq!(total, l as f32, "Σ sizes = L + 1 (with [CLS])");
            for i in 0..rows {
                let row: f32 = (0..l).map(|j| s[b * rows * l + i * l + j]).sum();
                assert_eq!(row, sizes[b][i]);
            }
            assert_eq!(groups[b][0], 0, "[CLS] is never merged");
            assert_eq!(sizes[b][0], 1.0);
        }
    }
}

#[test]
fn index_bits_round_trip_d18() {
    for idx in (0..(1i64 << 18)).step_by(97).chain([0, (1 << 18) - 1]) {
        let code = Lfq::index_to_code(idx, 18);
        assert_eq!(code.len(), 18);
        assert!(code.iter().all(|v| *v == 1.0 || *v == -1.0));
        assert_eq!(Lfq::code_to_index(&code), idx);
    }
    // And through the quantizer: sign(z) → index → code = sign(z).
    let device = mergevq::device();
    let z = Tensor::<4>::random([2, 18, 3, 3], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let q = Lfq::new(18).quantize(z.clone());
    let back = Lfq::codes(&mergevq::io::readback::ints(q.indices), 18, 2, 3, 3, &device);
    let diff: f32 = (back - z.sign()).abs().max().into_scalar();
    assert_eq!(diff, 0.0);
}

#[test]
fn unmerge_of_merge_has_input_shape_and_copies_groups() {
    let device = mergevq::device();
    for (t, r, cls) in [(33, 5, true), (33, 40, true), (32, 16, false), (257, 12, true)] {
        let metric = Tensor::<3>::random([2, t, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<3>::random([2, t, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let m = bipartite_soft_matching(metric, r, cls).unwrap();
        let expect_r = (r as usize).min((t - cls as usize) / 2);
        assert_eq!(m.rows_out, t - expect_r);
        let merged = m.merge_wavg(x.clone(), Tensor::ones([2, t, 1], &device));
        assert_eq!(merged.dims(), [2, t - expect_r, 6]);
        let un = m.unmerge(merged.clone());
        assert_eq!(un.dims(), [2, t, 6]);
        // Merging the unmerged tokens again gives back the merged ones (each group is constant).
        let mut track = Tracking::new(2, t, &device);
        let re = m.merge_wavg(un, track.size_tensor());
        track.apply(&m);
        let err: f32 = (re - merged).abs().max().into_scalar();
        assert!(err < 1e-5, "{err}");
        assert_eq!(track.sizes().iter().flatten().sum::<f32>(), (2 * t) as f32);
    }
}

/// K = L − Σ r for every schedule, where each layer's r is what ToMe can actually merge.
#[test]
fn kept_count_is_l_minus_sum_of_r() {
    for res in [8usize, 16, 32] {
        let l = (res * res) as i64;
        for layers in [2usize, 3, 12] {
            for keep_side in 1..=res as i64 {
                let keep = keep_side * keep_side;
                let mut plan = KeepPlan::new(res, layers, Some(0), None, None).unwrap();
                match plan.set_keep(keep) {
                    Ok(()) => {
                        let per = plan.per_layer().unwrap();
                        let (eff, kept) = plan.effective(&per);
                        assert_eq!(kept, keep);
                        assert_eq!(kept, l - eff.iter().sum::<i64>());
                        assert_eq!(per, eff, "no layer asks for more than it can merge");
                    }
                    Err(e) => {
                        // Only unreachable counts are refused: too much merging for the layers.
                        assert!(keep < l / (1 << layers.min(10)) + l / 2, "K={keep} refused: {e}");
                        assert!(e.to_string().contains("cannot be reached"), "{e}");
                    }
                }
            }
        }
    }
    // parse_r sums to its total whenever a total is given.
    for total in [0i64, 28, 112, 192, 768] {
        for layers in [3usize, 12] {
            let r = check_parse_r(layers, total, 1024, -0.5, false).unwrap();
            let list = parse_r(layers, &RSpec::Inflect(r, -0.5), Some(total)).unwrap();
            assert_eq!(list.iter().sum::<i64>(), total);
        }
    }
}

#[test]
fn bad_keep_counts_are_refused() {
    let mut plan = KeepPlan::new(16, 12, Some(112), None, Some("gaussian-6".parse().unwrap())).unwrap();
    assert!(plan.set_keep(150).unwrap_err().to_string().contains("perfect square"));
    assert!(plan.set_keep(289).unwrap_err().to_string().contains("exceeds"));
    assert!(plan.set_keep(0).is_err());
    plan.set_keep(196).unwrap();
    assert_eq!(plan.kept().unwrap(), 196);
}

/// The G+R d64 config from the official YAML keeps 144 of 256 tokens: 144 groups.
#[test]
fn official_gr_yaml_keeps_144_groups() {
    let device = mergevq::device();
    let cfg = config("tests/data/official_gr_d64.yaml");
    assert_eq!(cfg.embed_res(), 16);
    let tok = Tokenizer::init(&cfg, 0, &device).unwrap();
    let x = Tensor::<4>::random([1, 3, 256, 256], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
    let t = tok.encode(x, &tok.plan).unwrap();
    assert_eq!(t.k, 144);
    let mut groups: Vec<usize> = t.group[0].clone();
    groups.sort_unstable();
    groups.dedup();
    assert_eq!(groups.len(), 144);
    let rec = tok.decode(t.quantized, &t.group);
    assert_eq!(rec.dims(), [1, 3, 256, 256]);
}

/// Candidate distributions are parsed when a config loads ("name-count", count 5 by default,
/// names in any case as the reference lower-cases them); unknown names are refused.
#[test]
fn cand_distribution_is_parsed_and_checked() {
    let c: CandDistribution = "Gaussian-6".parse().unwrap();
    assert_eq!((c.distribution, c.count), (Distribution::Gaussian, 6));
    assert_eq!("exponential".parse::<CandDistribution>().unwrap().count, 5);
    let err = "foo-6".parse::<CandDistribution>().unwrap_err();
    assert!(err.contains("gaussian, exponential or uniform"), "{err}");
    assert!("gaussian-x".parse::<CandDistribution>().is_err());
}

/// Random-resized crops (`data.crop_scale`): r×r outputs whose crop covers the drawn share of
/// the photo — the whole image at [1, 1], a quarter of its area (half its width) at [0.25, 0.25].
#[test]
fn random_resized_crops_cover_the_drawn_area() {
    use mergevq::io::data::Augment;
    use mergevq::io::preprocess::Preprocess;
    use rand::{rngs::StdRng, SeedableRng};
    // A horizontal ramp: a pixel's red value is its column's share of the width.
    let (w, h) = (300u32, 200u32);
    let img = image::RgbImage::from_fn(w, h, |x, _| image::Rgb([(x * 255 / (w - 1)) as u8, 0, 0]));
    let aug = |lo, hi| Augment {
        resolution: 32,
        random_crop: false,
        crop_scale: Some([lo, hi]),
        flip: false,
        preprocess: Preprocess::default(),
    };
    let mut rng = StdRng::seed_from_u64(5);
    let span = |out: &image::RgbImage| {
        let row: Vec<f64> = (0..32).map(|x| out.get_pixel(x, 16)[0] as f64).collect();
        (row[31] - row[0]) / 255.0 * w as f64
    };
    for _ in 0..20 {
        let whole = aug(1.0, 1.0).apply(&img, &mut rng);
        assert_eq!(whole.dimensions(), (32, 32));
        // The shorter side (200 px) at full scale, anywhere along the longer one.
        assert!((span(&whole) - 200.0).abs() < 16.0, "{}", span(&whole));
        let quarter = aug(0.25, 0.25).apply(&img, &mut rng);
        assert!((span(&quarter) - 100.0).abs() < 10.0, "{}", span(&quarter));
    }
    // Positions vary from draw to draw.
    let firsts: std::collections::BTreeSet<u8> =
        (0..20).map(|_| aug(0.25, 0.25).apply(&img, &mut rng).get_pixel(0, 0)[0]).collect();
    assert!(firsts.len() > 5, "{firsts:?}");
}
