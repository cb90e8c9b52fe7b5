//! The `mergevq` command line.
use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mergevq::parity::Case;
use std::path::PathBuf;

/// MergeVQ: visual tokenization with token merging and lookup-free quantization.
#[derive(Parser)]
#[command(name = "mergevq", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run golden test cases (folders with case.json + safetensors) and compare every output.
    Parity {
        /// Case folders, or folders holding case folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Parity { dirs } => parity(dirs),
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}").unwrap().progress_chars("=> "));
    pb.set_message(what.to_string());
    pb
}

fn parity(dirs: Vec<PathBuf>) -> Result<()> {
    let mut cases = Vec::new();
    for d in dirs {
        if d.join("case.json").exists() {
            cases.push(d);
        } else if d.is_dir() {
            let mut sub: Vec<PathBuf> = std::fs::read_dir(&d)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("case.json").exists()).collect();
            sub.sort();
            if sub.is_empty() {
                bail!("{} holds no case.json", d.display());
            }
            cases.extend(sub);
        } else {
            bail!("{} is not a case folder", d.display());
        }
    }
    let device = mergevq::device();
    let (mut passed, mut failed) = (0, 0);
    let pb = progress(cases.len() as u64, "parity");
    for dir in &cases {
        let line = match Case::open(dir, &device).and_then(|c| c.run()) {
            Ok(o) => {
                let verdict = if o.pass { "PASS" } else { "FAIL" };
                if o.pass { passed += 1 } else { failed += 1 }
                let mut line = format!("{verdict} {} max_abs_err={:.3e} worst={}", o.name, o.max_abs_err, o.worst);
                for f in o.failures.iter().take(5) {
                    line.push_str(&format!("\n    {f}"));
                }
                line
            }
            Err(e) => {
                failed += 1;
                format!("FAIL {} error: {e:#}", dir.display())
            }
        };
        pb.suspend(|| println!("{line}"));
        pb.inc(1);
    }
    pb.finish_and_clear();
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} golden case(s) failed");
    }
    Ok(())
}
