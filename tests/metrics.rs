//! Metrics against reference values from numpy / scipy / scikit-image
//! (tests/data/metric_fixtures.json, made by scripts/make_metric_fixtures.py).
use mergevq::eval::metrics::{codebook_usage, frechet_distance, kid, psnr, ssim, Stats};
use mergevq::parity::generated;

fn fixtures() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/metric_fixtures.json")).unwrap(),
    )
    .unwrap()
}

fn features(seed: u64, n: usize, d: usize, shift: f64) -> Vec<Vec<f32>> {
    let v = generated(seed, n * d, -1.0, 1.0);
    (0..n)
        .map(|i| {
            let row = &v[i * d..(i + 1) * d];
            (0..d).map(|j| (row[j] as f64 + if j > 0 { 0.5 * row[j - 1] as f64 } else { 0.0 } + shift) as f32).collect()
        })
        .collect()
}

fn image(seed: u32, w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([0, 1, 2].map(|k| ((x * (3 + seed) + y * (5 + 2 * k) + 17 * k * seed) % 256) as u8))
    })
}

fn noisy(img: &image::RgbImage) -> image::RgbImage {
    let (w, h) = img.dimensions();
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([0, 1, 2].map(|c| {
            let i = ((y * w + x) * 3 + c) as i64;
            (img.get_pixel(x, y)[c as usize] as i64 + (i * 7919) % 21 - 10).clamp(0, 255) as u8
        }))
    })
}

#[test]
fn fid_matches_scipy() {
    let f = &fixtures()["fid"];
    let a = features(11, 300, 64, 0.0);
    let b = features(22, 300, 64, 0.1);
    let got = frechet_distance(&Stats::from_features(&a), &Stats::from_features(&b));
    let want = f["value"].as_f64().unwrap();
    assert!(((got - want) / want).abs() <= 1e-3, "FID {got} vs scipy {want}");
    let same = frechet_distance(&Stats::from_features(&a), &Stats::from_features(&a));
    assert!(same.abs() < 1e-6, "FID(a, a) = {same}");
}

/// FID's three routes to Tr((Σ₁Σ₂)^½) — the low-rank factor (fewer images than features), Cholesky,
/// and the eigenvectors of a singular covariance — agree with Σ₁^½ Σ₂ Σ₁^½ computed directly.
#[test]
fn fid_routes_match_the_direct_square_root() {
    use nalgebra::{DMatrix, SymmetricEigen};
    let direct = |a: &Stats, b: &Stats| {
        let e = SymmetricEigen::new(a.sigma.clone());
        let s1 = &e.eigenvectors
            * DMatrix::from_diagonal(&e.eigenvalues.map(|v| v.max(0.0).sqrt()))
            * e.eigenvectors.transpose();
        let m = &s1 * &b.sigma * &s1;
        let tr: f64 =
            SymmetricEigen::new((&m + m.transpose()) * 0.5).eigenvalues.iter().map(|v| v.max(0.0).sqrt()).sum();
        let diff = &a.mu - &b.mu;
        diff.dot(&diff) + a.sigma.trace() + b.sigma.trace() - 2.0 * tr
    };
    // Rank-deficient with more images than features: the last 8 features repeat earlier ones.
    let singular = |seed, n| -> Vec<Vec<f32>> {
        features(seed, n, 64, 0.2)
            .into_iter()
            .map(|mut r| {
                (56..64).for_each(|j| r[j] = r[j - 50]);
                r
            })
            .collect()
    };
    // A constant feature: its variance is exactly 0, so Cholesky fails and the eigenvectors are used.
    let constant = |seed, n| -> Vec<Vec<f32>> {
        features(seed, n, 64, 0.2)
            .into_iter()
            .map(|mut r| {
                r[7] = 0.25;
                r
            })
            .collect()
    };
    let cases = [
        (features(1, 40, 64, 0.0), features(2, 50, 64, 0.1)),
        (features(3, 50, 64, 0.0), features(4, 30, 64, 0.3)),
        (features(5, 40, 64, 0.0), features(6, 300, 64, 0.1)),
        (features(7, 300, 64, 0.0), features(8, 40, 64, 0.1)),
        (features(9, 300, 64, 0.0), features(10, 200, 64, 0.1)),
        (singular(11, 200), features(12, 200, 64, 0.0)),
        (singular(13, 200), singular(14, 100)),
        (constant(15, 200), features(16, 300, 64, 0.0)),
        (constant(17, 40), constant(18, 250)),
    ];
    for (i, (a, b)) in cases.iter().enumerate() {
        let (sa, sb) = (Stats::from_features(a), Stats::from_features(b));
        let (got, want) = (frechet_distance(&sa, &sb), direct(&sa, &sb));
        assert!(want > 0.1 && ((got - want) / want).abs() < 1e-6, "case {i}: FID {got} vs direct {want}");
        let back = frechet_distance(&sb, &sa);
        assert!(((back - want) / want).abs() < 1e-6, "case {i}: FID(b, a) {back} vs {want}");
        let same = frechet_distance(&sa, &sa);
        assert!(same.abs() < 1e-6 * sa.sigma.trace(), "case {i}: FID(a, a) = {same}");
    }
}

#[test]
fn ssim_and_psnr_match_skimage() {
    let f = fixtures();
    let (i1, i2) = (image(1, 48, 40), image(2, 48, 40));
    let i3 = noisy(&i1);
    let s12 = ssim(&i1, &i2);
    let s13 = ssim(&i1, &i3);
    assert!((s12 - f["ssim"][0]["value"].as_f64().unwrap()).abs() < 1e-4, "{s12}");
    assert!((s13 - f["ssim"][1]["value"].as_f64().unwrap()).abs() < 1e-4, "{s13}");
    assert!((ssim(&i1, &i1) - 1.0).abs() < 1e-12);
    let p = psnr(&i1, &i3);
    assert!((p - f["psnr"]["value"].as_f64().unwrap()).abs() < 1e-6, "{p}");
}

#[test]
fn kid_and_codebook_usage() {
    let a = features(1, 200, 16, 0.0);
    let b = features(2, 200, 16, 0.0);
    let c = features(3, 200, 16, 0.5);
    let (same, _) = kid(&a, &b, 10, 100, 0);
    let (diff, _) = kid(&a, &c, 10, 100, 0);
    assert!(same.abs() < diff && diff > 0.0, "KID same-distribution {same} vs shifted {diff}");
    // One subset of every row: a permutation, so KID is the unbiased MMD² over all pairs.
    let k =
        |x: &[f32], y: &[f32]| (x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum::<f64>() / 16.0 + 1.0).powi(3);
    let (n, mut xx, mut yy, mut xy) = (200.0, 0.0, 0.0, 0.0);
    for i in 0..200 {
        for j in 0..200 {
            if i != j {
                xx += k(&a[i], &a[j]);
                yy += k(&c[i], &c[j]);
            }
            xy += k(&a[i], &c[j]);
        }
    }
    let want = (xx + yy) / (n * (n - 1.0)) - 2.0 * xy / (n * n);
    let (all, std) = kid(&a, &c, 1, 200, 3);
    assert!((all - want).abs() < 1e-9 * want.abs().max(1.0) && std == 0.0, "KID over all rows {all} vs {want}");
    let (usage, ppl) = codebook_usage(&[0, 1, 2, 3, 0, 1, 2, 3], 16);
    assert_eq!(usage, 0.25);
    assert!((ppl - 4.0).abs() < 1e-9);
}
