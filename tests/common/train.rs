//! The tokenizer trainer's fixtures: a small image folder, a training config over it (run
//! folder `<dir>/run`), a run of `train-tokenizer`, and the logged losses.
use super::bin;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A small image folder: 2 classes × 6 images of 32×32, plus `extra` files.
pub fn image_folder(dir: &Path) -> PathBuf {
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

pub fn config(dir: &Path, data: &Path, extra: &str) -> PathBuf {
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

pub fn train(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.arg("train-tokenizer").arg("--config").arg(cfg).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

pub fn losses(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("rec").is_some())
        .collect()
}
