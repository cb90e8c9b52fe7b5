//! Ctrl-C during training: the first SIGINT asks the run loop to save a checkpoint at the next
//! step boundary and stop (`Interrupted`); a second one exits at once (status 130).
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// SIGINTs received since `watch`.
static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Installs the SIGINT handler (once per process; a handler set by someone else is kept).
pub fn watch() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if REQUESTS.fetch_add(1, Ordering::SeqCst) > 0 {
                std::process::exit(130);
            }
        });
    });
}

/// Whether a SIGINT asked the run to stop.
pub fn requested() -> bool {
    REQUESTS.load(Ordering::SeqCst) > 0
}

/// A run stopped by Ctrl-C after saving its checkpoint.
#[derive(Debug)]
pub struct Interrupted {
    /// The step the checkpoint holds (the next one to run).
    pub step: usize,
    pub checkpoint: PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted: saved the checkpoint {} at step {}; continue with --resume",
            self.checkpoint.display(),
            self.step
        )
    }
}

impl std::error::Error for Interrupted {}
