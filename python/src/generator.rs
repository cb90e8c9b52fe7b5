//! `mergevq.Generator`: class-conditional sampling (plain AR or MergeAR) with the library's
//! sampler. The sampler is called in one place (`sample`), so that batched generation can
//! replace it without touching the rest.
use crate::guard::{check_signals, compute};
use crate::tokenizer::PyTokenizer;
use anyhow::{bail, Result};
use mergevq::ar::batched::{generate_batch, image_rng, Request};
use mergevq::ar::generator::{Generator, GeneratorConfig};
use mergevq::ar::sample::SampleOpts;
use mergevq::memory::Use;
use mergevq::validate::check_int;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use rand::rngs::StdRng;
use std::path::PathBuf;
use std::sync::Arc;

/// Images sampled together when `batch` is not given (as `mergevq generate`).
const DEFAULT_BATCH: usize = 16;

/// A loaded generator with the tokenizer whose codes it makes.
#[pyclass(frozen, module = "mergevq._mergevq", name = "Generator")]
pub struct PyGenerator {
    inner: Arc<Generator>,
    tok: Arc<mergevq::tokenizer::Tokenizer>,
}

/// How to sample (the `generate` arguments).
struct Sampling {
    merge: Option<usize>,
    window: Option<usize>,
    opts: SampleOpts,
}

impl PyGenerator {
    /// The merge instruction and cache window of the arguments, checked as `mergevq generate`
    /// checks its flags.
    fn sampling(&self, keep: Option<usize>, mergear: Option<bool>, window: Option<usize>) -> Result<Sampling> {
        let g = &self.inner.cfg;
        let plain = g.gpt.merge_tokens == 0;
        if plain && (mergear == Some(true) || keep.is_some()) {
            bail!("mergear=True and keep need a MergeAR model; this generator is plain AR (gpt.merge_tokens = 0)");
        }
        let mergear = mergear.unwrap_or(!plain);
        if window.is_some() && !mergear {
            bail!("window sets the cache window of MergeAR decoding: pass mergear=True");
        }
        let k = match keep {
            Some(k) => k,
            None => self.tok.plan.kept()? as usize,
        };
        let window = mergear.then(|| window.unwrap_or(g.window));
        Ok(Sampling { merge: g.merge_index(k)?, window, opts: SampleOpts::default() })
    }

    /// Samples the images `first..` of `classes` in one batch, image i from its own stream of
    /// `seed` (as `mergevq generate`): the one call of the library's sampler.
    fn sample(&self, classes: &[usize], first: usize, s: &Sampling, seed: u64) -> Result<Vec<i64>> {
        let g = &self.inner.cfg;
        let keep = s.merge.map_or(g.gpt.block_size, |m| g.candidates[m]);
        let reqs: Vec<Request> =
            classes.iter().map(|&class| Request { class, merge: s.merge, keep, forced: None }).collect();
        let mut rngs: Vec<StdRng> = (first..first + classes.len()).map(|i| image_rng(seed, i as u64)).collect();
        let b = generate_batch(&self.inner.gpt, &reqs, s.window, &s.opts, &mut rngs, |_| ())?;
        Ok(b.images.into_iter().flat_map(|g| g.codes).collect())
    }
}

#[pymethods]
impl PyGenerator {
    #[staticmethod]
    fn load(py: Python<'_>, config: PathBuf, weights: PathBuf, tokenizer: &PyTokenizer) -> PyResult<Self> {
        let tok = tokenizer.inner.clone();
        let device = tokenizer.device.clone();
        compute(py, || {
            let gcfg = GeneratorConfig::load(&config)?;
            gcfg.gpt.memory(2, Use::Inference).check(false)?;
            let g = Generator::with_config(gcfg, &config, &weights, &device)?;
            let gc = &g.cfg.gpt;
            if tok.cfg.embed_dim != gc.bits() || tok.full_len() != gc.block_size {
                bail!(
                    "the AR model {} generates {}-bit codes on L={} tokens, the tokenizer has {} bits and L={}",
                    weights.display(),
                    gc.bits(),
                    gc.block_size,
                    tok.cfg.embed_dim,
                    tok.full_len()
                );
            }
            Ok(Self { inner: Arc::new(g), tok })
        })
    }

    /// (classes, merge-instruction candidates K, default window).
    fn info(&self) -> (usize, Vec<usize>, usize) {
        let c = &self.inner.cfg;
        (c.gpt.class_num, c.candidates.clone(), c.window)
    }

    /// Full rasters of codes, int64 bytes [B, L], one image per class in `classes`, `batch` at a
    /// time; image i draws from its own stream of `seed`, so the batch size does not change the
    /// result (as `mergevq generate --seed`).
    #[pyo3(signature = (classes, keep=None, cfg=1.0, temperature=1.0, top_k=0, top_p=1.0, mergear=None, window=None, batch=None, seed=0))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        classes: Vec<usize>,
        keep: Option<usize>,
        cfg: f64,
        temperature: f64,
        top_k: usize,
        top_p: f64,
        mergear: Option<bool>,
        window: Option<usize>,
        batch: Option<usize>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let codes = compute(py, || {
            if classes.is_empty() {
                bail!("no classes given: pass one class per image to generate");
            }
            if let Some(b) = batch {
                check_int("batch", b, 1, mergevq::validate::MAX_SIZE)?;
            }
            let mut s = self.sampling(keep, mergear, window)?;
            s.opts = SampleOpts { temperature, top_k, top_p, cfg };
            s.opts.validate()?;
            let mut codes = Vec::with_capacity(classes.len() * self.tok.full_len());
            let per_batch = batch.unwrap_or(DEFAULT_BATCH);
            for (i, chunk) in classes.chunks(per_batch).enumerate() {
                codes.extend(self.sample(chunk, i * per_batch, &s, seed)?);
                check_signals()?;
            }
            Ok(codes.into_iter().flat_map(i64::to_ne_bytes).collect::<Vec<u8>>())
        })?;
        Ok(PyByteArray::new(py, &codes))
    }
}
