//! The tokenizer trainer: resume continues the same trajectory, a crash while writing a
//! checkpoint keeps the previous one, bad configs and data give clear errors, Ctrl-C saves a
//! checkpoint, and a run folder takes one trainer and is reused only when asked.
mod common;

use common::train::{config, image_folder, losses, train};
use common::{assert_clean_error, assert_unchanged, bin, root, snapshot, tmp};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn resume_continues_the_same_trajectory() {
    let a = tmp("full");
    let data = image_folder(&a);
    let out = train(&config(&a, &data, ""), &[], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let full = losses(&a.join("run"));
    assert_eq!(full.len(), 6);
    assert!(a.join("run/tokenizer_ema.safetensors").exists());
    assert!(a.join("run/samples/step_0000003.png").exists());
    assert!(a.join("run/loss_curve.png").exists());

    let b = tmp("killed");
    let cfg = config(&b, &data, "");
    let out = train(&cfg, &[], &[("MERGEVQ_FAULT_EXIT_AFTER_STEP", "3")]);
    assert_eq!(out.status.code(), Some(137), "the simulated crash exits 137");
    assert_eq!(losses(&b.join("run")).len(), 3);
    let out = train(&cfg, &["--resume"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("resuming at step 3"));
    let resumed = losses(&b.join("run"));
    assert_eq!(resumed.len(), 6);
    // The resumed run's plots cover every step, before and after the crash.
    let series = mergevq::train::curves::series(&b.join("run/metrics.jsonl")).unwrap();
    assert_eq!(series["rec"].keys().copied().collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    assert!(b.join("run/loss_curve.png").exists());
    for (x, y) in full.iter().zip(&resumed) {
        assert_eq!(x["step"], y["step"]);
        for k in ["rec", "entropy", "commit", "cls", "K", "lr"] {
            let (u, v) = (x[k].as_f64().unwrap(), y[k].as_f64().unwrap());
            assert!((u - v).abs() <= 1e-5 * u.abs().max(1.0), "step {} {k}: {u} vs {v}", x["step"]);
        }
        if x["step"].as_u64().unwrap() > 2 {
            let (u, v) = (x["disc"].as_f64().unwrap(), y["disc"].as_f64().unwrap());
            assert!((u - v).abs() <= 1e-5 * u.abs().max(1.0), "disc {u} vs {v}");
        }
    }
    // The exported EMA weights load in `reconstruct`.
    let img = data.join("circles/0.png");
    let rec = bin()
        .args(["reconstruct", "--config", root().join("configs/tiny_32.toml").to_str().unwrap()])
        .arg("--weights")
        .arg(b.join("run/tokenizer_ema.safetensors"))
        .arg(&img)
        .arg("-o")
        .arg(b.join("rec"))
        .output()
        .unwrap();
    // tiny_32 has 10 classes, the trained head 2: the head size must be reported, not ignored.
    assert!(!rec.status.success());
    assert!(String::from_utf8_lossy(&rec.stderr).contains("dist_head"), "{}", String::from_utf8_lossy(&rec.stderr));
    std::fs::remove_dir_all(&a).ok();
    std::fs::remove_dir_all(&b).ok();
}

#[test]
fn crash_while_writing_a_checkpoint_keeps_the_previous_one() {
    let d = tmp("crash");
    let data = image_folder(&d);
    let cfg = config(&d, &data, "");
    // Die during the second checkpoint write (step 6), after the temp file is written.
    let out = train(&cfg, &[], &[("MERGEVQ_FAULT_ABORT_BEFORE_RENAME", "checkpoint.safetensors:2")]);
    assert!(!out.status.success());
    let ckpt = mergevq::train::checkpoint::Checkpoint::load(&d.join("run/checkpoint.safetensors"))
        .expect("the previous checkpoint is intact");
    assert_eq!(ckpt.meta["step"], 3);
    let out = train(&cfg, &["--resume"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("resuming at step 3"));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_configs_and_data_are_reported() {
    let d = tmp("bad");
    let data = image_folder(&d);
    let cfg = config(&d, &data, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let variant = |from: &str, to: &str| {
        let p = d.join(format!("v{}.toml", to.len() + from.len()));
        std::fs::write(&p, text.replace(from, to)).unwrap();
        train(&p, &[], &[])
    };
    assert_clean_error(&variant("lr = 3e-4", "lr = -1e-3"), "optim.lr");
    assert_clean_error(&variant("merge_num = 28", "merge_num = 30"), "not a perfect square");
    assert_clean_error(&variant("merge_num = 28", "merge_num = -9"), "merge_num -9");
    assert_clean_error(&variant("batch_size = 3", "batch_size = 3\nshuffle_harder = true"), "shuffle_harder");
    assert_clean_error(&variant("source = \"folder\"", "source = \"floppy\""), "`fashion-mnist` or `folder`");
    assert_clean_error(&variant("gaussian-4", "foo-4"), "gaussian, exponential or uniform");
    assert_clean_error(
        &variant(&format!("path = \"{}\"", data.display()), "path = \"/nonexistent/data\""),
        "does not exist",
    );
    let empty = d.join("empty");
    std::fs::create_dir_all(empty.join("class_a")).unwrap();
    assert_clean_error(
        &variant(&format!("path = \"{}\"", data.display()), &format!("path = \"{}\"", empty.display())),
        "no PNG/JPEG",
    );
    assert_clean_error(&variant("perceptual_weight = 0.0", "perceptual_weight = 1.0"), "lpips_weights");
    assert_clean_error(&train(&cfg, &["--resume"], &[]), "no checkpoint");

    // A corrupt image is skipped with a warning that names it; training goes on.
    std::fs::write(data.join("stripes/broken.png"), b"not a png").unwrap();
    let out = train(&cfg, &[], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("broken.png"), "{err}");

    // A diverging run stops with the loss and step named, and saves nothing non-finite (in a
    // fresh run folder: the one above holds a run, which only --resume or --force may reuse).
    std::fs::remove_dir_all(d.join("run")).unwrap();
    let out = variant("lr = 3e-4", "lr = 1e12");
    assert_clean_error(&out, "at step");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NaN") || err.contains("inf"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

/// With the learned source recovery (learn_source = true) its BCE against the encoder's
/// source matrix is part of the loss, and its weights train.
#[test]
fn learned_source_recovery_trains() {
    let d = tmp("recovery");
    let data = image_folder(&d);
    let cfg = config(
        &d,
        &data,
        "[tokenizer.k2lconfig]\nlearn_source = true\nrec_embed_dim = 32\nnum_layers = 1\nnum_heads = 4\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace("steps = 6", "steps = 2");
    std::fs::write(&cfg, text).unwrap();
    let out = train(&cfg, &[], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let l = losses(&d.join("run"));
    let bce: Vec<f64> = l.iter().map(|v| v["source_bce"].as_f64().expect("source_bce logged")).collect();
    assert!(bce.iter().all(|v| v.is_finite() && *v > 0.0), "{bce:?}");
    let w = mergevq::io::safetensors::read_safetensors(&d.join("run/tokenizer_ema.safetensors")).unwrap();
    assert!(w.contains_key("recovery.rec_head.weight") && w.contains_key("recovery.rec_tokens"));
    std::fs::remove_dir_all(&d).ok();
}

/// The adaptive generator weight (‖∇nll‖/‖∇g‖ on the decoder's last layer) is computed and
/// training proceeds with it (finite, positive, within the clamp).
#[test]
fn adaptive_generator_weight() {
    let d = tmp("adaptive");
    let data = image_folder(&d);
    let cfg = config(&d, &data, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("disc_start = 2", "disc_start = 0\nadaptive_disc_weight = 0.8")
        .replace("steps = 6", "steps = 4");
    std::fs::write(&cfg, text).unwrap();
    let out = train(&cfg, &[], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let l = losses(&d.join("run"));
    for v in &l {
        let w = v["d_weight"].as_f64().expect("d_weight logged");
        assert!(w.is_finite() && w > 0.0 && w <= 0.8e4, "{w}");
        assert!(v["g_adv"].as_f64().unwrap().is_finite());
    }
    std::fs::remove_dir_all(&d).ok();
}

/// A checkpoint written before the library layout change still resumes: same tensor names,
/// optimizer moments and counters (tests/data/checkpoint_v1, made by the older build).
#[test]
fn checkpoint_from_before_the_layout_change_resumes() {
    let d = tmp("checkpoint-v1");
    let fixture = root().join("tests/data/checkpoint_v1");
    let run = d.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(fixture.join("checkpoint.safetensors"), run.join("checkpoint.safetensors")).unwrap();
    let text = std::fs::read_to_string(fixture.join("train.toml")).unwrap();
    let cfg = d.join("train.toml");
    std::fs::write(&cfg, text.replace("OUT_DIR", run.to_str().unwrap())).unwrap();
    let out = train(&cfg, &["--resume"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("resuming at step 2"));
    let steps: Vec<u64> = losses(&run).iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [3], "step 3, after the old build's steps 1 and 2");
    assert!(run.join("tokenizer_ema.safetensors").exists());
}

/// Ctrl-C saves a checkpoint at the next step boundary and `--resume` continues from it; a
/// second trainer on the run folder is refused while the first runs; a used run folder is
/// refused without `--resume` or `--force` and left as it was; `--force` starts over.
#[test]
fn interrupt_lock_and_used_run_folders() {
    let d = tmp("sigint");
    let data = image_folder(&d);
    let cfg = config(&d, &data, "");
    let long = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("steps = 6", "steps = 100000")
        .replace("checkpoint_every = 3", "checkpoint_every = 100000");
    std::fs::write(&cfg, &long).unwrap();
    let run = d.join("run");
    let child = bin()
        .args(["train-tokenizer", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while logged_steps(&run) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(600), "the run logs no steps");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_clean_error(&train(&cfg, &["--resume"], &[]), &format!("another trainer is running in {}", run.display()));

    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted") && err.contains("--resume"), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("error:")), "{err}");
    let ckpt = mergevq::train::checkpoint::Checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    let step = ckpt.meta["step"].as_u64().unwrap();
    assert_eq!(Some(step), losses(&run).last().and_then(|l| l["step"].as_u64()), "the checkpoint holds the last step");

    let before = snapshot(&[&run]);
    let out = train(&cfg, &[], &[]);
    assert_clean_error(&out, &format!("{} holds a training run", run.display()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    assert_unchanged(&before, "train-tokenizer on a used run folder");

    std::fs::write(&cfg, long.replace("steps = 100000", &format!("steps = {}", step + 1))).unwrap();
    let out = train(&cfg, &["--resume"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("resuming at step {step}")));
    assert_eq!(losses(&run).last().unwrap()["step"].as_u64(), Some(step + 1));

    let out = train(&cfg, &["--force"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<u64> = losses(&run).iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=step + 1).collect::<Vec<_>>(), "--force starts the log over");
    std::fs::remove_dir_all(&d).ok();
}

/// Complete lines with a training loss in the run's metrics.jsonl (a line may be half written).
fn logged_steps(run: &Path) -> usize {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    text.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.get("rec").is_some())).count()
}
