//! `mergevq.Tokenizer`: load, encode, decode, reconstruct. Arrays arrive from the Python layer
//! (`mergevq/__init__.py`) as (dtype, shape, bytes) and leave as bytearrays; every check is the
//! library's (`io::array`, `Tokenizer::keep`, `TokensFile::validate`).
use crate::guard::compute;
use anyhow::{bail, Result};
use burn::prelude::*;
use mergevq::device::Precision;
use mergevq::io::array::{images_from_array, ArrayRef};
use mergevq::io::tokens::TokensFile;
use mergevq::memory::Use;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::tome::KeepPlan;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use std::path::PathBuf;
use std::sync::Arc;

/// A loaded MergeVQ tokenizer (see the `mergevq.Tokenizer` wrapper for the documented API).
#[pyclass(frozen, module = "mergevq._mergevq", name = "Tokenizer")]
pub struct PyTokenizer {
    pub inner: Arc<mergevq::tokenizer::Tokenizer>,
    pub device: Device,
    /// The config and weights files (outputs may not replace them).
    pub paths: Vec<PathBuf>,
}

/// Little-endian bytes of f32 values.
fn f32_bytes(t: Tensor<4>) -> Vec<u8> {
    mergevq::io::readback::floats(t).into_iter().flat_map(f32::to_ne_bytes).collect()
}

/// What `encode` returns: indices and groups as bytes, B, K and L.
type Encoded<'py> = (Bound<'py, PyByteArray>, Bound<'py, PyByteArray>, usize, usize, usize);

/// The images `decode(i)` makes for i in 0..b, as f32 bytes. Decoding goes image by image, as
/// the CLI's `decode`, `reconstruct` and `generate` do: the network's float sums depend on the
/// batch size (by ~1e-6, enough to flip an 8-bit rounding now and then), so one image at a time
/// keeps the results bit-identical to the CLI's and independent of how the caller batches.
fn each_image(b: usize, decode: impl Fn(usize) -> Result<Tensor<4>>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..b {
        out.extend(f32_bytes(decode(i)?));
    }
    Ok(out)
}

/// i64 values of native-endian bytes.
fn i64s(data: &[u8]) -> Vec<i64> {
    data.chunks_exact(8).map(|c| i64::from_ne_bytes(c.try_into().unwrap())).collect()
}

impl PyTokenizer {
    fn plan(&self, keep: Option<usize>) -> Result<KeepPlan> {
        match keep {
            Some(k) => self.inner.keep(k),
            None => Ok(self.inner.plan.clone()),
        }
    }

    fn images(&self, dtype: &str, shape: &[usize], data: &[u8]) -> Result<Tensor<4>> {
        let a = ArrayRef { dtype, shape, data };
        images_from_array(&a, self.inner.cfg.ddconfig.resolution, self.inner.cfg.preprocess, &self.device)
    }
}

#[pymethods]
impl PyTokenizer {
    #[staticmethod]
    #[pyo3(signature = (config, weights, ema=false, device="cpu", precision="f32"))]
    fn load(
        py: Python<'_>,
        config: PathBuf,
        weights: PathBuf,
        ema: bool,
        device: &str,
        precision: &str,
    ) -> PyResult<Self> {
        let device =
            compute(py, || mergevq::device::open(device, precision.parse::<Precision>().map_err(anyhow::Error::msg)?))?;
        compute(py, || {
            let cfg = TokenizerConfig::load(&config)?;
            cfg.memory(1, Use::Inference).check(false)?;
            let tok = mergevq::tokenizer::Tokenizer::open(&cfg, &weights, ema, &device)?;
            Ok(Self { inner: Arc::new(tok), device, paths: vec![config.clone(), weights.clone()] })
        })
    }

    /// (resolution R, L grid tokens, code bits d, default K).
    fn info(&self) -> PyResult<(usize, usize, usize, i64)> {
        let t = &self.inner;
        let k = t.plan.kept().map_err(crate::guard::to_py)?;
        Ok((t.cfg.ddconfig.resolution, t.full_len(), t.cfg.embed_dim, k))
    }

    /// The reachable kept counts K.
    fn reachable(&self) -> Vec<i64> {
        self.inner.plan.reachable()
    }

    /// → (indices int64 bytes [B, K], groups int32 bytes [B, L], B, K, L).
    #[pyo3(signature = (dtype, shape, data, keep=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        dtype: &str,
        shape: Vec<usize>,
        data: &[u8],
        keep: Option<usize>,
    ) -> PyResult<Encoded<'py>> {
        let (idx, grp, b, k, l) = compute(py, || {
            let plan = self.plan(keep)?;
            let t = self.inner.encode(self.images(dtype, &shape, data)?, &plan)?;
            let idx: Vec<u8> = t.indices.iter().flat_map(|v| v.to_ne_bytes()).collect();
            let grp: Vec<u8> = t.group.iter().flatten().flat_map(|&g| (g as i32).to_ne_bytes()).collect();
            Ok((idx, grp, t.group.len(), t.k, self.inner.full_len()))
        })?;
        Ok((PyByteArray::new(py, &idx), PyByteArray::new(py, &grp), b, k, l))
    }

    /// Encodes and decodes (straight-through codes, as `mergevq reconstruct`) → float32 bytes
    /// [B, 3, R, R]. Image by image, as the CLI: the straight-through codes carry the encoder's
    /// float output, whose rounding depends on the batch size.
    #[pyo3(signature = (dtype, shape, data, keep=None))]
    fn reconstruct<'py>(
        &self,
        py: Python<'py>,
        dtype: &str,
        shape: Vec<usize>,
        data: &[u8],
        keep: Option<usize>,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let out = compute(py, || {
            let plan = self.plan(keep)?;
            let x = self.images(dtype, &shape, data)?;
            each_image(x.dims()[0], |i| {
                let t = self.inner.encode(x.clone().narrow(0, i, 1), &plan)?;
                Ok(self.inner.decode(t.quantized, &t.group))
            })
        })?;
        Ok(PyByteArray::new(py, &out))
    }

    /// Decodes int64 indices [B, K] with int64 groups [B, L] → float32 bytes [B, 3, R, R]; the
    /// tokens are checked as a tokens file is (`TokensFile::validate`).
    fn decode<'py>(
        &self,
        py: Python<'py>,
        indices: &[u8],
        groups: &[u8],
        b: usize,
        k: usize,
        l: usize,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let out = compute(py, || {
            let (idx, grp) = (i64s(indices), i64s(groups));
            if b == 0 || idx.len() != b * k || grp.len() != b * l {
                bail!("no tokens: indices [B, K] and groups [B, L] need B ≥ 1 images");
            }
            if let Some(bad) = grp.iter().find(|&&g| g < 0) {
                bail!("group map entry {bad} is negative");
            }
            let file = TokensFile {
                bits: self.inner.cfg.embed_dim,
                resolution: self.inner.cfg.ddconfig.resolution,
                indices: idx.chunks(k.max(1)).map(<[i64]>::to_vec).collect(),
                group: grp.chunks(l.max(1)).map(|g| g.iter().map(|&v| v as usize).collect()).collect(),
            };
            file.validate()?;
            if l != self.inner.full_len() {
                bail!("groups have L={l} tokens per image, the tokenizer makes L={}", self.inner.full_len());
            }
            each_image(b, |i| self.inner.decode_indices(&idx[i * k..(i + 1) * k], &file.group[i..=i], &self.device))
        })?;
        Ok(PyByteArray::new(py, &out))
    }

    /// Decodes full rasters of codes (int64 bytes [B, L], what the generator makes) → float32
    /// bytes [B, 3, R, R].
    fn decode_codes<'py>(&self, py: Python<'py>, codes: &[u8]) -> PyResult<Bound<'py, PyByteArray>> {
        let out = compute(py, || {
            let codes = i64s(codes);
            let limit = 1i64 << self.inner.cfg.embed_dim;
            if let Some(bad) = codes.iter().find(|&&c| c < 0 || c >= limit) {
                bail!("token index {bad} is outside the codebook (0..{limit})");
            }
            let l = self.inner.full_len();
            if codes.is_empty() || !codes.len().is_multiple_of(l) {
                return Ok(f32_bytes(self.inner.decode_codes(&codes)?)); // the library's message
            }
            each_image(codes.len() / l, |i| self.inner.decode_codes(&codes[i * l..(i + 1) * l]))
        })?;
        Ok(PyByteArray::new(py, &out))
    }
}
