//! Every call into the library goes through [`compute`]: the GIL is released, the work runs on
//! the thread pool `set_threads` chose, a panic is caught (it never crosses into Python) and an
//! error becomes a Python exception with the CLI's one-line message.
use crate::threads;
use mergevq::io::missing::is_missing;
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rayon::ThreadPool;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A Ctrl-C (or other signal handler's exception) the calling thread saw while a pool thread
/// computed for it.
type Pending = Arc<Mutex<Option<PyErr>>>;

thread_local! {
    /// On a pool thread computing for a caller: where that caller leaves its pending signal.
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

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
    let (out, pending) = py.detach(|| match threads::pool() {
        None => (catch_unwind(AssertUnwindSafe(f)), None),
        Some(pool) => on_pool(&pool, f),
    });
    // A Ctrl-C after the last check between batches still interrupts the caller.
    if let (Ok(_), Some(e)) = (&out, pending) {
        return Err(e);
    }
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

/// Runs `f` on a thread of `pool` (so that burn's rayon work uses that pool) while the calling
/// thread waits and, every 50 ms, runs Python's signal handlers (they only run on the main
/// thread); a Ctrl-C it sees is handed to `f`'s next [`check_signals`], or returned when `f` ends.
fn on_pool<T: Send>(
    pool: &ThreadPool,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> (thread::Result<anyhow::Result<T>>, Option<PyErr>) {
    let pending: Pending = Arc::new(Mutex::new(None));
    let (tx, rx) = channel();
    pool.in_place_scope(|s| {
        let mine = pending.clone();
        s.spawn(move |_| {
            PENDING.with(|p| *p.borrow_mut() = Some(mine));
            let r = catch_unwind(AssertUnwindSafe(f));
            PENDING.with(|p| *p.borrow_mut() = None);
            let _ = tx.send(r);
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => return (r, pending.lock().unwrap_or_else(|p| p.into_inner()).take()),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        pending.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let lost: Box<dyn std::any::Any + Send> = Box::new("the computing thread ended without a result");
                    return (Err(lost), None);
                }
            }
        }
    })
}

/// Between batches: takes the GIL for a moment and raises a pending Ctrl-C (or other signal
/// handler's exception) as an error that `compute` hands back to Python unchanged.
pub fn check_signals() -> anyhow::Result<()> {
    let pending = PENDING.with(|p| p.borrow().clone());
    match pending {
        Some(p) => match p.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(Raised(e).into()),
            None => Ok(()),
        },
        None => Python::attach(|py| py.check_signals()).map_err(|e| Raised(e).into()),
    }
}
