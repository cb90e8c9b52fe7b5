//! The `mergevq` command line.
use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mergevq::config::TokenizerConfig;
use mergevq::image_io::{load_image, merge_map, psnr, save_png, tensor_to_rgb};
use mergevq::parity::Case;
use mergevq::tokenizer::Tokenizer;
use mergevq::tokens_file::TokensFile;
use std::path::{Path, PathBuf};

/// MergeVQ: visual tokenization with token merging and lookup-free quantization.
#[derive(Parser)]
#[command(name = "mergevq", version, about)]
pub struct Args {
    /// Without a subcommand, runs `demo`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Reconstruct the bundled photo with the G+R d64 architecture (random weights for now)
    /// and write the reconstruction and merge map.
    Demo {
        #[arg(short, long, default_value = "demo-out")]
        output: PathBuf,
    },
    /// Run golden test cases (folders with case.json + safetensors) and compare every output.
    Parity {
        /// Case folders, or folders holding case folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Write randomly initialised tokenizer weights for a config.
    Init {
        #[arg(long)]
        config: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Encode and decode images; writes the reconstruction and the merge map, prints PSNR.
    Reconstruct {
        #[command(flatten)]
        model: ModelArgs,
        /// Images (PNG/JPEG); other sizes are resized and centre-cropped to the config's resolution.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Tokenize images into a tokens file (indices, K, group map).
    Encode {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Decode a tokens file into PNGs (<output>/<n>.png).
    Decode {
        #[command(flatten)]
        model: ModelArgs,
        tokens: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Train a tokenizer (losses, EMA, checkpoints in run.out_dir; --resume continues).
    TrainTokenizer {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        resume: bool,
    },
    /// Benchmarks (medians after a warm-up).
    Bench {
        #[command(subcommand)]
        what: crate::bench::Bench,
    },
}

/// A tokenizer: its config and weights.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// Tokenizer config: TOML, or an official YAML (configs/gpu_s1/*.yaml).
    #[arg(long)]
    pub config: PathBuf,
    /// Weights: safetensors (`mergevq init`, training exports) or a Lightning .ckpt.
    #[arg(long)]
    pub weights: PathBuf,
    /// Take the EMA weights of a Lightning checkpoint.
    #[arg(long)]
    pub ema: bool,
    /// Kept-token count K (a perfect square ≤ L); default: the config's.
    #[arg(long)]
    pub keep: Option<usize>,
}

impl ModelArgs {
    pub fn load(&self, device: &burn::prelude::Device) -> Result<Tokenizer> {
        let cfg = TokenizerConfig::load(&self.config)?;
        let mut tok = Tokenizer::open(&cfg, &self.weights, self.ema, device)?;
        if let Some(k) = self.keep {
            tok.set_keep(k)?;
        }
        Ok(tok)
    }
}

pub fn run(cmd: Option<Command>) -> Result<()> {
    match cmd.unwrap_or(Command::Demo { output: PathBuf::from("demo-out") }) {
        Command::Demo { output } => demo(&output),
        Command::Parity { dirs } => parity(dirs),
        Command::Init { config, output, seed } => {
            let cfg = TokenizerConfig::load(&config)?;
            let tok = Tokenizer::init(&cfg, seed, &mergevq::device())?;
            tok.save(&output)?;
            println!("wrote {} (seed {seed})", output.display());
            Ok(())
        }
        Command::Reconstruct { model, images, output } => reconstruct(&model, &images, &output),
        Command::Encode { model, images, output } => encode(&model, &images, &output),
        Command::Decode { model, tokens, output } => decode(&model, &tokens, &output),
        Command::Bench { what } => crate::bench::run(what),
        Command::TrainTokenizer { config, resume } => {
            let cfg = mergevq::train::config::TrainConfig::load(&config)?;
            let mut t = mergevq::train::tokenizer::Trainer::new(cfg, resume)?;
            if resume {
                println!("resuming at step {}", t.step);
            }
            let s = t.run()?;
            println!("trained {} steps ({:.1} images/s); validation PSNR (EMA) {:.2} dB; wrote {}", s.steps, s.images_per_s, s.val_psnr, s.exported.display());
            Ok(())
        }
    }
}

/// Files the binary ships with, found next to the crate (cargo run) or the working directory.
fn asset(rel: &str) -> Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    [here, PathBuf::from(rel)].into_iter().find(|p| p.exists()).ok_or_else(|| anyhow::anyhow!("bundled file {rel} is missing"))
}

fn demo(out: &Path) -> Result<()> {
    let device = mergevq::device();
    let cfg = TokenizerConfig::load(&asset("configs/mergevq_256_GR_d64.toml")?)?;
    let tok = Tokenizer::init(&cfg, 0, &device)?;
    println!("MergeVQ G+R d64 (random weights until trained models ship): 256×256 → L={} tokens → K={} kept", tok.full_len(), tok.plan.kept()?);
    let photo = asset("assets/rocket.jpg")?;
    let (x, _) = load_image(&photo, 256, &device)?;
    let input = tensor_to_rgb(x.clone().reshape([3, 256, 256]));
    let t0 = std::time::Instant::now();
    let t = tok.encode(x)?;
    let rec = tensor_to_rgb(tok.decode(t.quantized, &t.group).reshape([3, 256, 256]));
    let secs = t0.elapsed().as_secs_f64();
    std::fs::create_dir_all(out)?;
    save_png(&input, &out.join("input.png"))?;
    save_png(&rec, &out.join("reconstruction.png"))?;
    save_png(&merge_map(&input, &t.group[0], cfg.embed_res()), &out.join("merge_map.png"))?;
    println!("K={} groups, PSNR={:.2} dB, encode+decode {secs:.2} s", t.k, psnr(&input, &rec));
    println!("wrote {}/{{input,reconstruction,merge_map}}.png", out.display());
    Ok(())
}

fn stem(p: &Path) -> String {
    p.file_stem().and_then(|s| s.to_str()).unwrap_or("image").to_string()
}

fn reconstruct(model: &ModelArgs, images: &[PathBuf], out: &Path) -> Result<()> {
    let device = mergevq::device();
    let tok = model.load(&device)?;
    let res = tok.cfg.ddconfig.resolution;
    let side = tok.cfg.embed_res();
    std::fs::create_dir_all(out)?;
    let pb = progress(images.len() as u64, "reconstruct");
    for path in images {
        let (x, note) = load_image(path, res, &device)?;
        if let Some(n) = note {
            pb.suspend(|| eprintln!("note: {n}"));
        }
        let input = tensor_to_rgb(x.clone().reshape([3, res, res]));
        let t = tok.encode(x)?;
        let rec = tensor_to_rgb(tok.decode(t.quantized, &t.group).reshape([3, res, res]));
        let name = stem(path);
        save_png(&rec, &out.join(format!("{name}_rec.png")))?;
        save_png(&merge_map(&input, &t.group[0], side), &out.join(format!("{name}_merge.png")))?;
        let line = format!("{}: L={} K={} PSNR={:.2} dB", path.display(), side * side, t.k, psnr(&input, &rec));
        pb.suspend(|| println!("{line}"));
        pb.inc(1);
    }
    pb.finish_and_clear();
    println!("wrote reconstructions and merge maps to {}", out.display());
    Ok(())
}

fn encode(model: &ModelArgs, images: &[PathBuf], out: &Path) -> Result<()> {
    let device = mergevq::device();
    let tok = model.load(&device)?;
    let res = tok.cfg.ddconfig.resolution;
    let mut file = TokensFile { bits: tok.cfg.embed_dim, resolution: res, indices: vec![], group: vec![] };
    let pb = progress(images.len() as u64, "encode");
    for path in images {
        let (x, note) = load_image(path, res, &device)?;
        if let Some(n) = note {
            pb.suspend(|| eprintln!("note: {n}"));
        }
        let t = tok.encode(x)?;
        file.indices.push(t.indices);
        file.group.extend(t.group);
        pb.inc(1);
    }
    pb.finish_and_clear();
    file.save(out)?;
    println!("wrote {} images × K={} tokens (L={}) to {}", file.indices.len(), file.indices[0].len(), file.group[0].len(), out.display());
    Ok(())
}

fn decode(model: &ModelArgs, tokens: &Path, out: &Path) -> Result<()> {
    let device = mergevq::device();
    let tok = model.load(&device)?;
    let file = TokensFile::load(tokens)?;
    if file.bits != tok.cfg.embed_dim {
        bail!("{} holds {}-bit codes but the tokenizer uses {} bits (another tokenizer?)", tokens.display(), file.bits, tok.cfg.embed_dim);
    }
    if file.group[0].len() != tok.full_len() {
        bail!("{} has L={} tokens per image, the tokenizer makes L={}", tokens.display(), file.group[0].len(), tok.full_len());
    }
    std::fs::create_dir_all(out)?;
    let res = tok.cfg.ddconfig.resolution;
    for (i, (idx, grp)) in file.indices.iter().zip(&file.group).enumerate() {
        let img = tok.decode_indices(idx, std::slice::from_ref(grp), &device)?;
        save_png(&tensor_to_rgb(img.reshape([3, res, res])), &out.join(format!("{i}.png")))?;
    }
    println!("wrote {} images to {}", file.indices.len(), out.display());
    Ok(())
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}").unwrap().progress_chars("=> "));
    pb.set_message(what.to_string());
    pb
}

fn parity(dirs: Vec<PathBuf>) -> Result<()> {
    let mut cases = Vec::new();
    for d in dirs {
        if d.join("case.json").exists() {
            cases.push(d);
        } else if d.is_dir() {
            let mut sub: Vec<PathBuf> = std::fs::read_dir(&d)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("case.json").exists()).collect();
            sub.sort();
            if sub.is_empty() {
                bail!("{} holds no case.json", d.display());
            }
            cases.extend(sub);
        } else {
            bail!("{} is not a case folder", d.display());
        }
    }
    let device = mergevq::device();
    let (mut passed, mut failed) = (0, 0);
    let pb = progress(cases.len() as u64, "parity");
    for dir in &cases {
        let line = match Case::open(dir, &device).and_then(|c| c.run()) {
            Ok(o) => {
                let verdict = if o.pass { "PASS" } else { "FAIL" };
                if o.pass { passed += 1 } else { failed += 1 }
                let mut line = format!("{verdict} {} max_abs_err={:.3e} worst={}", o.name, o.max_abs_err, o.worst);
                for f in o.failures.iter().take(5) {
                    line.push_str(&format!("\n    {f}"));
                }
                line
            }
            Err(e) => {
                failed += 1;
                format!("FAIL {} error: {e:#}", dir.display())
            }
        };
        pb.suspend(|| println!("{line}"));
        pb.inc(1);
    }
    pb.finish_and_clear();
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} golden case(s) failed");
    }
    Ok(())
}
