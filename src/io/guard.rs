//! A fence around third-party decoders (the `image` crate's PNG/JPEG decoders, the `zip` and
//! pickle reader of PyTorch checkpoints) that may panic on hostile bytes: such a panic becomes
//! an error naming the file instead of ending the program.
use anyhow::{anyhow, Result};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

thread_local! {
    /// How many guarded decodes this thread is inside (they may nest).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs the decoder `f` on `file`; a panic inside it is returned as an error naming the file.
/// While it runs, [`in_guarded_decode`] is true on this thread, so that a panic hook can stay
/// quiet about a panic that is about to be turned into an error.
pub fn guarded_decode<T>(file: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    result.unwrap_or_else(|payload| {
        Err(anyhow!("{} is malformed: its decoder failed ({})", file.display(), panic_message(payload.as_ref())))
    })
}

/// Whether this thread is inside [`guarded_decode`] (for a panic hook).
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
