//! The progress bar every long-running command shows on stderr.
use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items labelled `what`; print through `suspend` while it is shown, and
/// `finish_and_clear` it before the final lines.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}").unwrap().progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
