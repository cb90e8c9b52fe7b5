//! Stage 2 end to end: extract-tokens → train-ar (plain and MergeAR) → generate, and the
//! errors for unknown classes, K outside the candidates and tokens from another tokenizer.
mod common;

use common::{assert_clean_error, ok, root, run, run_with, tiny_tokenizer, tmp};
use std::path::{Path, PathBuf};

fn ar_config(dir: &Path, tokens: &Path, mode: &str, merge_tokens: usize) -> PathBuf {
    let p = dir.join(format!("{mode}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"mode = "{mode}"
window = 2
tokens = "{tokens}"
batch_size = 4
val_fraction = 0.25
[gpt]
factorized_bits = [4, 6]
block_size = 64
dim = 32
n_head = 2
spatial_n_layer = 2
factorized_n_layer = 1
class_num = 10
merge_tokens = {merge_tokens}
multiple_of = 32
[optim]
optimizer = "adamw"
lr = 1e-3
betas = [0.9, 0.95]
clip = 1.0
[run]
out_dir = "{out}"
steps = 3
log_every = 1
checkpoint_every = 2
"#,
            tokens = tokens.display(),
            out = dir.join(format!("run_{mode}")).display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn extract_train_generate() {
    let d = tmp("e2e");
    let cfg = root().join("configs/tiny_32.toml");
    let w = tiny_tokenizer(&d, 0);
    let tokens = d.join("tokens.safetensors");
    let s = ok(run(&[
        "extract-tokens",
        "--tokenizer",
        w.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        "fashion-mnist:test",
        "--limit",
        "24",
        "-o",
        tokens.to_str().unwrap(),
    ]));
    assert!(s.contains("24 images × L=64"), "{s}");
    let set = mergevq::io::tokens::TokenSet::load(&tokens).unwrap();
    assert_eq!(set.candidates, vec![25, 36, 49, 64]);
    for i in 0..set.len() {
        assert!(set.candidates.contains(&set.keep[i]));
        let distinct: std::collections::HashSet<_> = set.group[i].iter().collect();
        assert_eq!(distinct.len(), set.keep[i], "image {i}: K groups");
        // Every position carries the code of its group: same group → same code.
        for j in 0..64 {
            for k in 0..64 {
                if set.group[i][j] == set.group[i][k] {
                    assert_eq!(set.codes[i][j], set.codes[i][k]);
                }
            }
        }
    }

    for (mode, m) in [("plain", 0), ("mergear", 4)] {
        let c = ar_config(&d, &tokens, mode, m);
        let s = ok(run(&["train-ar", "--config", c.to_str().unwrap()]));
        assert!(s.contains("validation loss"), "{s}");
    }
    let mc = d.join("mergear.toml");
    let gw = d.join("run_mergear/gpt_ema.safetensors");
    let grid = d.join("grid.png");
    let (gw, mc, w, cfg, grid_s) = (
        gw.to_str().unwrap(),
        mc.to_str().unwrap(),
        w.to_str().unwrap(),
        cfg.to_str().unwrap(),
        grid.to_str().unwrap(),
    );
    let generate =
        |args: &[&str]| run_with(&["generate", "--ar", gw, "--ar-config", mc, "--tokenizer", w, "--config", cfg], args);
    let s = ok(generate(&[
        "--class",
        "3",
        "--num",
        "2",
        "--mergear",
        "--window",
        "2",
        "--cfg",
        "1.5",
        "--top-k",
        "50",
        "-o",
        grid_s,
    ]));
    assert!(s.contains("tokens/s") && s.contains("peak KV-cache entries"), "{s}");
    assert_eq!(image::open(&grid).unwrap().width(), 64);
    // --each: every sample as its own file, the same pixels as its cell of the grid.
    let each = d.join("each");
    ok(generate(&["--class", "3", "--num", "3", "--cfg", "1.5", "-o", grid_s, "--each", each.to_str().unwrap()]));
    let g = image::open(&grid).unwrap().to_rgb8();
    for i in 0..3u32 {
        let one = image::open(each.join(format!("3_{i:05}.png"))).unwrap().to_rgb8();
        assert_eq!(one.dimensions(), (32, 32));
        let cell = image::imageops::crop_imm(&g, (i % 2) * 32, (i / 2) * 32, 32, 32).to_image();
        assert_eq!(one, cell, "sample {i}");
    }

    assert_clean_error(&generate(&["--num", "1", "-o", grid_s, "--class", "12"]), "class 12");
    assert_clean_error(&generate(&["--num", "1", "-o", grid_s, "--keep", "30"]), "K=30");
    // A token set from a tokenizer with another codebook.
    let other = d.join("other.safetensors");
    let mut bad = set.clone();
    bad.bits = 18;
    bad.save(&other, &Default::default()).unwrap();
    let c = ar_config(&d, &other, "plain", 0);
    assert_clean_error(&run(&["train-ar", "--config", c.to_str().unwrap()]), "18-bit");
    std::fs::remove_dir_all(&d).ok();
}
