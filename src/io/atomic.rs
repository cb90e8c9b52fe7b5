//! Crash-safe file writes: a temporary file next to the target, synced, then renamed over it.
use anyhow::{Context, Result};
use std::path::Path;

/// Writes `data` to a temporary file next to `path`, syncs it, then renames it over `path`:
/// a crash never leaves a half-written file under the real name.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp =
        dir.join(format!(".{}.tmp{}", path.file_name().and_then(|s| s.to_str()).unwrap_or("out"), std::process::id()));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(data).and_then(|_| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    fault_before_rename(path);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

/// Fault injection for tests: `MERGEVQ_FAULT_ABORT_BEFORE_RENAME=<file name>:<n>` kills the
/// process (as a crash would) on the n-th write of that file, after the temporary file is
/// written and before it replaces the real one.
fn fault_before_rename(path: &Path) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let Ok(spec) = std::env::var("MERGEVQ_FAULT_ABORT_BEFORE_RENAME") else { return };
    let Some((name, n)) = spec.rsplit_once(':') else { return };
    if path.file_name().and_then(|f| f.to_str()) == Some(name)
        && WRITES.fetch_add(1, Ordering::SeqCst) + 1 == n.parse().unwrap_or(0)
    {
        std::process::abort();
    }
}
