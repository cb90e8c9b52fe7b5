//! The `mergevq._mergevq` extension module: the Rust core behind the `mergevq` Python package.
//! The Python layer (`python/mergevq/`) turns numpy / DLPack / `__array__` inputs into
//! (dtype, shape, bytes) and the results back into numpy arrays.
mod extract;
mod generator;
mod guard;
mod metrics;
mod threads;
mod tokenizer;

use pyo3::prelude::*;

#[pymodule]
fn _mergevq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_class::<generator::PyGenerator>()?;
    m.add_function(wrap_pyfunction!(threads::set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads::get_threads, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::psnr, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::ssim, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::lpips, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::fid, m)?)?;
    m.add_function(wrap_pyfunction!(extract::extract_tokens, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
