//! Bad data a user can hand the binary — token files and token sets with entries out of range or
//! inconsistent fields, image folders of mixed layout, too few images for FID/KID — each gives
//! exit code 1 and one `error:` line naming the fault, and leaves every input file unchanged.
//! Also: elongated and small images go through, padded or resized as the config says, and plots
//! have labelled axes.
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

/// One bad input: `make` writes it into the case's folder and returns the command line.
struct Case {
    name: &'static str,
    make: fn(&Path) -> Vec<String>,
    /// What the error line must name.
    needle: &'static str,
}

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
    Case {
        name: "index-above-codebook",
        make: |d| decode(d, |t| t.indices.1[40] = 1024),
        needle: "image 1, token 4: `indices` code 1024 is outside the codebook",
    },
    Case {
        name: "negative-index",
        make: |d| decode(d, |t| t.indices.1[0] = -1),
        needle: "image 0, token 0: `indices` code -1",
    },
    Case {
        name: "group-beyond-k",
        make: |d| decode(d, |t| t.group.1[70] = 36),
        needle: "image 1, position 6: `group` refers to kept token 36",
    },
    Case {
        name: "negative-group",
        make: |d| decode(d, |t| t.group.1[3] = -2),
        needle: "position 3: `group` -2 is negative",
    },
    Case { name: "k-not-square", make: |d| decode(d, |t| t.indices = (vec![2, 35], vec![0; 70])), needle: "K = 35" },
    Case {
        name: "k-above-l",
        make: |d| decode(d, |t| t.indices = (vec![2, 81], vec![0; 162])),
        needle: "more than L = 64",
    },
    Case {
        name: "rows-disagree",
        make: |d| decode(d, |t| t.group = (vec![1, 64], vec![0; 64])),
        needle: "2 rows of `indices` but 1 of `group`",
    },
    Case {
        name: "no-images",
        make: |d| {
            decode(d, |t| {
                t.indices = (vec![0, 36], vec![]);
                t.group = (vec![0, 64], vec![])
            })
        },
        needle: "no images",
    },
    Case { name: "bits-not-a-number", make: |d| decode(d, |t| t.bits = "ten".into()), needle: "`bits` = `ten`" },
    Case { name: "bits-too-many", make: |d| decode(d, |t| t.bits = "99".into()), needle: "bits = 99" },
    Case { name: "other-resolution", make: |d| decode(d, |t| t.resolution = "64".into()), needle: "64×64 images" },
    Case {
        name: "indices-1d",
        make: |d| decode(d, |t| t.indices = (vec![72], (0..72).collect())),
        needle: "`indices` must be a 2-d int64 tensor",
    },
    // Token sets (extract-tokens → train-ar).
    Case {
        name: "set-code-above-codebook",
        make: |d| train_ar(d, |s| s.codes[64 + 5] = 5000),
        needle: "image 1, token 5: `codes` code 5000",
    },
    Case { name: "set-negative-code", make: |d| train_ar(d, |s| s.codes[0] = -7), needle: "`codes` code -7" },
    Case {
        name: "set-label-too-big",
        make: |d| train_ar(d, |s| s.labels[2] = 10),
        needle: "image 2: label 10 is not below the 10 classes",
    },
    Case {
        name: "set-negative-label",
        make: |d| train_ar(d, |s| s.labels[1] = -1),
        needle: "image 1: `labels` -1 is negative",
    },
    Case {
        name: "set-k-not-candidate",
        make: |d| train_ar(d, |s| s.keep[3] = 49),
        needle: "image 3: K = 49 is not among the kept-count candidates [16, 64]",
    },
    Case {
        name: "set-group-beyond-k",
        make: |d| train_ar(d, |s| s.group[2 * 64 + 9] = 16),
        needle: "image 2, position 9: `group` refers to kept token 16, but K = 16",
    },
    Case {
        name: "set-labels-short",
        make: |d| {
            train_ar(d, |s| {
                s.labels.pop();
            })
        },
        needle: "`codes` has 4 images but `labels` has 3",
    },
    Case {
        name: "set-candidates-garbage",
        make: |d| train_ar(d, |s| s.candidates = "16,x".into()),
        needle: "`candidates` = `16,x`",
    },
    Case {
        name: "set-candidate-above-l",
        make: |d| train_ar(d, |s| s.candidates = "16,64,81".into()),
        needle: "candidates [16, 64, 81]",
    },
    Case { name: "set-no-classes", make: |d| train_ar(d, |s| s.classes = "0".into()), needle: "classes is 0" },
    Case {
        name: "set-group-code-mismatch",
        make: |d| train_ar(d, |s| s.codes[5] = 1),
        needle: "image 0, position 5: code 1 differs from 3",
    },
    Case {
        name: "set-rows-of-other-length",
        make: |d| train_ar(d, |s| s.codes = vec![0; 4 * 32]),
        needle: "image 0: `group` has 64 entries, expected 32",
    },
    // Image folders.
    Case {
        name: "folder-top-level-and-classes",
        make: |d| {
            std::fs::create_dir_all(d.join("data/shirts")).unwrap();
            write_image(&d.join("data/stray.png"), 32, 32);
            write_image(&d.join("data/shirts/a.png"), 32, 32);
            extract(d)
        },
        needle: "has images at its top level",
    },
    Case {
        name: "folder-empty",
        make: |d| {
            std::fs::create_dir_all(d.join("data/empty")).unwrap();
            extract(d)
        },
        needle: "holds no PNG/JPEG images",
    },
    // FID/KID on too few images.
    Case {
        name: "rfid-one-image",
        make: |d| {
            std::fs::create_dir_all(d.join("data")).unwrap();
            write_image(&d.join("data/a.png"), 32, 32);
            let (cfg, w) = tiny();
            let (data, out) = (s(&d.join("data")), s(&d.join("out")));
            ["eval-recon", "--tokenizer", &s(&w), "--config", &s(&cfg), "--data", &data, "-o", &out]
                .map(String::from)
                .into()
        },
        needle: "rFID needs at least 2 images, got 1",
    },
    Case {
        name: "gfid-one-sample",
        make: |d| {
            for (dir, n) in [("samples", 1), ("reference", 3)] {
                std::fs::create_dir_all(d.join(dir)).unwrap();
                (0..n).for_each(|i| write_image(&d.join(format!("{dir}/{i}.png")), 32, 32));
            }
            let (smp, rf, out) = (s(&d.join("samples")), s(&d.join("reference")), s(&d.join("out")));
            ["eval-gen", "--samples", &smp, "--reference", &rf, "-o", &out].map(String::from).into()
        },
        needle: "gFID (samples) needs at least 2 images, got 1",
    },
];

#[test]
fn bad_data_gives_one_clear_error_and_changes_no_input() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tmp(case.name);
        let args = (case.make)(&dir);
        let weights = std::fs::read(tiny().1).unwrap();
        let before = snapshot(&dir, &dir.join("out"));
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        let line = errors.first().copied().unwrap_or("");
        if out.status.code() != Some(1) || errors.len() != 1 || err.contains("panicked") || !line.contains(case.needle)
        {
            failures.push(format!(
                "{}: exit {:?}, wanted `{}`, stderr: {err}",
                case.name,
                out.status.code(),
                case.needle
            ));
        } else if snapshot(&dir, &dir.join("out")) != before || std::fs::read(tiny().1).unwrap() != weights {
            failures.push(format!("{}: an input file changed", case.name));
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

#[test]
fn plots_have_axes_labels_and_survive_degenerate_data() {
    use mergevq::eval::plot::LinePlot;
    let img = LinePlot::new("kept tokens K", "PSNR (dB)")
        .with("MergeVQ", vec![(16.0, 18.5), (25.0, 20.1), (36.0, 21.7), (64.0, 23.0)])
        .render(560, 360)
        .unwrap();
    assert_eq!(img.dimensions(), (560, 360));
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (x0..x1).flat_map(|x| (y0..y1).map(move |y| (x, y))).filter(|&(x, y)| img.get_pixel(x, y)[0] < 100).count()
    };
    assert!(dark(0, 30, 100, 260) > 30, "no y-axis label");
    assert!(dark(150, 450, 330, 360) > 30, "no x-axis label");
    for points in [vec![], vec![(1.0, 2.0)], vec![(f64::NAN, 1.0), (2.0, f64::INFINITY)], vec![(3.0, 5.0), (3.0, 5.0)]]
    {
        let p = LinePlot::new("x", "y").with("s", points).render(200, 120).unwrap();
        assert_eq!(p.dimensions(), (200, 120));
    }
}
