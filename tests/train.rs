//! The tokenizer trainer: resume continues the same trajectory, a crash while writing a
//! checkpoint keeps the previous one, bad configs and data give clear errors.
mod common;

use common::{assert_clean_error, bin, root, tmp};
use std::path::{Path, PathBuf};
use std::process::Output;

/// A small image folder: 2 classes × 6 images of 32×32, plus `extra` files.
fn image_folder(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    for (c, name) in ["circles", "stripes"].iter().enumerate() {
        std::fs::create_dir_all(data.join(name)).unwrap();
        for i in 0..6u32 {
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                let v = if c == 0 {
                    (((x as i32 - 16).pow(2) + (y as i32 - 16).pow(2)) as u32 / (3 + i)) % 256
                } else {
                    ((x + i) * 17 % 256) ^ (y * 3)
                };
                image::Rgb([v as u8, (v * 2) as u8, 255 - v as u8])
            });
            img.save(data.join(name).join(format!("{i}.png"))).unwrap();
        }
    }
    data
}

fn config(dir: &Path, data: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[tokenizer]
n_embed = 1024
embed_dim = 10
[tokenizer.ddconfig]
z_channels = 10
resolution = 32
ch = 32
ch_mult = [1, 1, 2]
num_res_blocks = 1
num_att_blocks = 3
num_heads = 4
dist_head = "layer3"
num_classes = 2
merge_num = 28
cand_distribution = "gaussian-4"
[data]
source = "folder"
path = "{data}"
batch_size = 3
[optim]
lr = 3e-4
clip = 5.0
[loss]
perceptual_weight = 0.0
disc_start = 2
disc_ndf = 8
[run]
out_dir = "{out}"
steps = 6
log_every = 1
sample_every = 3
checkpoint_every = 3
val_images = 4
{extra}
"#,
        data = data.display(),
        out = dir.join("run").display()
    );
    let p = dir.join("train.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn train(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.arg("train-tokenizer").arg("--config").arg(cfg).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn losses(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("rec").is_some())
        .collect()
}

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

    // A diverging run stops with the loss and step named, and saves nothing non-finite.
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
