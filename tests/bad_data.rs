//! Bad data a user can hand the binary — token files and token sets with entries out of range or
//! inconsistent fields, image folders of mixed layout, too few images for FID/KID — each gives
//! exit code 1 and one `error:` line naming the fault, and leaves every input file unchanged.
//! Also: elongated and small images go through, padded or resized as the config says.
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mergevq")).current_dir(root()).args(args).output().expect("run mergevq")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mergevq-bad-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every file under `dir` (recursively) except under `skip`, with its bytes.
fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.starts_with(skip) {
            continue;
        }
        if p.is_dir() {
            out.extend(snapshot(&p, skip));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

fn write_image(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 90]));
    img.save(path).unwrap();
}

/// A safetensors file of int64 tensors (name, shape, values) and metadata, written as is.
fn write_i64(path: &Path, tensors: &[(&str, Vec<usize>, Vec<i64>)], meta: &[(&str, &str)]) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.2.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| (t.0.to_string(), TensorView::new(Dtype::I64, t.1.clone(), b).unwrap()))
        .collect();
    let meta: HashMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

/// A tokens file (`encode`) for the tiny tokenizer, K = 36 of L = 64, 10-bit codes, with `edit`
/// applied to (bits, resolution, indices, group) before writing.
fn tokens_file(path: &Path, edit: fn(&mut TokensRaw)) {
    let mut t = TokensRaw {
        bits: "10".into(),
        resolution: "32".into(),
        indices: (vec![2, 36], (0..72).collect()),
        group: (vec![2, 64], (0..128).map(|p| (p % 64) * 36 / 64).collect()),
    };
    edit(&mut t);
    let meta = [("bits", t.bits.as_str()), ("resolution", t.resolution.as_str()), ("format", "mergevq-tokens-1")];
    write_i64(path, &[("indices", t.indices.0, t.indices.1), ("group", t.group.0, t.group.1)], &meta);
}

struct TokensRaw {
    bits: String,
    resolution: String,
    indices: (Vec<usize>, Vec<i64>),
    group: (Vec<usize>, Vec<i64>),
}

/// A token set (`extract-tokens`) of 4 images, L = 64, K ∈ {16, 64}, 10-bit codes, 10 classes,
/// with `edit` applied before writing.
fn token_set(path: &Path, edit: fn(&mut SetRaw)) {
    let group: Vec<i64> =
        (0..4).flat_map(|i| (0..64).map(move |p| if i % 2 == 0 { (p / 4) % 16 } else { p })).collect();
    let mut s = SetRaw {
        candidates: "16,64".into(),
        classes: "10".into(),
        codes: group.iter().map(|g| g * 3).collect(),
        group,
        keep: vec![16, 64, 16, 64],
        labels: vec![0, 1, 2, 9],
    };
    edit(&mut s);
    let n = s.keep.len();
    let meta =
        [("format", "mergevq-tokenset-1"), ("bits", "10"), ("candidates", &s.candidates), ("classes", &s.classes)];
    let (l, m) = (s.codes.len() / 4, s.labels.len());
    write_i64(
        path,
        &[
            ("codes", vec![4, l], s.codes),
            ("group", vec![4, 64], s.group),
            ("keep", vec![n], s.keep),
            ("labels", vec![m], s.labels),
        ],
        &meta,
    );
}

struct SetRaw {
    candidates: String,
    classes: String,
    codes: Vec<i64>,
    group: Vec<i64>,
    keep: Vec<i64>,
    labels: Vec<i64>,
}

/// A train-ar config (plain AR on the tiny tokenizer's codes) reading `tokens`.
fn ar_config(dir: &Path, tokens: &Path) -> PathBuf {
    let p = dir.join("ar.toml");
    let text = format!(
        "mode = \"plain\"\ntokens = \"{}\"\nbatch_size = 2\n[gpt]\nfactorized_bits = [4, 6]\nblock_size = 64\n\
         dim = 32\nn_head = 2\nspatial_n_layer = 1\nfactorized_n_layer = 1\nclass_num = 10\nmerge_tokens = 0\n\
         multiple_of = 32\n[run]\nout_dir = \"{}\"\nsteps = 2\n",
        tokens.display(),
        dir.join("out").display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// The tiny tokenizer's config and random weights, made once per test process.
fn tiny() -> (PathBuf, PathBuf) {
    static W: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let cfg = root().join("configs/tiny_32.toml");
    let w = W.get_or_init(|| {
        let w = tmp("weights").join("tiny.safetensors");
        let out = run(&["init".into(), "--config".into(), s(&cfg), "-o".into(), s(&w)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        w
    });
    (cfg, w.clone())
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// One bad input: its name, a function that writes it into the case's folder and returns the
/// command line, and what the error line must name.
struct Case(&'static str, fn(&Path) -> Vec<String>, &'static str);

/// `mergevq decode` of a tokens file made by `edit`.
fn decode(dir: &Path, edit: fn(&mut TokensRaw)) -> Vec<String> {
    let t = dir.join("tokens.safetensors");
    tokens_file(&t, edit);
    let (cfg, w) = tiny();
    ["decode", "--config", &s(&cfg), "--weights", &s(&w), &s(&t), "-o", &s(&dir.join("out"))].map(String::from).into()
}

/// `mergevq train-ar` on a token set made by `edit`.
fn train_ar(dir: &Path, edit: fn(&mut SetRaw)) -> Vec<String> {
    let t = dir.join("set.safetensors");
    token_set(&t, edit);
    vec!["train-ar".into(), "--config".into(), s(&ar_config(dir, &t))]
}

/// `mergevq extract-tokens` from the image folder `dir/data`.
fn extract(dir: &Path) -> Vec<String> {
    let (cfg, w) = tiny();
    let data = s(&dir.join("data"));
    let out = s(&dir.join("out/set.safetensors"));
    ["extract-tokens", "--tokenizer", &s(&w), "--config", &s(&cfg), "--data", &data, "-o", &out]
        .map(String::from)
        .into()
}

const CASES: &[Case] = &[
    // Tokens files (encode → decode).
    Case(
        "index-above-codebook",
        |d| decode(d, |t| t.indices.1[40] = 1024),
        "image 1, token 4: `indices` code 1024 is outside the codebook",
    ),
    Case("negative-index", |d| decode(d, |t| t.indices.1[0] = -1), "image 0, token 0: `indices` code -1"),
    Case(
        "group-beyond-k",
        |d| decode(d, |t| t.group.1[70] = 36),
        "image 1, position 6: `group` refers to kept token 36",
    ),
    Case("negative-group", |d| decode(d, |t| t.group.1[3] = -2), "position 3: `group` -2 is negative"),
    Case("k-not-square", |d| decode(d, |t| t.indices = (vec![2, 35], vec![0; 70])), "K = 35"),
    Case("k-above-l", |d| decode(d, |t| t.indices = (vec![2, 81], vec![0; 162])), "more than L = 64"),
    Case(
        "rows-disagree",
        |d| decode(d, |t| t.group = (vec![1, 64], vec![0; 64])),
        "2 rows of `indices` but 1 of `group`",
    ),
    Case(
        "no-images",
        |d| {
            decode(d, |t| {
                t.indices = (vec![0, 36], vec![]);
                t.group = (vec![0, 64], vec![])
            })
        },
        "no images",
    ),
    Case("bits-not-a-number", |d| decode(d, |t| t.bits = "ten".into()), "`bits` = `ten`"),
    Case("bits-too-many", |d| decode(d, |t| t.bits = "99".into()), "bits = 99"),
    Case("other-resolution", |d| decode(d, |t| t.resolution = "64".into()), "64×64 images"),
    Case(
        "indices-1d",
        |d| decode(d, |t| t.indices = (vec![72], (0..72).collect())),
        "`indices` must be a 2-d int64 tensor",
    ),
    // Token sets (extract-tokens → train-ar).
    Case("set-code-above-codebook", |d| train_ar(d, |s| s.codes[64 + 5] = 5000), "image 1, token 5: `codes` code 5000"),
    Case("set-negative-code", |d| train_ar(d, |s| s.codes[0] = -7), "`codes` code -7"),
    Case("set-label-too-big", |d| train_ar(d, |s| s.labels[2] = 10), "image 2: label 10 is not below the 10 classes"),
    Case("set-negative-label", |d| train_ar(d, |s| s.labels[1] = -1), "image 1: `labels` -1 is negative"),
    Case(
        "set-k-not-candidate",
        |d| train_ar(d, |s| s.keep[3] = 49),
        "image 3: K = 49 is not among the kept-count candidates [16, 64]",
    ),
    Case(
        "set-group-beyond-k",
        |d| train_ar(d, |s| s.group[2 * 64 + 9] = 16),
        "image 2, position 9: `group` refers to kept token 16, but K = 16",
    ),
    Case(
        "set-labels-short",
        |d| {
            train_ar(d, |s| {
                s.labels.pop();
            })
        },
        "`codes` has 4 images but `labels` has 3",
    ),
    Case("set-candidates-garbage", |d| train_ar(d, |s| s.candidates = "16,x".into()), "`candidates` = `16,x`"),
    Case("set-candidate-above-l", |d| train_ar(d, |s| s.candidates = "16,64,81".into()), "candidates [16, 64, 81]"),
    Case("set-no-classes", |d| train_ar(d, |s| s.classes = "0".into()), "classes is 0"),
    Case("set-group-code-mismatch", |d| train_ar(d, |s| s.codes[5] = 1), "image 0, position 5: code 1 differs from 3"),
    Case(
        "set-rows-of-other-length",
        |d| train_ar(d, |s| s.codes = vec![0; 4 * 32]),
        "image 0: `group` has 64 entries, expected 32",
    ),
    // Image folders.
    Case(
        "folder-top-level-and-classes",
        |d| {
            std::fs::create_dir_all(d.join("data/shirts")).unwrap();
            write_image(&d.join("data/stray.png"), 32, 32);
            write_image(&d.join("data/shirts/a.png"), 32, 32);
            extract(d)
        },
        "has images at its top level",
    ),
    Case(
        "folder-empty",
        |d| {
            std::fs::create_dir_all(d.join("data/empty")).unwrap();
            extract(d)
        },
        "holds no PNG/JPEG images",
    ),
    // FID/KID on too few images.
    Case(
        "rfid-one-image",
        |d| {
            std::fs::create_dir_all(d.join("data")).unwrap();
            write_image(&d.join("data/a.png"), 32, 32);
            let (cfg, w) = tiny();
            let (data, out) = (s(&d.join("data")), s(&d.join("out")));
            ["eval-recon", "--tokenizer", &s(&w), "--config", &s(&cfg), "--data", &data, "-o", &out]
                .map(String::from)
                .into()
        },
        "rFID needs at least 2 images, got 1",
    ),
    Case(
        "gfid-one-sample",
        |d| {
            for (dir, n) in [("samples", 1), ("reference", 3)] {
                std::fs::create_dir_all(d.join(dir)).unwrap();
                (0..n).for_each(|i| write_image(&d.join(format!("{dir}/{i}.png")), 32, 32));
            }
            let (smp, rf, out) = (s(&d.join("samples")), s(&d.join("reference")), s(&d.join("out")));
            ["eval-gen", "--samples", &smp, "--reference", &rf, "-o", &out].map(String::from).into()
        },
        "gFID (samples) needs at least 2 images, got 1",
    ),
];

#[test]
fn bad_data_gives_one_clear_error_and_changes_no_input() {
    let mut failures = Vec::new();
    for Case(name, make, needle) in CASES {
        let dir = tmp(name);
        let args = make(&dir);
        let weights = std::fs::read(tiny().1).unwrap();
        let before = snapshot(&dir, &dir.join("out"));
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        let line = errors.first().copied().unwrap_or("");
        if out.status.code() != Some(1) || errors.len() != 1 || err.contains("panicked") || !line.contains(needle) {
            failures.push(format!("{name}: exit {:?}, wanted `{needle}`, stderr: {err}", out.status.code()));
        } else if snapshot(&dir, &dir.join("out")) != before || std::fs::read(tiny().1).unwrap() != weights {
            failures.push(format!("{name}: an input file changed"));
        } else {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

/// A copy of the tiny config with `line` added at the top level.
fn tiny_config_with(dir: &Path, line: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("configs/tiny_32.toml")).unwrap();
    let p = dir.join("tiny.toml");
    std::fs::write(&p, format!("{line}\n{text}")).unwrap();
    p
}

#[test]
fn elongated_and_small_images_are_padded_or_resized_as_configured() {
    let d = tmp("shapes");
    let (cfg, w) = tiny();
    let sizes = [(1, 4000), (4000, 1), (1, 1), (3, 97), (28, 28), (4000, 3)];
    let imgs: Vec<String> = sizes
        .iter()
        .map(|&(iw, ih)| {
            let p = d.join(format!("{iw}x{ih}.png"));
            write_image(&p, iw, ih);
            s(&p)
        })
        .collect();
    let reconstruct = |cfg: &Path, imgs: &[String]| {
        let mut args: Vec<String> = ["reconstruct", "--config", &s(cfg), "--weights", &s(&w), "-o", &s(&d.join("rec"))]
            .map(String::from)
            .into();
        args.extend(imgs.iter().cloned());
        run(&args)
    };
    let before = snapshot(&d, &d.join("rec"));
    let out = reconstruct(&cfg, &imgs);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.matches("PSNR=").count(), sizes.len(), "{stdout}");
    for &(iw, ih) in &sizes {
        let rec = image::open(d.join(format!("rec/{iw}x{ih}_rec.png"))).unwrap();
        assert_eq!((rec.width(), rec.height()), (32, 32), "{iw}x{ih}");
    }
    assert!(stderr.contains("28x28.png is 28×28: padded with black to 32×32"), "{stderr}");
    assert!(stderr.contains("1x4000.png is 1×4000: resized"), "{stderr}");
    assert_eq!(snapshot(&d, &d.join("rec")), before, "an input image changed");
    // The same 28² image through a config that resizes.
    let resize = tiny_config_with(&d, "preprocess = \"resize\"");
    let out = reconstruct(&resize, &imgs[4..5]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("28x28.png is 28×28: resized"));
    // A folder of elongated images goes through extract-tokens (training and evaluation crops).
    std::fs::create_dir_all(d.join("data/odd")).unwrap();
    for &(iw, ih) in &sizes {
        write_image(&d.join(format!("data/odd/{iw}x{ih}.png")), iw, ih);
    }
    let set = d.join("set.safetensors");
    let out = run(&[
        "extract-tokens",
        "--tokenizer",
        &s(&w),
        "--config",
        &s(&cfg),
        "--data",
        &s(&d.join("data")),
        "-o",
        &s(&set),
    ]
    .map(String::from));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mergevq::io::tokens::TokenSet::load(&set).unwrap().len(), sizes.len());
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn an_unknown_preprocessing_is_named() {
    let d = tmp("preprocess");
    let cfg = tiny_config_with(&d, "preprocess = \"stretch\"");
    let out = run(&["init", "--config", &s(&cfg), "-o", &s(&d.join("w.safetensors"))].map(String::from));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().count() == 1 && err.starts_with("error:") && err.contains("stretch"), "{err}");
    assert!(!d.join("w.safetensors").exists());
    std::fs::remove_dir_all(&d).ok();
}
