//! Numeric options at 0, negative, absurd or non-finite, across every command: each gives one
//! clear error naming the flag (clap's usage error, exit 2, for values out of range; the
//! program's `error:` line, exit 1, for what only the models can tell), never a panic, and no
//! input file changes. Plus `generate` from the bundled models, end to end.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One bad command line: its arguments (`{tmp}` is a scratch folder), the exit code and a
/// string the first `error:` line must contain.
struct Case {
    args: &'static [&'static str],
    code: i32,
    needle: &'static str,
}

const fn case(args: &'static [&'static str], code: i32, needle: &'static str) -> Case {
    Case { args, code, needle }
}

/// The bundled generator and tokenizer, then `generate` flags.
macro_rules! generate {
    ($($a:expr),*) => {
        &["generate", "--ar", "assets/demo/gpt.safetensors", "--ar-config", "assets/demo/gpt.toml",
          "--tokenizer", "assets/demo/tokenizer.safetensors", "--config", "assets/demo/tokenizer.toml",
          "-o", "{tmp}/g.png", $($a),*]
    };
}

/// The bundled tokenizer, then a command's flags.
macro_rules! with_tokenizer {
    ($cmd:expr, $($a:expr),*) => {
        &[$cmd, "--config", "assets/demo/tokenizer.toml", "--weights", "assets/demo/tokenizer.safetensors", $($a),*]
    };
}

/// `eval-recon`/`probe`/`extract-tokens` style: --tokenizer and --config.
macro_rules! with_model {
    ($cmd:expr, $($a:expr),*) => {
        &[$cmd, "--tokenizer", "assets/demo/tokenizer.safetensors", "--config", "assets/demo/tokenizer.toml", $($a),*]
    };
}

const IMG: &str = "assets/demo/images/0_00019.png";

const CASES: &[Case] = &[
    // generate: sampling options.
    case(generate!("--top-p", "NaN"), 2, "--top-p"),
    case(generate!("--top-p", "0"), 2, "--top-p"),
    case(generate!("--top-p", "1.5"), 2, "--top-p"),
    case(generate!("--temperature", "0"), 2, "--temperature"),
    case(generate!("--temperature", "inf"), 2, "--temperature"),
    case(generate!("--temperature", "-1"), 2, "--temperature"),
    case(generate!("--cfg", "NaN"), 2, "--cfg"),
    case(generate!("--cfg", "-inf"), 2, "--cfg"),
    case(generate!("--num", "0"), 2, "--num"),
    case(generate!("--num", "-3"), 2, "--num"),
    case(generate!("--num", "99999999999"), 2, "--num"),
    case(generate!("--batch", "0"), 2, "--batch"),
    case(generate!("--top-k", "-1"), 2, "--top-k"),
    case(generate!("--class", "-1"), 2, "--class"),
    case(generate!("--class", "10"), 1, "class 10"),
    case(generate!("--keep", "0"), 2, "--keep"),
    case(generate!("--keep", "18446744073709551615"), 2, "--keep"),
    case(generate!("--keep", "17"), 1, "K=17"),
    case(generate!("--window", "3"), 1, "--window"),
    case(generate!("--mergear", "--window", "-2"), 2, "--window"),
    case(generate!("--seed", "-1"), 2, "--seed"),
    // reconstruct, encode, decode.
    case(with_tokenizer!("reconstruct", "--keep", "0", IMG, "-o", "{tmp}/r"), 2, "--keep"),
    case(with_tokenizer!("reconstruct", "--keep", "-16", IMG, "-o", "{tmp}/r"), 2, "--keep"),
    case(with_tokenizer!("encode", "--keep", "18446744073709551615", IMG, "-o", "{tmp}/t"), 2, "--keep"),
    case(with_tokenizer!("reconstruct", "--keep", "15", IMG, "-o", "{tmp}/r"), 1, "K=15"),
    case(with_tokenizer!("decode", "--keep", "16", "{tmp}/none.safetensors", "-o", "{tmp}/d"), 1, "--keep"),
    case(with_tokenizer!("reconstruct", IMG, "-o", "assets/demo/gpt.toml"), 1, "assets/demo/gpt.toml"),
    // evaluation and token extraction.
    case(with_model!("eval-recon", "--data", "x", "-o", "{tmp}/e", "--num", "0"), 2, "--num"),
    case(with_model!("eval-recon", "--data", "x", "-o", "{tmp}/e", "--batch", "0"), 2, "--batch"),
    case(with_model!("eval-recon", "--data", "x", "-o", "{tmp}/e", "--keep", "16,0"), 2, "--keep"),
    case(with_model!("eval-recon", "--data", "x", "-o", "{tmp}/e", "--keep", ""), 2, "--keep"),
    case(with_model!("eval-recon", "--data", "x", "-o", "{tmp}/e", "--fid-num", "1"), 2, "--fid-num"),
    case(with_model!("eval-recon", "--data", "x", "-o", "{tmp}/e", "--compare", "=r.json"), 2, "--compare"),
    case(&["eval-gen", "--samples", "x", "--reference", "y", "-o", "{tmp}/e", "--batch", "0"], 2, "--batch"),
    case(with_model!("probe", "--train", "x", "--val", "y", "--lr", "NaN"), 2, "--lr"),
    case(with_model!("probe", "--train", "x", "--val", "y", "--lr", "-1"), 2, "--lr"),
    case(with_model!("probe", "--train", "x", "--val", "y", "--epochs", "0"), 2, "--epochs"),
    case(with_model!("probe", "--train", "x", "--val", "y", "--num-train", "0"), 2, "--num-train"),
    case(with_model!("probe", "--train", "x", "--val", "y", "--num-val", "-5"), 2, "--num-val"),
    case(with_model!("extract-tokens", "--data", "x", "-o", "{tmp}/t", "--keep", "0"), 2, "--keep"),
    case(with_model!("extract-tokens", "--data", "x", "-o", "{tmp}/t", "--limit", "0"), 2, "--limit"),
    case(&["init", "--config", "assets/demo/tokenizer.toml", "-o", "{tmp}/w", "--seed", "-1"], 2, "--seed"),
    // benchmarks.
    case(&["bench", "ar", "--heads", "0"], 2, "--heads"),
    case(&["bench", "ar", "--dim", "0"], 2, "--dim"),
    case(&["bench", "ar", "--layers", "-1"], 2, "--layers"),
    case(&["bench", "ar", "--lengths", "0"], 2, "--lengths"),
    case(&["bench", "ar", "--lengths", "16,15"], 2, "--lengths"),
    case(&["bench", "ar", "--lengths", ""], 2, "--lengths"),
    case(&["bench", "ar", "--cfg", "NaN"], 2, "--cfg"),
    case(&["bench", "ar", "--runs", "0"], 2, "--runs"),
    case(&["bench", "ar", "--batch", "0"], 2, "--batch"),
    case(&["bench", "ar", "--lengths", "16", "--runs", "1"], 1, "L = 256 or 1024"),
    case(&["bench", "ar", "--lengths", "16", "--dim", "12", "--heads", "4", "--runs", "1"], 1, "dim 12"),
    case(&["bench", "lfq", "--bits", "0"], 2, "--bits"),
    case(&["bench", "lfq", "--bits", "64"], 2, "--bits"),
    case(&["bench", "lfq", "--tokens", "10"], 2, "--tokens"),
    case(&["bench", "lfq", "--batch", "0"], 2, "--batch"),
    case(&["bench", "tome", "--r", "0"], 2, "--r"),
    case(&["bench", "tome", "--r", "-4"], 2, "--r"),
    case(&["bench", "tome", "--r", "200", "--runs", "1"], 1, "--r"),
    case(&["bench", "tome", "--tokens", "1"], 2, "--tokens"),
    case(&["bench", "tome", "--dim", "0"], 2, "--dim"),
    case(&["bench", "tokenizer", "--config", "assets/demo/tokenizer.toml", "--batch", "0"], 2, "--batch"),
    case(&["bench", "tokenizer", "--config", "assets/demo/tokenizer.toml", "--keep", "0"], 2, "--keep"),
    case(&["bench", "train", "--config", "configs/train_fmnist_tiny.toml", "--batch", "0"], 2, "--batch"),
    case(&["bench", "all", "--batches", "1,0"], 2, "--batches"),
    case(&["bench", "all", "--runs", "-1"], 2, "--runs"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mergevq-opts-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary in the crate root (the bundled paths are relative to it).
fn run(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mergevq")).args(args).current_dir(root()).output().expect("run mergevq")
}

/// The bytes of every file under assets/ and configs/ and of every file an argument names.
fn snapshot(args: &[String]) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files: Vec<PathBuf> = args.iter().map(|a| root().join(a)).filter(|p| p.is_file()).collect();
    for dir in ["assets/demo", "configs"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    files.into_iter().filter(|p| p.is_file()).map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

/// Exit `code`, no panic, and the first stderr line an `error:` naming `needle`; the
/// program's own errors (exit 1) are one line in all.
fn assert_refused(out: &Output, code: i32, needle: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: stderr: {err}");
    assert!(!err.contains("panicked"), "{what}: panic: {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error:") && first.contains(needle), "{what}: `{first}` should name `{needle}`");
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "{what}: one error line expected: {err}");
    }
}

#[test]
fn bad_numeric_options_are_refused_naming_the_flag() {
    let d = tmp("cases");
    for c in CASES {
        let args: Vec<String> = c.args.iter().map(|a| a.replace("{tmp}", d.to_str().unwrap())).collect();
        let before = snapshot(&args);
        let out = run(&args);
        let what = args.join(" ");
        assert_refused(&out, c.code, c.needle, &what);
        assert!(snapshot(&args) == before, "{what}: an input file changed");
        assert!(!d.join("g.png").exists(), "{what}: wrote an output");
    }
}

/// The bundled generator samples with its own config: a 2×2 grid of 32-pixel images, and a
/// negative guidance scale reads as a value.
#[test]
fn generate_samples_from_the_bundled_models() {
    let d = tmp("bundled");
    let png = d.join("grid.png");
    for extra in [&["--mergear"][..], &["--cfg", "-3", "--keep", "25"][..]] {
        let mut args: Vec<String> = generate!("--num", "4").iter().map(|s| s.to_string()).collect();
        args[10] = png.to_str().unwrap().to_string();
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = run(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (64, 64));
    }
}

/// A generator config whose weights do not fit, whose token set is missing, or with a typo:
/// one line naming the file at fault (and the line of the typo).
#[test]
fn generator_config_errors_name_the_file() {
    let d = tmp("gencfg");
    let typo = d.join("typo.toml");
    let text = std::fs::read_to_string(root().join("assets/demo/gpt.toml")).unwrap();
    std::fs::write(&typo, text.replace("window = 2", "windw = 2")).unwrap();
    let wrong_type = d.join("type.toml");
    std::fs::write(&wrong_type, text.replace("window = 2", "window = \"two\"")).unwrap();
    let mergear = d.join("mergear.toml");
    let ar = std::fs::read_to_string(root().join("configs/ar_fmnist_mergear.toml")).unwrap();
    std::fs::write(&mergear, ar.replace("runs/fmnist_tokens.safetensors", "missing_tokens.safetensors")).unwrap();
    let cases: [(&Path, &str); 4] = [
        (Path::new("configs/ar_fmnist_plain.toml"), "assets/demo/gpt.safetensors"),
        (&mergear, "missing_tokens.safetensors"),
        (&typo, "line 3"),
        (&wrong_type, "line 3"),
    ];
    for (cfg, needle) in cases {
        let mut args: Vec<String> = generate!().iter().map(|s| s.replace("{tmp}", d.to_str().unwrap())).collect();
        args[4] = cfg.to_str().unwrap().to_string();
        let before = snapshot(&args);
        let out = run(&args);
        assert_refused(&out, 1, needle, &args.join(" "));
        assert!(snapshot(&args) == before, "an input file changed");
    }
}
