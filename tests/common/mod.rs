//! What the integration tests share: the crate root, the binary and its error contract,
//! scratch folders, the golden cases and a freshly initialised tiny tokenizer.
// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

pub mod train;

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

/// Every file and symbolic link under `dirs`: its bytes, or for a link its target.
pub fn snapshot(dirs: &[&Path]) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_symlink() {
            out.insert(p.clone(), std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes());
        } else if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// Every file of `before` (a `snapshot`) is still there with the same bytes.
pub fn assert_unchanged(before: &std::collections::BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    for (p, bytes) in before {
        let now = match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_symlink() => std::fs::read_link(p).ok().map(|t| t.into_os_string().into_encoded_bytes()),
            Ok(m) if m.is_file() => std::fs::read(p).ok(),
            _ => None,
        };
        assert!(now.as_ref() == Some(bytes), "{what}: {} changed", p.display());
    }
}

/// A small class-conditional GPT with random weights (seed 7): 6-bit codes factorized 3 + 3,
/// 4 classes, `merge_tokens` merge instructions (0: plain), 2 spatial layers.
pub fn tiny_gpt(merge_tokens: usize, block: usize, dim: usize, heads: usize) -> mergevq::ar::gpt::Gpt {
    let cfg = mergevq::ar::gpt::GptConfig {
        factorized_bits: [3, 3],
        block_size: block,
        dim,
        n_head: heads,
        spatial_n_layer: 2,
        factorized_n_layer: 1,
        class_num: 4,
        merge_tokens,
        multiple_of: 32,
        rope_base: 10000.0,
        class_dropout: 0.1,
    };
    mergevq::ar::gpt::Gpt::load(mergevq::io::weights::Weights::random(7, &mergevq::device()).root(), &cfg).unwrap()
}
