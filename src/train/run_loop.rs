//! The run loop shared by the tokenizer and AR trainers: steps to `run.steps` (or
//! `run.max_minutes`) with a progress bar, `metrics.jsonl` lines, periodic validation and
//! checkpoints, a loss curve, and the exported EMA weights at the end. Ctrl-C saves a
//! checkpoint at the next step boundary and stops (`interrupt`).
use super::checkpoint::Checkpoint;
use super::config::RunConfig;
use super::interrupt::{self, Interrupted};
use super::run_dir::RunDir;
use anyhow::{anyhow, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Logged values of one step, by name (written to metrics.jsonl in this order).
pub type Losses = Vec<(&'static str, f64)>;

/// Where a trainer stands: its run settings, its locked run folder (and where it may write),
/// and the next step to run (after a resume, the checkpoint's).
pub struct RunState<'a> {
    pub cfg: &'a RunConfig,
    pub dir: &'a RunDir,
    pub step: usize,
}

/// A trainer the run loop drives.
pub trait Trainable {
    /// One step's training data (the tokenizer's micro-batches, the AR model's image indices).
    type Input;
    /// The logged value plotted in `loss_curve.png` ("rec", "ce"; see [`super::curves`]).
    const CURVE: &'static str;
    /// The metrics.jsonl key of the main validation metric ("val_psnr", "val_ce").
    const VAL: &'static str;

    /// The run's settings, its locked folder and the next step to run.
    fn state(&self) -> RunState<'_>;
    /// Prepares the output folder and returns the inputs of the steps from `next_step` on.
    fn start(&mut self) -> Result<Box<dyn Iterator<Item = Result<Self::Input>>>>;
    /// Runs one step (advancing `next_step`) and returns its logged values.
    fn step(&mut self, input: &Self::Input) -> Result<Losses>;
    /// The images in `input`, for a throughput (`images_per_s`); `None`: not reported.
    fn images(&self, _input: &Self::Input) -> Option<usize> {
        None
    }
    /// The progress bar's message after a logged step.
    fn progress(&self, losses: &Losses, images_per_s: Option<f64>) -> String;
    /// Work after step `step` (the tokenizer's sample grids).
    fn after_step(&self, _input: &Self::Input, _step: usize) -> Result<()> {
        Ok(())
    }
    /// The validation metrics of the EMA weights, the main one (`VAL`) first.
    fn validation(&self) -> Result<Losses>;
    fn save_checkpoint(&self) -> Result<()>;
    /// Writes the EMA weights into `out`; returns the file.
    fn export(&self, out: &Path) -> Result<PathBuf>;
}

pub struct Summary {
    /// Steps run in this call (after a resume, from the checkpoint's step on).
    pub steps: usize,
    /// Training images per second (0 where the trainer does not count images).
    pub images_per_s: f64,
    /// The final main validation metric of the EMA weights (`Trainable::VAL`).
    pub val: f64,
    /// The exported EMA weights.
    pub exported: PathBuf,
}

fn progress_bar(total: usize, start: usize) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total as u64);
    pb.set_position(start as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise}<{eta_precise} {msg}").unwrap(),
    );
    pb
}

/// One metrics.jsonl line: the step, its logged values and any extra fields.
fn log_line(metrics: &mut File, step: usize, losses: &Losses, extra: &[(&str, serde_json::Value)]) -> Result<()> {
    let mut line = serde_json::Map::new();
    line.insert("step".into(), step.into());
    for (k, v) in losses {
        line.insert((*k).into(), serde_json::json!(v));
    }
    for (k, v) in extra {
        line.insert((*k).into(), v.clone());
    }
    writeln!(metrics, "{}", serde_json::Value::Object(line))?;
    Ok(())
}

/// Trains until `run.steps` (or `run.max_minutes`), logging, validating and checkpointing;
/// after a SIGINT, saves the checkpoint and returns `Interrupted`.
/// `MERGEVQ_FAULT_EXIT_AFTER_STEP=n` exits with 137 after step n (crash tests).
pub fn run<T: Trainable>(t: &mut T) -> Result<Summary> {
    interrupt::watch();
    let cfg = t.state().cfg.clone();
    let out = &cfg.out_dir;
    let mut inputs = t.start()?;
    let mut metrics = t.state().dir.metrics()?;
    let (start, total) = (t.state().step, cfg.steps);
    let pb = progress_bar(total, start);
    let t0 = Instant::now();
    let mut images = 0usize;
    let fault_exit: Option<usize> = std::env::var("MERGEVQ_FAULT_EXIT_AFTER_STEP").ok().and_then(|v| v.parse().ok());
    while t.state().step < total {
        if interrupt::requested() {
            pb.finish_and_clear();
            t.save_checkpoint()?;
            return Err(Interrupted { step: t.state().step, checkpoint: Checkpoint::path(&cfg) }.into());
        }
        let input = inputs.next().ok_or_else(|| anyhow!("the training inputs ended"))??;
        let n = t.images(&input);
        images += n.unwrap_or(0);
        let ts = Instant::now();
        let losses = t.step(&input)?;
        let ips = n.map(|n| n as f64 / ts.elapsed().as_secs_f64());
        let step = t.state().step;
        if step.is_multiple_of(cfg.log_every.max(1)) || step == total {
            let extra: Vec<_> = ips.map(|v| ("images_per_s", serde_json::json!(v))).into_iter().collect();
            log_line(&mut metrics, step, &losses, &extra)?;
            pb.set_message(t.progress(&losses, ips));
        }
        t.after_step(&input, step)?;
        if cfg.val_every > 0 && step.is_multiple_of(cfg.val_every) {
            log_line(&mut metrics, step, &t.validation()?, &[])?;
        }
        let timed_out = cfg.max_minutes.is_some_and(|m| t0.elapsed().as_secs_f64() > m * 60.0);
        if step.is_multiple_of(cfg.checkpoint_every.max(1)) || step == total || timed_out {
            t.save_checkpoint()?;
        }
        if fault_exit == Some(step) {
            std::process::exit(137);
        }
        pb.set_position(step as u64);
        if timed_out {
            pb.suspend(|| eprintln!("note: stopping at step {step}: run.max_minutes reached"));
            break;
        }
    }
    pb.finish_and_clear();
    let images_per_s = images as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    let exported = t.export(out)?;
    let vals = t.validation()?;
    log_line(&mut metrics, t.state().step, &vals, &[("final", true.into())])?;
    drop(metrics);
    super::curves::write(out, T::CURVE, &t.state().dir.outputs)?;
    let val = vals.iter().find(|(k, _)| *k == T::VAL).map_or(f64::NAN, |(_, v)| *v);
    Ok(Summary { steps: t.state().step - start, images_per_s, val, exported })
}
