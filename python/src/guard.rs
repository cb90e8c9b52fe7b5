//! Every call into the library goes through [`compute`]: the GIL is released, the work runs on
//! the thread pool `set_threads` chose, a panic is caught (it never crosses into Python) and an
//! error becomes a Python exception with the CLI's one-line message.
use crate::threads;
use mergevq::io::missing::is_missing;
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A Python exception raised while the library ran (Ctrl-C seen between batches), passed
/// through unchanged.
#[derive(Debug)]
pub struct Raised(pub PyErr);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for Raised {}

/// The one-line message of `e`, as the CLI prints it after `error: `.
pub fn message(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

/// `e` as a Python exception: `FileNotFoundError` for a missing input, `ValueError` otherwise.
pub fn to_py(e: anyhow::Error) -> PyErr {
    if let Some(r) = e.downcast_ref::<Raised>() {
        return Python::attach(|py| r.0.clone_ref(py));
    }
    if is_missing(&e) {
        PyFileNotFoundError::new_err(message(&e))
    } else {
        PyValueError::new_err(message(&e))
    }
}

/// Runs `f` without the GIL on the chosen thread pool, catching panics.
pub fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> anyhow::Result<T> + Send) -> PyResult<T> {
    let out = py.detach(|| threads::install(|| catch_unwind(AssertUnwindSafe(f))));
    match out {
        Ok(r) => r.map_err(to_py),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!("internal error in mergevq (a bug, please report it): {what}")))
        }
    }
}

/// Between batches: takes the GIL for a moment and raises a pending Ctrl-C (or other signal
/// handler's exception) as an error that `compute` hands back to Python unchanged.
pub fn check_signals() -> anyhow::Result<()> {
    Python::attach(|py| py.check_signals()).map_err(|e| Raised(e).into())
}
