//! Evaluation metrics: PSNR, SSIM, FID (Fréchet distance of Inception features), KID, and
//! codebook usage / perplexity.
use anyhow::{bail, Result};
use image::RgbImage;
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// The fewest images FID and KID are computed from (a covariance needs two).
pub const MIN_IMAGES: usize = 2;

/// Below this many images (the Inception feature dimension) FID is strongly biased upwards and
/// not comparable with published values, which use 10 000 or 50 000.
pub const UNBIASED_IMAGES: usize = 2048;

/// Checks `n` images are enough for the distribution metric `metric` (FID, KID): an error
/// below [`MIN_IMAGES`], and a warning to show below [`UNBIASED_IMAGES`].
pub fn check_sample_size(metric: &str, n: usize) -> Result<Option<String>> {
    if n < MIN_IMAGES {
        bail!("{metric} needs at least {MIN_IMAGES} images, got {n}");
    }
    Ok((n < UNBIASED_IMAGES).then(|| {
        format!("{metric} from {n} images is biased upwards; use at least {UNBIASED_IMAGES} to compare with published values")
    }))
}

/// PSNR in dB of two 8-bit images (data range 255).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let (a, b) = (a.as_raw(), b.as_raw());
    let mse = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// PSNR in dB of two float images in [-1, 1] (data range 2), without quantisation.
pub fn psnr_unit(a: &[f32], b: &[f32]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (4.0 / mse).log10()
    }
}

/// SSIM (Wang et al. 2004) as pytorch-msssim and skimage (gaussian_weights=True,
/// use_sample_covariance=False) compute it: 11×11 Gaussian window, σ = 1.5, K1 = 0.01,
/// K2 = 0.03, data range 255, valid positions only, averaged over channels.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    let (w, h) = a.dimensions();
    let (w, h) = (w as usize, h as usize);
    let win = 11usize.min(w).min(h) | 1;
    let r = win / 2;
    let g: Vec<f64> = {
        let v: Vec<f64> = (0..win).map(|i| (-((i as f64 - r as f64).powi(2)) / (2.0 * 1.5 * 1.5)).exp()).collect();
        let s: f64 = v.iter().sum();
        v.into_iter().map(|x| x / s).collect()
    };
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (ow, oh) = (w - win + 1, h - win + 1);
    let mut total = 0.0;
    for ch in 0..3 {
        let px = |img: &RgbImage, x: usize, y: usize| img.get_pixel(x as u32, y as u32)[ch] as f64;
        // Separable filtering of x, y, x², y², xy: horizontal then vertical.
        let filt = |f: &dyn Fn(usize, usize) -> f64| -> Vec<f64> {
            let mut hz = vec![0.0; ow * h];
            for y in 0..h {
                for x in 0..ow {
                    hz[y * ow + x] = (0..win).map(|k| g[k] * f(x + k, y)).sum();
                }
            }
            let mut out = vec![0.0; ow * oh];
            for y in 0..oh {
                for x in 0..ow {
                    out[y * ow + x] = (0..win).map(|k| g[k] * hz[(y + k) * ow + x]).sum();
                }
            }
            out
        };
        let mx = filt(&|x, y| px(a, x, y));
        let my = filt(&|x, y| px(b, x, y));
        let mxx = filt(&|x, y| px(a, x, y).powi(2));
        let myy = filt(&|x, y| px(b, x, y).powi(2));
        let mxy = filt(&|x, y| px(a, x, y) * px(b, x, y));
        let mut s = 0.0;
        for i in 0..ow * oh {
            let (vx, vy, cxy) = (mxx[i] - mx[i] * mx[i], myy[i] - my[i] * my[i], mxy[i] - mx[i] * my[i]);
            s += ((2.0 * mx[i] * my[i] + c1) * (2.0 * cxy + c2))
                / ((mx[i] * mx[i] + my[i] * my[i] + c1) * (vx + vy + c2));
        }
        total += s / (ow * oh) as f64;
    }
    total / 3.0
}

/// Mean and covariance (unbiased, as numpy.cov) of feature rows; with fewer rows than features
/// also the centred rows B scaled so that Σ = BᵀB (the covariance's low-rank factor).
#[derive(Clone, Debug)]
pub struct Stats {
    pub mu: DVector<f64>,
    pub sigma: DMatrix<f64>,
    pub n: usize,
    pub(crate) factor: Option<DMatrix<f64>>,
}

impl Stats {
    pub fn from_features(f: &[Vec<f32>]) -> Self {
        let n = f.len();
        let d = f.first().map(|r| r.len()).unwrap_or(0);
        let mu = DVector::from_fn(d, |j, _| f.iter().map(|r| r[j] as f64).sum::<f64>() / n.max(1) as f64);
        let b = centred_rows(f, &mu);
        let sigma = b.tr_mul(&b);
        Self { mu, sigma, n, factor: (n <= d).then_some(b) }
    }
}

/// The rows of `f` centred on `mu` and scaled by 1/√(n − 1): B with BᵀB the unbiased covariance.
pub(crate) fn centred_rows(f: &[Vec<f32>], mu: &DVector<f64>) -> DMatrix<f64> {
    let scale = 1.0 / ((f.len().max(2) - 1) as f64).sqrt();
    DMatrix::from_fn(f.len(), mu.len(), |i, j| (f[i][j] as f64 - mu[j]) * scale)
}

/// Tr((Σ₁Σ₂)^½) = Σ √λ(Σ₁Σ₂), from a symmetric matrix with the same non-zero eigenvalues:
/// B Σ₂ Bᵀ when Σ₁ = BᵀB has a factor with fewer rows than features (n × n instead of d × d),
/// else Lᵀ Σ₂ L with Σ₁ = LLᵀ (Cholesky), else Σ₁^½ Σ₂ Σ₁^½ (eigenvectors of a singular Σ₁).
fn trace_sqrt_product(a: &Stats, b: &Stats) -> f64 {
    let (a, b) = match (&a.factor, &b.factor) {
        (Some(_), Some(_)) if b.n < a.n => (b, a),
        (None, Some(_)) => (b, a),
        _ => (a, b),
    };
    let m = if let Some(f) = &a.factor {
        f * &b.sigma * f.transpose()
    } else if let Some(c) = a.sigma.clone().cholesky() {
        let l = c.l();
        l.tr_mul(&b.sigma) * l
    } else {
        let e = SymmetricEigen::new(a.sigma.clone());
        let s1 = &e.eigenvectors
            * DMatrix::from_diagonal(&e.eigenvalues.map(|v| v.max(0.0).sqrt()))
            * e.eigenvectors.transpose();
        &s1 * &b.sigma * &s1
    };
    let m = (&m + m.transpose()) * 0.5;
    m.symmetric_eigenvalues().iter().map(|v| v.max(0.0).sqrt()).sum()
}

/// Fréchet distance ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).
pub fn frechet_distance(a: &Stats, b: &Stats) -> f64 {
    let diff = &a.mu - &b.mu;
    diff.dot(&diff) + a.sigma.trace() + b.sigma.trace() - 2.0 * trace_sqrt_product(a, b)
}

/// Kernel Inception Distance: unbiased MMD² with the kernel (x·y/d + 1)³, averaged over
/// `subsets` random subsets of `size` rows (seeded); returns (mean, std). Each subset's three
/// kernel matrices come from matrix products (f64).
pub fn kid(a: &[Vec<f32>], b: &[Vec<f32>], subsets: usize, size: usize, seed: u64) -> (f64, f64) {
    use rand::seq::index::sample;
    use rand::SeedableRng;
    let m = size.min(a.len()).min(b.len());
    if m < 2 {
        return (f64::NAN, f64::NAN);
    }
    let d = a[0].len();
    let rows = |f: &[Vec<f32>], idx: &[usize]| DMatrix::<f64>::from_fn(d, m, |j, i| f[idx[i]][j] as f64);
    // Σ of (xᵢ·yⱼ/d + 1)³ over all pairs, and over the diagonal.
    let sums = |x: &DMatrix<f64>, y: &DMatrix<f64>| {
        let k = x.tr_mul(y).map(|v| (v / d as f64 + 1.0).powi(3));
        (k.sum(), k.trace())
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vals: Vec<f64> = (0..subsets.max(1))
        .map(|_| {
            let x = rows(a, &sample(&mut rng, a.len(), m).into_vec());
            let y = rows(b, &sample(&mut rng, b.len(), m).into_vec());
            let ((xx, dx), (yy, dy), (xy, _)) = (sums(&x, &x), sums(&y, &y), sums(&x, &y));
            let mf = m as f64;
            (xx - dx + yy - dy) / (mf * (mf - 1.0)) - 2.0 * xy / (mf * mf)
        })
        .collect();
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
    (mean, var.sqrt())
}

/// Fraction of the `codebook_size` codes that occur, and the perplexity exp(H) of their
/// empirical distribution.
pub fn codebook_usage(indices: &[i64], codebook_size: usize) -> (f64, f64) {
    let mut counts = std::collections::HashMap::<i64, usize>::new();
    for &i in indices {
        *counts.entry(i).or_default() += 1;
    }
    let n = indices.len().max(1) as f64;
    let h: f64 = counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum();
    (counts.len() as f64 / codebook_size as f64, h.exp())
}
