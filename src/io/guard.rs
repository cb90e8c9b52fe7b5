//! A fence around third-party code that may panic: decoders (the `image` crate's PNG/JPEG
//! decoders, the `zip` and pickle reader of PyTorch checkpoints) on hostile bytes, and GPU
//! backends on a machine that lacks a piece. Such a panic becomes an error instead of ending the
//! program.
use anyhow::{anyhow, Result};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

thread_local! {
    /// How many guarded calls this thread is inside (they may nest).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs the decoder `f` on `file`; a panic inside it is returned as an error naming the file.
pub fn guarded_decode<T>(file: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_panic(f).unwrap_or_else(|e| Err(anyhow!("{} is malformed: its decoder failed ({e})", file.display())))
}

/// Runs `f`; a panic inside it is returned as its message. While it runs, [`in_guarded_decode`]
/// is true on this thread, so that a panic hook can stay quiet about a panic that is about to be
/// turned into an error.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    result.map_err(|payload| panic_message(payload.as_ref()))
}

/// Whether this thread is inside [`guarded_decode`] or [`catch_panic`] (for a panic hook).
pub fn in_guarded_decode() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// The text of a panic payload (`panic!` with a literal or with format arguments).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_string()
    }
}
