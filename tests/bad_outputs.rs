//! Outputs that would lose a file: every command that writes refuses to replace one of its
//! inputs (by name, hard link or symbolic link), to write inside an input folder, to replace a
//! file of another kind than it writes, or an image with an unknown extension — with one
//! `error:` line naming the path, exit code 1, and every file left as it was. Devices are
//! written through, re-runs into a command's own outputs work, and the extension picks the
//! image format.
mod common;

use common::{assert_clean_error, assert_unchanged, ok, root, run, snapshot, tmp};
use std::path::{Path, PathBuf};

/// A command line (`{d}`: the fixture folder) and what its error line must mention.
struct Case {
    args: &'static [&'static str],
    needle: &'static str,
}

const fn case(args: &'static [&'static str], needle: &'static str) -> Case {
    Case { args, needle }
}

/// A tokenizer (config and weights) in the fixture folder.
macro_rules! tok {
    ($cmd:literal $(, $a:literal)*) => {
        &[$cmd, "--config", "{d}/tiny.toml", "--weights", "{d}/tok.safetensors" $(, $a)*]
    };
}

/// The same, with the flag names of extract-tokens, eval-recon and probe.
macro_rules! tok2 {
    ($cmd:literal $(, $a:literal)*) => {
        &[$cmd, "--config", "{d}/tiny.toml", "--tokenizer", "{d}/tok.safetensors" $(, $a)*]
    };
}

/// generate with the bundled models (its AR config copied into the fixture).
macro_rules! generate {
    ($($a:literal),*) => {
        &["generate", "--ar", "assets/demo/gpt.safetensors", "--ar-config", "{d}/gpt.toml",
          "--tokenizer", "assets/demo/tokenizer.safetensors", "--config", "assets/demo/tokenizer.toml",
          "--num", "1" $(, $a)*]
    };
}

const CASES: &[Case] = &[
    // init: weights replace only weights, never the config (by name, hard or symbolic link).
    case(&["init", "--config", "{d}/tiny.toml", "-o", "{d}/notes.txt"], "notes.txt"),
    case(&["init", "--config", "{d}/tiny.toml", "-o", "{d}/tiny.toml"], "is the input"),
    case(&["init", "--config", "{d}/tiny.toml", "-o", "{d}/hard.toml"], "hard.toml"),
    case(&["init", "--config", "{d}/tiny.toml", "-o", "{d}/link.safetensors"], "link.safetensors"),
    case(&["init", "--config", "{d}/tiny.toml", "-o", "{d}/t.safetensors"], "not a mergevq weights file"),
    case(&["init", "--config", "{d}/tiny.toml", "-o", "{d}/data"], "is a folder"),
    case(&["init", "--config", "{d}/tiny.toml", "-o", "{d}/dangling"], "broken symbolic link"),
    // encode: a tokens file replaces only a tokens file, never an input.
    case(tok!("encode", "{d}/img.png", "-o", "{d}/img.png"), "img.png is the input"),
    case(tok!("encode", "{d}/img.png", "-o", "{d}/tok.safetensors"), "tok.safetensors is the input"),
    case(tok!("encode", "{d}/img.png", "-o", "{d}/notes.txt"), "refusing to replace"),
    case(tok!("encode", "{d}/img.png", "-o", "{d}/w2.safetensors"), "w2.safetensors"),
    // reconstruct and decode: output folders and the files in them.
    case(tok!("reconstruct", "{d}/img.png", "-o", "{d}/notes.txt"), "notes.txt"),
    case(tok!("reconstruct", "{d}/img.png", "{d}/sub/img.png", "-o", "{d}/r"), "would both write"),
    case(tok!("reconstruct", "{d}/img.png", "{d}/img_rec.png", "-o", "{d}"), "img_rec.png is the input"),
    case(tok!("reconstruct", "{d}/img.png", "{d}/img.png", "-o", "{d}/r2"), "would both write"),
    case(tok!("decode", "{d}/t.safetensors", "-o", "{d}/dec"), "0.png"),
    case(tok!("decode", "{d}/t.safetensors", "-o", "{d}/img.png"), "img.png"),
    // generate: the extension picks PNG or JPEG; nothing else, and never an input.
    case(generate!("-o", "{d}/g.txt"), ".png, .jpg or .jpeg"),
    case(generate!("-o", "{d}/g"), "g: an image file takes"),
    case(generate!("-o", "{d}/gpt.toml"), "gpt.toml is the input"),
    case(generate!("-o", "{d}/notes.png"), "not a PNG or JPEG image"),
    // extract-tokens, eval-recon, eval-gen, probe, bench, demo.
    case(tok2!("extract-tokens", "--data", "{d}/data", "-o", "{d}/notes.txt"), "notes.txt"),
    case(tok2!("extract-tokens", "--data", "{d}/data", "-o", "{d}/data/t.safetensors"), "inside the input folder"),
    case(tok2!("eval-recon", "--data", "{d}/data", "--no-fid", "-o", "{d}/data"), "inside the input folder"),
    case(tok2!("eval-recon", "--data", "{d}/data", "--no-fid", "-o", "{d}/rep"), "report.json"),
    case(&["eval-gen", "--samples", "{d}/data/a", "--reference", "{d}/data", "-o", "{d}/data/e"], "inside"),
    case(
        &[
            "eval-gen",
            "--samples",
            "{d}/data/a",
            "--reference",
            "{d}/data",
            "--save-stats",
            "{d}/notes.txt",
            "-o",
            "{d}/e",
        ],
        "notes.txt",
    ),
    case(tok2!("probe", "--train", "{d}/data", "--val", "{d}/data", "--cache", "{d}/notes.txt"), "notes.txt"),
    case(tok2!("probe", "--train", "{d}/data", "--val", "{d}/data", "--cache", "{d}/tok.safetensors"), "is the input"),
    case(&["bench", "tome", "--runs", "1", "--json", "{d}/notes.txt"], "notes.txt"),
    case(&["bench", "tome", "--runs", "1", "--json", "{d}/tiny.toml"], "tiny.toml"),
    case(&["demo", "-o", "{d}/notes.txt"], "notes.txt"),
    case(&["demo", "-o", "{d}/page"], "report.html"),
];

/// The fixture: a tokenizer, an image (and copies), a tokens file, an image folder, text
/// files under output names, and links to inputs.
fn fixture(name: &str) -> PathBuf {
    let d = tmp(name);
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    std::fs::copy(root().join("configs/tiny_32.toml"), d.join("tiny.toml")).unwrap();
    std::fs::copy(root().join("assets/demo/gpt.toml"), d.join("gpt.toml")).unwrap();
    ok(run(&["init", "--config", &s("tiny.toml"), "-o", &s("tok.safetensors")]));
    std::fs::copy(d.join("tok.safetensors"), d.join("w2.safetensors")).unwrap();
    let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, 99]));
    for p in ["img.png", "img_rec.png", "sub/img.png", "data/a/0.png", "data/a/1.png", "data/b/0.png", "data/b/1.png"] {
        std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
        img.save(d.join(p)).unwrap();
    }
    ok(run(&[
        "encode",
        "--config",
        &s("tiny.toml"),
        "--weights",
        &s("tok.safetensors"),
        &s("img.png"),
        "-o",
        &s("t.safetensors"),
    ]));
    for p in ["notes.txt", "notes.png", "dec/0.png", "rep/report.json", "page/report.html"] {
        std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
        std::fs::write(d.join(p), "my notes\n").unwrap();
    }
    std::fs::hard_link(d.join("tiny.toml"), d.join("hard.toml")).unwrap();
    std::os::unix::fs::symlink(d.join("tiny.toml"), d.join("link.safetensors")).unwrap();
    std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
    d
}

#[test]
fn outputs_that_would_lose_a_file_are_refused() {
    assert!(CASES.len() >= 20);
    let d = fixture("refused");
    let assets = root().join("assets/demo");
    for c in CASES {
        let args: Vec<String> = c.args.iter().map(|a| a.replace("{d}", d.to_str().unwrap())).collect();
        let before = snapshot(&[&d, &assets]);
        let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_clean_error(&out, c.needle);
        assert_unchanged(&before, &args.join(" "));
    }
    std::fs::remove_dir_all(&d).ok();
}

/// Devices are written through, re-runs replace the command's own outputs, and `.jpg` gets a
/// JPEG.
#[test]
fn devices_reruns_and_image_formats() {
    let d = fixture("allowed");
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    let (cfg, w) = (s("tiny.toml"), s("tok.safetensors"));
    ok(run(&["init", "--config", &cfg, "-o", "/dev/null"]));
    assert!(is_device(Path::new("/dev/null")), "/dev/null is still a device");
    for _ in 0..2 {
        ok(run(&["init", "--config", &cfg, "-o", &s("again.safetensors")]));
        ok(run(&["encode", "--config", &cfg, "--weights", &w, &s("img.png"), "-o", &s("t.safetensors")]));
        ok(run(&["reconstruct", "--config", &cfg, "--weights", &w, &s("img.png"), "-o", &s("r")]));
    }
    for (name, magic) in [("g.jpg", &[0xFF, 0xD8][..]), ("g.JPEG", &[0xFF, 0xD8]), ("g.png", b"\x89PNG")] {
        let gen = generate!("-o", "{d}/OUT");
        let args: Vec<String> =
            gen.iter().map(|a| a.replace("{d}", d.to_str().unwrap()).replace("OUT", name)).collect();
        ok(run(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        assert!(std::fs::read(d.join(name)).unwrap().starts_with(magic), "{name}");
    }
    std::fs::remove_dir_all(&d).ok();
}

fn is_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).unwrap().file_type().is_char_device()
}
