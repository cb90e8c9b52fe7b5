//! `parity`: golden test cases run through the library (`mergevq::parity::Case`).
use crate::progress;
use anyhow::{anyhow, bail, Result};
use burn::prelude::Device;
use mergevq::io::guard::catch_panic;
use mergevq::parity::Case;
use std::path::{Path, PathBuf};

/// `mergevq parity`.
#[derive(clap::Args)]
pub struct ParityArgs {
    /// Case folders, or folders holding case folders.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

impl ParityArgs {
    pub fn run(self) -> Result<()> {
        let cases = case_dirs(self.dirs)?;
        let device = mergevq::device();
        let (mut passed, mut failed) = (0, 0);
        let pb = progress::bar(cases.len() as u64, "parity");
        for dir in &cases {
            let (pass, line) = run_case(dir, &device);
            if pass {
                passed += 1;
            } else {
                failed += 1;
            }
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
}

/// Runs one case: whether it passed, and its report line (with its first five failures). A case
/// whose backend panics fails with the panic's message; the cases after it still run.
fn run_case(dir: &Path, device: &Device) -> (bool, String) {
    let outcome = catch_panic(|| Case::open(dir, device).and_then(|c| c.run()))
        .unwrap_or_else(|panic| Err(anyhow!("panicked: {panic}")));
    match outcome {
        Ok(o) => {
            let verdict = if o.pass { "PASS" } else { "FAIL" };
            let mut line = format!("{verdict} {} max_abs_err={:.3e} worst={}", o.name, o.max_abs_err, o.worst);
            for f in o.failures.iter().take(5) {
                line.push_str(&format!("\n    {f}"));
            }
            (o.pass, line)
        }
        Err(e) => (false, format!("FAIL {} error: {e:#}", dir.display())),
    }
}

/// The case folders named, or found one level below the folders named, in sorted order.
fn case_dirs(dirs: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    let mut cases = Vec::new();
    for d in dirs {
        if d.join("case.json").exists() {
            cases.push(d);
        } else if d.is_dir() {
            let mut sub: Vec<PathBuf> =
                mergevq::io::fs::list_dir(&d)?.into_iter().filter(|p| p.join("case.json").exists()).collect();
            sub.sort();
            if sub.is_empty() {
                bail!("{} holds no case.json", d.display());
            }
            cases.extend(sub);
        } else {
            bail!("{} is not a case folder", d.display());
        }
    }
    Ok(cases)
}
