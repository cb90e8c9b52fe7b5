//! A missing input file or folder as an error type, so that callers (the Python binding's
//! `FileNotFoundError`) can tell it from other errors without matching message text.
use std::fmt;

/// An input that does not exist; the message names it.
#[derive(Debug)]
pub struct Missing(pub String);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Missing {}

/// Whether `e` (or an error it wraps) is a missing input: a [`Missing`] or an I/O error of kind
/// `NotFound`.
pub fn is_missing(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<Missing>().is_some()
            || c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}
