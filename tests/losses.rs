//! Loss functions against hand-computed values and naive formulas.
mod common;

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use mergevq::loss::gan::{hinge_d_loss, hinge_g_loss, non_saturating_g_loss, LeCam};
use mergevq::tokenizer::lfq::{Lfq, TEMPERATURE};

fn t4(v: &[f32], shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &mergevq::device())
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// The naive LFQ entropy: logits = 2·z·c over all 2^d codes, softmax(logits / T).
fn naive_entropies(z: Tensor<4>, d: usize) -> (f64, f64) {
    let [b, _, h, w] = z.dims();
    let n = b * h * w;
    let x = z.permute([0, 2, 3, 1]).reshape([n, d]);
    let codes: Vec<f32> =
        (0..1usize << d).flat_map(|j| (0..d).map(move |i| if (j >> i) & 1 == 1 { 1.0 } else { -1.0 })).collect();
    let codes = Tensor::<2>::from_data(TensorData::new(codes, [1 << d, d]), &mergevq::device());
    let logits = x.matmul(codes.transpose()) * (2.0 / TEMPERATURE);
    let p = softmax(logits.clone(), 1);
    let per_sample = (p.clone() * log_softmax(logits, 1)).sum_dim(1).neg().mean();
    let avg = p.mean_dim(0);
    let codebook = (avg.clone() * (avg + 1e-5).log()).sum().neg();
    (scalar(per_sample), scalar(codebook))
}

#[test]
fn lfq_entropy_equals_the_naive_formula() {
    for (d, seed) in [(8usize, 1u64), (10, 2), (10, 3)] {
        let device = mergevq::device();
        let z = Tensor::<4>::random([2, d, 4, 4], burn::tensor::Distribution::Normal(0.0, 0.01 * seed as f64), &device);
        let (ps, cb) = naive_entropies(z.clone(), d);
        let l = Lfq::new(d).losses(z);
        let (ps2, cb2) = (scalar(l.per_sample_entropy), scalar(l.codebook_entropy));
        assert!((ps - ps2).abs() <= 1e-5 * ps.abs().max(1.0), "d={d}: per-sample {ps} vs {ps2}");
        assert!((cb - cb2).abs() <= 1e-5 * cb.abs().max(1.0), "d={d}: codebook {cb} vs {cb2}");
        assert!((scalar(l.entropy_aux) - (ps2 - cb2)).abs() < 1e-6);
    }
}

/// The reference's sample_minimization_weight and batch_maximization_weight weight the two
/// entropy terms: aux = w_sample·per_sample − w_batch·codebook; the tokenizer takes them from its config.
#[test]
fn lfq_entropy_weights_scale_the_two_terms() {
    let device = mergevq::device();
    let z = Tensor::<4>::random([2, 8, 3, 3], burn::tensor::Distribution::Normal(0.0, 0.02), &device);
    let l = Lfq { entropy_weights: [2.0, 0.5], ..Lfq::new(8) }.losses(z);
    let (ps, cb) = (scalar(l.per_sample_entropy), scalar(l.codebook_entropy));
    assert!((scalar(l.entropy_aux) - (2.0 * ps - 0.5 * cb)).abs() < 1e-5);

    let text = std::fs::read_to_string(common::root().join("configs/tiny_32.toml")).unwrap();
    let text = text
        .replace("embed_dim = 10", "embed_dim = 10\nsample_minimization_weight = 2.0\nbatch_maximization_weight = 0.5");
    let cfg: mergevq::tokenizer::config::TokenizerConfig = toml::from_str(&text).unwrap();
    let tok = mergevq::tokenizer::Tokenizer::init(&cfg, 0, &device).unwrap();
    assert_eq!(tok.lfq().entropy_weights, [2.0, 0.5]);
}

/// The codebook entropy's gradient (a chunked analytic pass, nothing kept for backward) equals
/// the autodiff gradient of the naive all-codes formula.
#[test]
fn lfq_codebook_entropy_gradient_equals_the_naive_gradient() {
    let d = 8;
    let device = mergevq::device().autodiff();
    let z0 = Tensor::<4>::random([2, d, 4, 4], burn::tensor::Distribution::Normal(0.0, 0.02), &device);
    let grad_of = |f: &dyn Fn(Tensor<4>) -> Tensor<1>| -> Vec<f32> {
        let z = z0.clone().detach().require_grad();
        let g = z.grad(&f(z.clone()).backward()).expect("gradient");
        g.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    };
    let ours = grad_of(&|z| Lfq::new(d).losses(z).codebook_entropy);
    let naive = grad_of(&|z| {
        let [b, _, h, w] = z.dims();
        let x = z.permute([0, 2, 3, 1]).reshape([b * h * w, d]);
        let codes: Vec<f32> =
            (0..1usize << d).flat_map(|j| (0..d).map(move |i| if (j >> i) & 1 == 1 { 1.0 } else { -1.0 })).collect();
        let codes = Tensor::<2>::from_data(TensorData::new(codes, [1 << d, d]), &z0.device());
        let avg = softmax(x.matmul(codes.transpose()) * (2.0 / TEMPERATURE), 1).mean_dim(0);
        (avg.clone() * (avg + 1e-5).log()).sum().neg().reshape([1])
    });
    let scale = naive.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "the naive gradient is not trivially zero ({scale})");
    for (a, b) in ours.iter().zip(&naive) {
        assert!((a - b).abs() <= 1e-3 * scale, "gradient {a} vs naive {b} (scale {scale})");
    }
}

#[test]
fn gan_losses_match_hand_computed_values() {
    let real = t4(&[0.5, -2.0], [2, 1, 1, 1]);
    let fake = t4(&[0.3, -1.5], [2, 1, 1, 1]);
    // ½(mean(relu(1 − [0.5, −2])) + mean(relu(1 + [0.3, −1.5]))) = ½(1.75 + 0.65)
    assert!((scalar(hinge_d_loss(real.clone(), fake.clone())) - 1.2).abs() < 1e-6);
    assert!((scalar(hinge_g_loss(fake.clone())) - 0.6).abs() < 1e-6);
    // mean softplus(−l) over images: softplus(−0.3), softplus(1.5)
    let sp = |x: f64| (1.0 + x.exp()).ln();
    assert!((scalar(non_saturating_g_loss(fake.clone())) - (sp(-0.3) + sp(1.5)) / 2.0).abs() < 1e-6);
    // LeCam with EMAs starting at 0: after one update ema_r = 0.001·(−0.75), ema_f = 0.001·(−0.6).
    let mut lc = LeCam::default();
    let v = scalar(lc.update_and_loss(real, fake));
    let (er, ef) = (-0.75e-3, -0.6e-3);
    let relu = |x: f64| x.max(0.0);
    let want = (relu(0.5 - ef).powi(2) + relu(-2.0 - ef).powi(2)) / 2.0
        + (relu(er - 0.3).powi(2) + relu(er + 1.5).powi(2)) / 2.0;
    assert!((v - want).abs() < 1e-5, "{v} vs {want}");
}

#[test]
fn alignment_losses_match_hand_computed_values() {
    let device = mergevq::device();
    let logits = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 0.0, -1.0, 0.5, 0.5, 0.5], [2, 3]), &device);
    let lse0 = (2f64.exp() + 1.0 + (-1f64).exp()).ln();
    let lp0 = [2.0 - lse0, -lse0, -1.0 - lse0];
    let lp1 = [-(3f64.ln()); 3];
    let eps = 0.1;
    let want = ((1.0 - eps) * -lp0[0]
        + eps * -(lp0.iter().sum::<f64>() / 3.0)
        + (1.0 - eps) * -lp1[2]
        + eps * -(lp1.iter().sum::<f64>() / 3.0))
        / 2.0;
    let got = scalar(mergevq::loss::align::label_smoothed_ce(logits.clone(), &[0, 2], eps));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // KL to itself is 0; to a different teacher it is positive.
    assert!(scalar(mergevq::loss::align::distill_kl(logits.clone(), logits.clone(), 4.0)).abs() < 1e-6);
    assert!(scalar(mergevq::loss::align::distill_kl(logits.clone(), logits * -1.0, 4.0)) > 0.01);
}

/// The real LPIPS weights (scripts/fetch-weights.sh) rank a slightly noisy copy closer than
/// another image.
#[test]
fn lpips_real_weights_rank_distances() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/lpips_vgg16.safetensors");
    assert!(path.exists(), "run scripts/fetch-weights.sh first ({} is missing)", path.display());
    let device = mergevq::device();
    let w = mergevq::io::weights::Weights::open(&path, false, &device).unwrap();
    let net = mergevq::loss::lpips::Lpips::load(w.root()).unwrap();
    w.finish(&[]).unwrap();
    let photo = common::root().join("assets/rocket.jpg");
    let (x, _) =
        mergevq::io::image::load_image(&photo, 64, mergevq::io::preprocess::Preprocess::Resize, &device).unwrap();
    let noise = Tensor::<4>::random([1, 3, 64, 64], burn::tensor::Distribution::Normal(0.0, 0.02), &device);
    let flipped = x.clone().flip([3]);
    let d_same: f32 = net.forward(x.clone(), x.clone()).into_scalar();
    let d_noise: f32 = net.forward(x.clone(), x.clone() + noise).into_scalar();
    let d_other: f32 = net.forward(x.clone(), flipped).into_scalar();
    assert!(d_same.abs() < 1e-6, "{d_same}");
    assert!(d_noise > 0.0 && d_noise < d_other, "noisy {d_noise} vs flipped {d_other}");
}

/// The Fashion-MNIST idx reader on the real files (apt-get install dataset-fashion-mnist).
#[test]
fn fashion_mnist_reads_the_real_files() {
    use mergevq::io::data::{FashionMnist, Source, FASHION_MNIST_DIR};
    let dir = std::path::Path::new(FASHION_MNIST_DIR);
    let test = FashionMnist::open(dir, "test").expect("apt-get install dataset-fashion-mnist");
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.classes(), 10);
    let mut counts = [0usize; 10];
    for i in 0..test.len() {
        counts[test.get(i).unwrap().1] += 1;
    }
    assert!(counts.iter().all(|&c| c == 1000), "{counts:?}");
    let (img, _) = test.get(0).unwrap();
    assert_eq!(img.dimensions(), (28, 28));
    assert!(img.pixels().any(|p| p[0] > 100) && img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    assert!(FashionMnist::open(dir, "validation").is_err());
}
