//! The number of CPU threads the library computes with (`mergevq.set_threads`): a rayon pool
//! that every call runs in (burn's CPU backend parallelises with rayon).
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex};

static POOL: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);

/// The pool `set_threads` made, if any (else calls run on rayon's global pool, one thread per
/// core).
pub fn pool() -> Option<Arc<ThreadPool>> {
    POOL.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Sets the number of CPU threads used by every later call (0: one per core).
#[pyfunction]
pub fn set_threads(n: usize) -> PyResult<()> {
    let n = mergevq::validate::check_int("threads", n, 0, 4096).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let pool = if n == 0 {
        None
    } else {
        Some(Arc::new(
            ThreadPoolBuilder::new().num_threads(n).build().map_err(|e| PyValueError::new_err(e.to_string()))?,
        ))
    };
    *POOL.lock().unwrap_or_else(|p| p.into_inner()) = pool;
    Ok(())
}

/// The number of CPU threads calls use now.
#[pyfunction]
pub fn get_threads() -> usize {
    match POOL.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        Some(p) => p.current_num_threads(),
        None => rayon::current_num_threads(),
    }
}
