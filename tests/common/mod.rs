//! What the integration tests share: the crate root, the binary and its error contract,
//! scratch folders, the golden cases and a freshly initialised tiny tokenizer.
// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crate root (configs/, assets/, tests/data/ are relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `mergevq` binary, run in the crate root.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mergevq"));
    c.current_dir(root());
    c
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run mergevq")
}

/// `run` of `args` followed by `extra`: one command line tried with several endings.
pub fn run_with(args: &[&str], extra: &[&str]) -> Output {
    run(&[args, extra].concat())
}

/// Stdout of a run that must succeed (stderr in the failure message).
pub fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A failure with exit code 1, one `error:` line on stderr that mentions `needle`, and no panic.
pub fn assert_clean_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(lines[0].contains(needle), "error line `{}` should mention `{needle}`", lines[0]);
}

/// An empty scratch folder of this test binary and process.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mergevq-{}-{}-{name}", env!("CARGO_CRATE_NAME"), std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The golden cases: $MERGEVQ_GOLDEN, or ../shared/golden next to the crate.
pub fn golden_dir() -> PathBuf {
    std::env::var_os("MERGEVQ_GOLDEN").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/golden"))
}

/// A tokenizer of configs/tiny_32.toml with random weights (`init --seed`), in `dir`.
pub fn tiny_tokenizer(dir: &Path, seed: u64) -> PathBuf {
    let w = dir.join("tok.safetensors");
    let cfg = root().join("configs/tiny_32.toml");
    ok(run(&["init", "--config", cfg.to_str().unwrap(), "-o", w.to_str().unwrap(), "--seed", &seed.to_string()]));
    w
}
