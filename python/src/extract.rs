//! `mergevq.extract_tokens`: the twin of `mergevq extract-tokens`, by the same library code: a
//! data set into one token set file (`*.safetensors`) or a folder of shards that a killed or
//! interrupted run resumes. Ctrl-C is honoured between batches.
use crate::guard::{check_signals, compute, Raised};
use crate::tokenizer::PyTokenizer;
use anyhow::Result;
use mergevq::io::data;
use mergevq::io::marker::Format;
use mergevq::io::output::Outputs;
use mergevq::io::tokens::{extract_shards, Extraction, TokenSet};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tokenizes `data` (an image folder or `fashion-mnist[:split]`) into `output`; returns a
/// report dict (images, shards, reused, candidates, classes).
#[pyfunction]
#[pyo3(signature = (tokenizer, data, output, keep=None, limit=None, seed=0, shard_size=10_000, batch=32, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn extract_tokens<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    data: String,
    output: PathBuf,
    keep: Option<usize>,
    limit: Option<usize>,
    seed: u64,
    shard_size: usize,
    batch: usize,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let tok = &tokenizer.inner;
    let done = AtomicU64::new(0);
    // After every batch: report progress to the callback and raise a pending Ctrl-C.
    let between = || -> Result<()> {
        if let Some(cb) = &progress {
            let n = done.swap(0, Ordering::Relaxed);
            Python::attach(|py| cb.call1(py, (n,)).map(drop)).map_err(Raised)?;
        }
        check_signals()
    };
    let count = |k: u64| {
        done.fetch_add(k, Ordering::Relaxed);
    };
    let (images, shards, reused, candidates, classes) = compute(py, || {
        let mut out = Outputs::new(tokenizer.paths.iter());
        out.add(std::path::Path::new(&data));
        let source = data::open(&data)?;
        let n = limit.unwrap_or(usize::MAX).min(source.len());
        let job = Extraction { keep, seed, batch };
        if output.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) {
            out.check(&output, Format::Safetensors(TokenSet::MARKER))?;
            let set = job.run(tok, source, 0..n, &count, &between)?;
            set.save(&output, &out)?;
            between()?;
            return Ok((set.len(), 1, 0, set.candidates, set.classes));
        }
        let r = extract_shards(tok, source, &data, n, &job, shard_size, &output, &out, &count, &between)?;
        between()?;
        Ok((r.images, r.shards, r.reused, r.candidates, r.classes))
    })?;
    let d = PyDict::new(py);
    d.set_item("images", images)?;
    d.set_item("shards", shards)?;
    d.set_item("reused", reused)?;
    d.set_item("candidates", candidates)?;
    d.set_item("classes", classes)?;
    Ok(d)
}
