//! A training run's folder (`run.out_dir`): one trainer at a time (an OS advisory lock on
//! `train.lock`, released when the process ends, so a killed run can still `--resume`), and
//! a folder that holds a run is continued (`--resume`) or started over (`--force`) only when
//! asked.
use super::checkpoint::Checkpoint;
use super::config::RunConfig;
use crate::io::marker::{Format, Marker};
use crate::io::output::Outputs;
use crate::io::safetensors::WEIGHTS;
use anyhow::{bail, Context, Result};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// How a trainer starts in its out_dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A new run; refused when out_dir holds one.
    Fresh,
    /// Continue from out_dir's checkpoint.
    Resume,
    /// A new run over the one in out_dir: its log starts over, its checkpoint and weights are
    /// replaced when written.
    Force,
}

/// The training log: one JSON object per line, each with its step.
pub const METRICS: Format = Format::JsonLines(Marker { key: "step", value: None, what: "mergevq training log" });

/// The lock file a trainer holds in its out_dir.
const LOCK: &str = "train.lock";

/// A locked run folder and where its trainer may write.
pub struct RunDir {
    pub dir: PathBuf,
    /// Where the trainer may write: anywhere but its inputs.
    pub outputs: Outputs,
    /// Held while the trainer lives; the OS releases it when the process ends.
    _lock: File,
}

impl RunDir {
    /// Creates and locks `run.out_dir` for a trainer whose EMA weights go to `export` (a file
    /// name in it); refuses a folder another trainer holds, a used folder for a `Fresh` start,
    /// and run files (checkpoint, log, weights, loss curve) of another kind than ours.
    pub fn open(run: &RunConfig, start: Start, outputs: Outputs, export: &str) -> Result<Self> {
        let dir = run.out_dir.clone();
        outputs.dir(&dir)?;
        let lock = lock(&dir)?;
        let files = [
            (Checkpoint::path(run), Format::Safetensors(Checkpoint::MARKER)),
            (dir.join("metrics.jsonl"), METRICS),
            (dir.join(export), Format::Safetensors(WEIGHTS)),
            (dir.join("loss_curve.png"), Format::Image),
        ];
        if let (Start::Fresh, Some((used, _))) = (start, files.iter().find(|(p, _)| p.exists())) {
            bail!(
                "{} holds a training run ({} exists): continue it with --resume, or start over with --force",
                dir.display(),
                used.display()
            );
        }
        for (path, format) in &files {
            outputs.check(path, *format)?;
        }
        let (metrics, _) = &files[1];
        if start == Start::Force && metrics.exists() {
            outputs.write(metrics, METRICS, b"")?;
        }
        Ok(Self { dir, outputs, _lock: lock })
    }

    /// metrics.jsonl, opened for appending.
    pub fn metrics(&self) -> Result<File> {
        self.outputs.append(&self.dir.join("metrics.jsonl"), METRICS)
    }
}

/// Takes the lock of the run folder `dir`, or names the folder another trainer holds.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => bail!(
            "another trainer is running in {} (it holds {}): wait for it to finish or choose another run.out_dir",
            dir.display(),
            path.display()
        ),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}
