//! Folder operations whose errors name the path (the OS alone says only "File exists").
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Creates the output folder `dir` (and its parents) unless it exists; refuses a path that
/// is a file.
pub fn create_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("output folder {} is an existing file", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output folder {}", dir.display()))
}

/// The entries of folder `dir` (unsorted), or an error naming it.
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list folder {}", dir.display()))?;
    Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
}
