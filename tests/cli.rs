//! The binary end to end: reconstruct / encode / decode / parity, and bad input giving one
//! clear error line and a non-zero exit, never a panic.
mod common;

use common::{assert_clean_error, golden_dir, root, run, run_with, tiny_tokenizer, tmp};
use std::path::Path;
use std::process::Command;

fn write_image(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) * 3 % 256) as u8])
    });
    img.save(path).unwrap();
}

#[test]
fn reconstruct_encode_decode_round_trip() {
    let d = tmp("roundtrip");
    let w = tiny_tokenizer(&d, 1);
    let cfg = root().join("configs/tiny_32.toml");
    let img = d.join("a.png");
    write_image(&img, 32, 32);
    let big = d.join("b.png");
    write_image(&big, 50, 40);
    let (cfg, w, img, big) = (cfg.to_str().unwrap(), w.to_str().unwrap(), img.to_str().unwrap(), big.to_str().unwrap());
    let out = run(&["reconstruct", "--config", cfg, "--weights", w, img, big, "-o", d.join("rec").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("L=64 K=36 PSNR="), "{stdout}");
    assert!(stderr.contains("resized"), "a wrongly sized image is resized with a note: {stderr}");
    for f in ["a_rec.png", "a_merge.png", "b_rec.png", "b_merge.png"] {
        let im = image::open(d.join("rec").join(f)).unwrap();
        assert_eq!((im.width(), im.height()), (32, 32), "{f}");
    }
    // --keep changes K.
    let rec49 = d.join("rec49");
    let out =
        run(&["reconstruct", "--config", cfg, "--weights", w, "--keep", "49", img, "-o", rec49.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("K=49"));

    let tokens = d.join("t.safetensors");
    let out = run(&["encode", "--config", cfg, "--weights", w, img, "-o", tokens.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = mergevq::io::tokens::TokensFile::load(&tokens).unwrap();
    assert_eq!(file.indices[0].len(), 36);
    assert_eq!(file.group[0].len(), 64);
    assert!(file.group[0].iter().all(|&g| g < 36));
    let dec = d.join("dec");
    let out = run(&["decode", "--config", cfg, "--weights", w, tokens.to_str().unwrap(), "-o", dec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Decoding the tokens gives the same image as reconstruct did.
    let a = image::open(d.join("dec/0.png")).unwrap().to_rgb8();
    let b = image::open(d.join("rec/a_rec.png")).unwrap().to_rgb8();
    let diff = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| (*x as i32 - *y as i32).abs()).max().unwrap();
    assert!(diff <= 1, "decode(encode(x)) differs from reconstruct by {diff}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_inputs_give_one_clear_error() {
    let d = tmp("bad");
    let w = tiny_tokenizer(&d, 1);
    let cfg = root().join("configs/tiny_32.toml");
    let (cfg_s, w_s) = (cfg.to_str().unwrap(), w.to_str().unwrap());
    let out_dir = d.join("o");
    let o = out_dir.to_str().unwrap();

    let missing = d.join("nope.png");
    assert_clean_error(
        &run(&["reconstruct", "--config", cfg_s, "--weights", w_s, missing.to_str().unwrap(), "-o", o]),
        "does not exist",
    );

    let text = d.join("text.png");
    std::fs::write(&text, "this is not an image").unwrap();
    assert_clean_error(
        &run(&["reconstruct", "--config", cfg_s, "--weights", w_s, text.to_str().unwrap(), "-o", o]),
        "not a readable image",
    );

    let img = d.join("ok.png");
    write_image(&img, 32, 32);
    let img_s = img.to_str().unwrap();
    let none_w = d.join("none.safetensors");
    assert_clean_error(
        &run(&["reconstruct", "--config", cfg_s, "--weights", none_w.to_str().unwrap(), img_s, "-o", o]),
        "cannot open weights",
    );
    assert_clean_error(
        &run(&["reconstruct", "--config", d.join("none.toml").to_str().unwrap(), "--weights", w_s, img_s, "-o", o]),
        "cannot read config",
    );
    let unknown = root().join("tests/data/unknown_field.yaml");
    assert_clean_error(
        &run(&["reconstruct", "--config", unknown.to_str().unwrap(), "--weights", w_s, img_s, "-o", o]),
        "mystery_knob",
    );
    assert_clean_error(
        &run(&["reconstruct", "--config", cfg_s, "--weights", w_s, "--keep", "30", img_s, "-o", o]),
        "perfect square",
    );

    // Weights for another config: a wrongly shaped tensor is named.
    let gr = root().join("tests/data/official_gr_d64.yaml");
    assert_clean_error(
        &run(&["reconstruct", "--config", gr.to_str().unwrap(), "--weights", w_s, img_s, "-o", o]),
        "encoder.conv_in.weight",
    );
    // A non-finite weight is refused.
    let nan = d.join("nan.safetensors");
    {
        let mut m = mergevq::io::safetensors::read_safetensors(&w).unwrap();
        m.get_mut("decoder.conv_out.bias").unwrap().data[0] = f32::NAN;
        use mergevq::io::safetensors::{write_safetensors, WEIGHTS};
        write_safetensors(&nan, &m, WEIGHTS, &Default::default()).unwrap();
    }
    assert_clean_error(
        &run(&["reconstruct", "--config", cfg_s, "--weights", nan.to_str().unwrap(), img_s, "-o", o]),
        "non-finite",
    );
    // A corrupt weights file.
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"\x10\0\0\0\0\0\0\0{\"a\": garbage").unwrap();
    assert_clean_error(
        &run(&["reconstruct", "--config", cfg_s, "--weights", junk.to_str().unwrap(), img_s, "-o", o]),
        "junk.safetensors",
    );
    // A tokens file from a tokenizer with another codebook.
    let tokens = d.join("t.safetensors");
    mergevq::io::tokens::TokensFile { bits: 18, resolution: 32, indices: vec![vec![0; 36]], group: vec![vec![0; 64]] }
        .save(&tokens, &Default::default())
        .unwrap();
    assert_clean_error(
        &run(&["decode", "--config", cfg_s, "--weights", w_s, tokens.to_str().unwrap(), "-o", o]),
        "18-bit",
    );
    assert_clean_error(
        &run(&["decode", "--config", cfg_s, "--weights", w_s, text.to_str().unwrap(), "-o", o]),
        "not a mergevq tokens file",
    );
    std::fs::remove_dir_all(&d).ok();
}

/// Official Lightning checkpoints: weights under `state_dict`, EMA copies under `model_ema.*`.
#[test]
fn lightning_checkpoints_load_with_and_without_ema() {
    let d = tmp("ckpt");
    let w = tiny_tokenizer(&d, 1);
    let script = root().join("scripts/make_ckpt.py");
    let ckpt = d.join("m.ckpt");
    let bad = d.join("bad.ckpt");
    let py = |args: &[&str]| {
        let st = Command::new("python3").arg(&script).args(args).status().expect("python3");
        assert!(st.success());
    };
    py(&[w.to_str().unwrap(), ckpt.to_str().unwrap(), "--ema"]);
    py(&[w.to_str().unwrap(), bad.to_str().unwrap(), "--reshape", "decoder.conv_in.weight"]);
    let cfg = root().join("configs/tiny_32.toml");
    let img = d.join("a.png");
    write_image(&img, 32, 32);
    let (cfg, img, o) = (cfg.to_str().unwrap(), img.to_str().unwrap(), d.to_str().unwrap());
    let reconstruct = |weights: &Path, extra: &[&str]| {
        run_with(&["reconstruct", "--config", cfg, "--weights", weights.to_str().unwrap(), img, "-o", o], extra)
    };
    let psnr = |weights: &Path, ema: bool| -> String {
        let out = reconstruct(weights, if ema { &["--ema"] } else { &[] });
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap().split("PSNR=").nth(1).unwrap().to_string()
    };
    let reference = psnr(&w, false);
    assert_eq!(psnr(&ckpt, true), reference, "EMA weights of the checkpoint are the saved weights");
    assert_ne!(psnr(&ckpt, false), reference, "the regular weights were scaled by 0.5");
    let out = reconstruct(&bad, &[]);
    assert_clean_error(&out, "decoder.conv_in.weight");
    assert_clean_error(
        &run(&["reconstruct", "--config", cfg, "--weights", w.to_str().unwrap(), "--ema", img, "-o", o]),
        "--ema",
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn parity_command_reports_each_case() {
    let g = golden_dir();
    let out = run(&["parity", g.join("lfq").to_str().unwrap(), g.join("token_unmerge").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("PASS lfq max_abs_err="));
    assert!(stdout.trim_end().ends_with("2 passed, 0 failed"), "{stdout}");
    assert_clean_error(&run(&["parity", root().join("src").to_str().unwrap()]), "case.json");
}

/// `--device` on every command: a name it does not know, a GPU backend the build lacks, or (in a
/// GPU build) a GPU the machine lacks is one error line before any work; `cpu` computes.
#[test]
fn devices_that_cannot_be_opened_are_one_error_line() {
    let d = tmp("devices");
    let out_dir = d.join("out");
    let out_dir = out_dir.to_str().unwrap();
    let golden = golden_dir().join("tome_merge");
    let commands: [&[&str]; 4] = [
        &["parity", golden.to_str().unwrap()],
        &["bench", "tome", "--runs", "1"],
        &[
            "encode",
            "--config",
            "assets/demo/tokenizer.toml",
            "--weights",
            "assets/demo/tokenizer.safetensors",
            "assets/demo/images/0_00019.png",
            "-o",
            out_dir,
        ],
        &["demo", "-o", out_dir],
    ];
    let no_gpu = !Path::new("/dev/nvidia0").exists();
    let mut devices = vec![("tpu", "device must be"), ("cuda:x", "index is not a number"), ("cpu:1", "device must be")];
    if !cfg!(feature = "cuda") {
        devices.push(("cuda", "no cuda backend"));
    } else if no_gpu {
        devices.push(("cuda", "device \"cuda\""));
    }
    if !cfg!(feature = "vulkan") {
        devices.push(("vulkan", "no vulkan backend"));
    }
    for args in commands {
        for (device, needle) in &devices {
            let out = run_with(&["--device", device], args);
            assert_clean_error(&out, needle);
        }
        assert!(!Path::new(out_dir).exists(), "{args:?}: a refused device wrote output");
    }
    let out = run(&["--device", "cpu", "parity", golden.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--precision bf16` computes in bf16 on the CPU (PSNR within a few tenths of a dB of f32 on the
/// bundled images, on average); tf32 is refused on the CPU and an unknown name is a usage error.
#[test]
fn precision_bf16_reconstructs_and_bad_precisions_are_refused() {
    let d = tmp("precision");
    let images: Vec<String> = std::fs::read_dir(root().join("assets/demo/images"))
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .collect();
    let psnr = |precision: &str| -> Vec<f64> {
        let out_dir = d.join(precision);
        let mut args = vec!["--precision", precision, "reconstruct", "--config", "assets/demo/tokenizer.toml"];
        args.extend(["--weights", "assets/demo/tokenizer.safetensors", "-o", out_dir.to_str().unwrap()]);
        args.extend(images.iter().map(String::as_str));
        let stdout = common::ok(run(&args));
        stdout
            .lines()
            .filter_map(|l| l.split("PSNR=").nth(1))
            .map(|v| v.trim_end_matches(" dB").parse().unwrap())
            .collect()
    };
    let (f32s, bf16s) = (psnr("f32"), psnr("bf16"));
    assert_eq!(f32s.len(), images.len());
    // Per image, a near-tie in ToMe's matching or a near-zero LFQ sign may go the other way in bf16
    // (a different merge or code bit, up to a few dB for that image); the mean PSNR stays within
    // 0.3 dB and the typical image within half a dB.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!((mean(&f32s) - mean(&bf16s)).abs() < 0.3, "mean PSNR f32 {f32s:?} vs bf16 {bf16s:?}");
    let mut diffs: Vec<f64> = f32s.iter().zip(&bf16s).map(|(a, b)| (a - b).abs()).collect();
    diffs.sort_by(f64::total_cmp);
    assert!(diffs[diffs.len() / 2] < 0.5, "median PSNR change f32 → bf16 {diffs:?}");
    assert_ne!(f32s, bf16s, "bf16 gave the f32 results: it did not compute in bf16");
    assert_clean_error(&run(&["--precision", "tf32", "parity", "x"]), "tf32 is for GPUs");
    assert_eq!(run(&["--precision", "fp8", "parity", "x"]).status.code(), Some(2));
}
