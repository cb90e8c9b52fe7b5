//! The one-command demo on the bundled models, and its report opened in headless Chromium.
mod common;

use common::{bin, root, tmp};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn demo_writes_a_report_that_a_browser_renders() {
    let out = tmp("report");
    let t0 = std::time::Instant::now();
    let o = bin().args(["demo", "-o"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let secs = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("report:") && stdout.contains("tokens/s"), "{stdout}");
    for f in [
        "report.html",
        "reconstructions.png",
        "samples_mergear.png",
        "samples_plain.png",
        "rate_distortion.png",
        "photo.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(secs < 120.0, "the demo took {secs:.0} s");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<table id=\"recon\">") && html.contains("<table id=\"ar\">") && html.contains("MergeAR"));
    assert!(html.contains("<table id=\"photo\">"), "no photo table");

    // Headless Chromium: every image decodes and all three tables are there; keep a screenshot.
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("Chromium is needed for the browser check (apt-get install chromium)");
    let profile = out.join("profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--virtual-time-budget=3000",
    ];
    let url = format!("file://{}", out.join("report.html").display());
    let dom = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("data-images-ok=\"true\""), "images did not all load: {}", &dom[..dom.len().min(400)]);
    assert!(
        dom.contains("data-images=\"5\"") && dom.contains("data-tables=\"3\""),
        "{}",
        &dom[dom.len().saturating_sub(400)..]
    );
    let shot: PathBuf = out.join("screenshot.png");
    let s = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,2400")
        .arg(&url)
        .output()
        .unwrap();
    assert!(s.status.success() && shot.exists(), "{}", String::from_utf8_lossy(&s.stderr));
    let img = image::open(&shot).unwrap();
    assert_eq!(img.width(), 1200);
}

#[test]
fn corrupted_bundled_files_are_named() {
    // A copy of the assets with a truncated tokenizer: the demo names the file.
    let root = root();
    let tmp = tmp("bad");
    std::fs::create_dir_all(tmp.join("assets/demo/images")).unwrap();
    for f in ["tokenizer.toml", "gpt.toml", "gpt.safetensors", "tokenizer.provenance", "gpt.provenance"] {
        std::fs::copy(root.join("assets/demo").join(f), tmp.join("assets/demo").join(f)).unwrap();
    }
    for e in std::fs::read_dir(root.join("assets/demo/images")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tmp.join("assets/demo/images").join(p.file_name().unwrap())).unwrap();
    }
    let good = std::fs::read(root.join("assets/demo/tokenizer.safetensors")).unwrap();
    std::fs::write(tmp.join("assets/demo/tokenizer.safetensors"), &good[..good.len() / 2]).unwrap();
    let o =
        bin().current_dir(&tmp).env("MERGEVQ_ASSETS", tmp.join("assets")).args(["demo", "-o", "out"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("tokenizer.safetensors") && !err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&tmp).ok();
}
