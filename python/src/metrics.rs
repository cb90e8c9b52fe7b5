//! `mergevq.metrics`: PSNR, SSIM, LPIPS and FID of arrays, computed by the library's metric
//! code (`eval::metrics`, `loss::lpips`, `eval::inception`) exactly as `eval-recon` does.
use crate::guard::compute;
use anyhow::{bail, Result};
use burn::prelude::*;
use image::RgbImage;
use mergevq::eval::metrics::{check_sample_size, frechet_distance, Stats};
use mergevq::eval::{features_of, load_inception, load_lpips, INCEPTION_WEIGHTS, LPIPS_WEIGHTS};
use mergevq::io::array::{rgb_images, ArrayRef, ImageList};
use mergevq::io::image::rgb_to_tensor;
use mergevq::loss::lpips::Lpips;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An array from the Python layer: (dtype, shape, bytes).
type Array = (String, Vec<usize>, PyBackedBytes);

fn images(a: &Array) -> Result<Vec<RgbImage>> {
    rgb_images(&ArrayRef { dtype: &a.0, shape: &a.1, data: &a.2 })
}

/// Both batches, which must hold as many images of one size.
fn pair(a: &Array, b: &Array) -> Result<(Vec<RgbImage>, Vec<RgbImage>)> {
    let (x, y) = (images(a)?, images(b)?);
    if x.len() != y.len() || x[0].dimensions() != y[0].dimensions() {
        bail!("the metric compares image pairs: got arrays of shapes {:?} and {:?}", a.1, b.1);
    }
    Ok((x, y))
}

/// The weights file: `weights`, else `$MERGEVQ_WEIGHTS/<name>`, else `default` (relative to the
/// working directory, where `scripts/fetch-weights.sh` puts it in a checkout).
fn weights_path(weights: Option<PathBuf>, default: &str) -> PathBuf {
    weights.unwrap_or_else(|| match std::env::var_os("MERGEVQ_WEIGHTS") {
        Some(dir) => Path::new(&dir).join(Path::new(default).file_name().unwrap_or_default()),
        None => PathBuf::from(default),
    })
}

/// Mean PSNR (dB, 0–255 scale) over image pairs.
#[pyfunction]
pub fn psnr(py: Python<'_>, a: Array, b: Array) -> PyResult<f64> {
    compute(py, || {
        let (x, y) = pair(&a, &b)?;
        Ok(x.iter().zip(&y).map(|(p, q)| mergevq::eval::metrics::psnr(p, q)).sum::<f64>() / x.len() as f64)
    })
}

/// Mean SSIM over image pairs.
#[pyfunction]
pub fn ssim(py: Python<'_>, a: Array, b: Array) -> PyResult<f64> {
    compute(py, || {
        let (x, y) = pair(&a, &b)?;
        Ok(x.iter().zip(&y).map(|(p, q)| mergevq::eval::metrics::ssim(p, q)).sum::<f64>() / x.len() as f64)
    })
}

/// LPIPS networks loaded so far, by weights file.
static LPIPS: Mutex<Option<HashMap<PathBuf, Arc<Lpips>>>> = Mutex::new(None);

fn lpips_net(path: &Path, device: &Device) -> Result<Arc<Lpips>> {
    let mut cache = LPIPS.lock().unwrap_or_else(|p| p.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(net) = map.get(path) {
        return Ok(net.clone());
    }
    let net = Arc::new(load_lpips(path, device)?);
    map.insert(path.to_path_buf(), net.clone());
    Ok(net)
}

/// Mean LPIPS (VGG16) over image pairs.
#[pyfunction]
#[pyo3(signature = (a, b, weights=None))]
pub fn lpips(py: Python<'_>, a: Array, b: Array, weights: Option<PathBuf>) -> PyResult<f64> {
    compute(py, || {
        let device = mergevq::device();
        let net = lpips_net(&weights_path(weights, LPIPS_WEIGHTS), &device)?;
        let (x, y) = pair(&a, &b)?;
        let mut total = 0.0;
        for (cx, cy) in x.chunks(16).zip(y.chunks(16)) {
            let t = |c: &[RgbImage]| Tensor::cat(c.iter().map(|i| rgb_to_tensor(i, &device)).collect(), 0);
            let d = mergevq::io::readback::floats(net.forward(t(cx), t(cy)));
            total += d.iter().map(|&v| v as f64).sum::<f64>();
        }
        Ok(total / x.len() as f64)
    })
}

/// FID between two sets of images (any sizes, each set of one size).
#[pyfunction]
#[pyo3(signature = (a, b, weights=None))]
pub fn fid(py: Python<'_>, a: Array, b: Array, weights: Option<PathBuf>) -> PyResult<f64> {
    compute(py, || {
        let device = mergevq::device();
        let net = load_inception(&weights_path(weights, INCEPTION_WEIGHTS), &device)?;
        let (x, y) = (images(&a)?, images(&b)?);
        check_sample_size("FID", x.len().min(y.len()))?;
        let fa = features_of(&net, &ImageList(x), 16, &device, &|_| ())?;
        let fb = features_of(&net, &ImageList(y), 16, &device, &|_| ())?;
        Ok(frechet_distance(&Stats::from_features(&fa), &Stats::from_features(&fb)))
    })
}
