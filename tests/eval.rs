//! Evaluation commands end to end, and the FID network on real images.
mod common;

use common::{ok, run, tiny_tokenizer, tmp};
use std::path::Path;
use std::process::Output;

#[test]
fn eval_recon_and_probe() {
    let d = tmp("recon");
    let w = tiny_tokenizer(&d, 0);
    let out = d.join("report");
    let s = ok(run(&[
        "eval-recon",
        "--tokenizer",
        w.to_str().unwrap(),
        "--config",
        "configs/tiny_32.toml",
        "--data",
        "fashion-mnist:test",
        "--keep",
        "64,36,16",
        "--num",
        "8",
        "--no-fid",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(
        s.contains("PSNR")
            && s.lines()
                .filter(|l| l.trim_start().starts_with("16 ")
                    || l.trim_start().starts_with("36 ")
                    || l.trim_start().starts_with("64 "))
                .count()
                == 3,
        "{s}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for x in results {
        assert!(
            x["psnr"].as_f64().unwrap() > 0.0
                && x["ssim"].as_f64().unwrap() <= 1.0
                && x["lpips"].as_f64().unwrap() > 0.0
        );
    }
    // Bits per image: K·d of codes, and the source map L·⌈log₂K⌉ where K < L.
    let bits: Vec<(u64, u64, u64)> = results
        .iter()
        .map(|x| (x["keep"].as_u64().unwrap(), x["code_bits"].as_u64().unwrap(), x["side_bits"].as_u64().unwrap()))
        .collect();
    assert_eq!(bits, [(64, 640, 0), (36, 360, 384), (16, 160, 256)]);
    assert_eq!(r["unmerge"], "source");
    assert!(out.join("rd_psnr.png").exists() && out.join("reconstructions.png").exists());
    let grid = image::open(out.join("reconstructions.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (8 * 32, 7 * 32));

    // The same probe twice: the second run reads the features cached by the first.
    let cache = d.join("cache.safetensors");
    let probe = || {
        ok(run(&[
            "probe",
            "--tokenizer",
            w.to_str().unwrap(),
            "--config",
            "configs/tiny_32.toml",
            "--train",
            "fashion-mnist:train",
            "--val",
            "fashion-mnist:test",
            "--num-train",
            "200",
            "--num-val",
            "50",
            "--epochs",
            "5",
            "--cache",
            cache.to_str().unwrap(),
        ]))
    };
    let s = probe();
    assert!(s.contains("linear probe top-1") && s.contains("(200 train, 50 val, 10 classes)"), "{s}");
    let s = probe();
    assert!(s.contains("using cached features"), "{s}");
    std::fs::remove_dir_all(&d).ok();
}

/// `eval-gen` of the images in `samples` against `reference` (a folder or saved statistics),
/// with `extra` options, writing to `out`.
fn eval_gen(samples: &Path, reference: &Path, extra: &[&str], out: &Path) -> Output {
    let (s, r, o) = (samples.to_str().unwrap(), reference.to_str().unwrap(), out.to_str().unwrap());
    run(&[&["eval-gen", "--samples", s, "--reference", r][..], extra, &["-o", o]].concat())
}

fn write_set(dir: &Path, n: usize, f: impl Fn(usize, u32, u32) -> [u8; 3], size: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        image::RgbImage::from_fn(size, size, |x, y| image::Rgb(f(i, x, y))).save(dir.join(format!("{i}.png"))).unwrap();
    }
}

/// The converted registry InceptionV3 separates real images from noise: FID between two
/// halves of Fashion-MNIST test is far below FID against uniform noise.
#[test]
fn fid_network_on_real_images() {
    use mergevq::io::data::{FashionMnist, Source, FASHION_MNIST_DIR};
    let d = tmp("fid");
    let fm = FashionMnist::open(Path::new(FASHION_MNIST_DIR), "test").unwrap();
    let save = |dir: &Path, range: std::ops::Range<usize>| {
        std::fs::create_dir_all(dir).unwrap();
        for i in range {
            fm.get(i).unwrap().0.save(dir.join(format!("{i}.png"))).unwrap();
        }
    };
    save(&d.join("a"), 0..8);
    save(&d.join("b"), 8..16);
    write_set(
        &d.join("noise"),
        8,
        |i, x, y| {
            let h = (i as u32 * 7919 + x * 104_729 + y * 1_299_709).wrapping_mul(2_654_435_761);
            [(h >> 8) as u8, (h >> 16) as u8, (h >> 24) as u8]
        },
        28,
    );
    let stats = d.join("a_stats.safetensors");
    let gfid =
        |s: &str| -> f64 { s.split("gFID ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap() };
    let kid = |s: &str| -> f64 { s.split("KID ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap() };
    let s_real = ok(eval_gen(&d.join("b"), &d.join("a"), &["--save-stats", stats.to_str().unwrap()], &d.join("r1")));
    let s_noise = ok(eval_gen(&d.join("noise"), &stats, &[], &d.join("r2")));
    let (real, noise) = (gfid(&s_real), gfid(&s_noise));
    // 8 images per set: FID's covariance term is large for any pair, yet noise is still
    // more than twice as far, and KID (unbiased) separates them clearly.
    assert!(real * 2.0 < noise, "FID(real, real) {real} should be far below FID(noise, real) {noise}");
    assert!(kid(&s_real) * 5.0 < kid(&s_noise), "KID {} vs {}", kid(&s_real), kid(&s_noise));
    // Reusing the saved statistics gives the same number.
    let again = gfid(&ok(eval_gen(&d.join("b"), &stats, &[], &d.join("r3"))));
    assert!((again - real).abs() < 1e-3 * real.max(1.0), "{again} vs {real}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn eval_errors_are_clear() {
    let d = tmp("errors");
    write_set(&d.join("mixed"), 1, |_, _, _| [1, 2, 3], 20);
    write_set(&d.join("mixed2"), 1, |_, _, _| [1, 2, 3], 24);
    std::fs::rename(d.join("mixed2/0.png"), d.join("mixed/1.png")).unwrap();
    let (mixed, o) = (d.join("mixed"), d.join("o"));
    let out = eval_gen(&mixed, &mixed, &[], &o);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("different sizes"), "{err}");
    let out = eval_gen(&mixed, &mixed, &["--inception", "/nonexistent/inception.safetensors"], &o);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/fetch-weights.sh") && !err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

/// A model with the learned source recovery decodes without side information by default, and
/// with the source map on request; a model without it refuses `--unmerge learned`.
#[test]
fn eval_recon_unmerge_learned_and_source() {
    let d = tmp("unmerge");
    let cfg = d.join("learned.toml");
    let base = std::fs::read_to_string(common::root().join("configs/tiny_32.toml")).unwrap();
    std::fs::write(
        &cfg,
        format!("{base}\n[k2lconfig]\nlearn_source = true\nrec_embed_dim = 32\nnum_layers = 1\nnum_heads = 4\n"),
    )
    .unwrap();
    let w = d.join("learned.safetensors");
    ok(run(&["init", "--config", cfg.to_str().unwrap(), "-o", w.to_str().unwrap(), "--seed", "2"]));
    let eval = |unmerge: &[&str], out: &str| -> serde_json::Value {
        let out = d.join(out);
        let mut args = vec!["eval-recon", "--tokenizer", w.to_str().unwrap(), "--config", cfg.to_str().unwrap()];
        args.extend([
            "--data",
            "fashion-mnist:test",
            "--keep",
            "16",
            "--num",
            "4",
            "--no-fid",
            "-o",
            out.to_str().unwrap(),
        ]);
        args.extend(unmerge);
        ok(run(&args));
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
    };
    let learned = eval(&[], "learned");
    let source = eval(&["--unmerge", "source"], "source");
    assert_eq!((learned["unmerge"].as_str(), source["unmerge"].as_str()), (Some("learned"), Some("source")));
    let (l, s) = (&learned["results"][0], &source["results"][0]);
    assert_eq!((l["side_bits"].as_u64(), s["side_bits"].as_u64()), (Some(0), Some(256)));
    assert_ne!(l["psnr"], s["psnr"], "the learned recovery and the source map decode alike");
    // The recovery's placements are scored against the map's (a share), the map's are not.
    let placed = l["placement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&placed) && s["placement"].is_null(), "{placed}");

    let plain = tiny_tokenizer(&d, 0);
    let out = run(&[
        "eval-recon",
        "--tokenizer",
        plain.to_str().unwrap(),
        "--config",
        "configs/tiny_32.toml",
        "--data",
        "fashion-mnist:test",
        "--num",
        "4",
        "--no-fid",
        "--unmerge",
        "learned",
        "-o",
        d.join("x").to_str().unwrap(),
    ]);
    common::assert_clean_error(&out, "no learned source recovery");
}

/// rFID over the first images only (`--fid-num`: the same value as evaluating just those), and
/// other reports drawn into the same rate–distortion plots (`--compare`).
#[test]
fn eval_recon_fid_subset_and_compare() {
    let d = tmp("fid-num");
    let w = tiny_tokenizer(&d, 0);
    let eval = |extra: &[&str], out: &str| -> Output {
        let out = d.join(out);
        let mut args = vec!["eval-recon", "--tokenizer", w.to_str().unwrap(), "--config", "configs/tiny_32.toml"];
        args.extend(["--data", "fashion-mnist:test", "--keep", "16", "--batch", "2", "-o", out.to_str().unwrap()]);
        args.extend(extra);
        run(&args)
    };
    let report = |out: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join(out).join("report.json")).unwrap()).unwrap()
    };
    ok(eval(&["--num", "5", "--fid-num", "3"], "subset"));
    ok(eval(&["--num", "3"], "first3"));
    let (a, b) = (&report("subset")["results"][0], &report("first3")["results"][0]);
    assert_eq!((a["images"].as_u64(), a["fid_images"].as_u64(), b["fid_images"].as_u64()), (Some(5), Some(3), Some(3)));
    let (fa, fb) = (a["rfid"].as_f64().unwrap(), b["rfid"].as_f64().unwrap());
    assert!(fa.is_finite() && (fa - fb).abs() <= 1e-6 * fb.abs().max(1.0), "{fa} vs {fb}");
    assert_ne!(a["psnr"], b["psnr"], "PSNR covers all 5 images, not the 3 of the rFID");

    let first3 = d.join("first3/report.json");
    let compare = format!("grid={}", first3.display());
    let s = ok(eval(&["--num", "3", "--no-fid", "--label", "merged", "--compare", &compare], "compared"));
    assert!(s.contains("rd_bits.png"), "{s}");
    for png in ["rd_psnr.png", "rd_bits.png"] {
        let im = image::open(d.join("compared").join(png)).unwrap();
        assert_eq!((im.width(), im.height()), (560, 360));
    }
    // A report that is missing or not eval-recon's: one error line, no output folder.
    std::fs::write(d.join("other.json"), r#"{"results": []}"#).unwrap();
    let cases = [
        (d.join("missing.json"), "cannot read report"),
        (w.clone(), "cannot read report"),
        (d.join("other.json"), "not an eval-recon"),
    ];
    for (bad, needle) in cases {
        let out = eval(&["--num", "3", "--no-fid", "--compare", &format!("x={}", bad.display())], "refused");
        common::assert_clean_error(&out, needle);
        assert!(!d.join("refused").exists());
    }
    let out = eval(&["--num", "3", "--no-fid", "--compare", "no-equals-sign"], "refused");
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&d).ok();
}
