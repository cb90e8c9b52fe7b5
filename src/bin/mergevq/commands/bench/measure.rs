//! Timing and memory measurement shared by the benchmarks.
use anyhow::Result;
use burn::prelude::*;
use std::time::Instant;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `f` once as a warm-up, then `runs` times.
pub fn time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let mut t = Vec::with_capacity(runs);
    for i in 0..=runs {
        let t0 = Instant::now();
        f()?;
        if i > 0 {
            t.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(t)
}

/// Forces the computation of a tensor (backends may be lazy).
pub fn sync<const D: usize>(t: Tensor<D>) {
    let _ = mergevq::io::readback::floats(t);
}

pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Peak resident memory since the last reset, and the reset itself (Linux /proc).
pub mod rss {
    fn status(field: &str) -> Option<f64> {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = s.lines().find(|l| l.starts_with(field))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
    /// Current RSS in MiB, after resetting the peak to it.
    pub fn reset() -> Option<f64> {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        status("VmRSS:")
    }
    pub fn peak() -> Option<f64> {
        status("VmHWM:")
    }
}
