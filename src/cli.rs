//! The `mergevq` command line.
use anyhow::{bail, Context, Result};
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
    /// Tokenize a data set once for AR training: full-raster codes, group maps, K, labels.
    ExtractTokens {
        /// Tokenizer weights.
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        config: PathBuf,
        /// An image folder (class sub-folders), or fashion-mnist[:train|test].
        #[arg(long)]
        data: String,
        #[arg(short, long)]
        output: PathBuf,
        /// Fix K for every image (default: drawn from the tokenizer's candidate list).
        #[arg(long)]
        keep: Option<usize>,
        /// Only the first N images.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Train the AR generator (plain or MergeAR) on an extracted token set.
    TrainAr {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        resume: bool,
    },
    /// Generate class-conditional images with the AR model and decode them with the tokenizer.
    Generate {
        /// AR weights (gpt_ema.safetensors from train-ar).
        #[arg(long)]
        ar: PathBuf,
        /// The train-ar config (its [gpt] section).
        #[arg(long)]
        ar_config: PathBuf,
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 0)]
        class: usize,
        #[arg(long, default_value_t = 16)]
        num: usize,
        #[arg(long, default_value_t = 1.0)]
        cfg: f64,
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// MergeAR decoding with cache eviction (MergeAR models).
        #[arg(long)]
        mergear: bool,
        #[arg(long, default_value_t = 2)]
        window: usize,
        /// Merge instruction: the kept count K (MergeAR models; default the tokenizer's K).
        #[arg(long)]
        keep: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(short, long)]
        output: PathBuf,
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
        Command::ExtractTokens { tokenizer, config, data, output, keep, limit, seed } => extract_tokens(&tokenizer, &config, &data, &output, keep, limit, seed),
        Command::TrainAr { config, resume } => {
            let cfg = mergevq::train::ar::ArConfig::load(&config)?;
            let mut t = mergevq::train::ar::ArTrainer::new(cfg, resume)?;
            if resume {
                println!("resuming at step {}", t.step);
            }
            let (val, path) = t.run()?;
            println!("validation loss (EMA) {val:.4}; wrote {}", path.display());
            Ok(())
        }
        Command::Generate { ar, ar_config, tokenizer, config, class, num, cfg, top_k, top_p, temperature, mergear, window, keep, seed, output } => {
            let opts = mergevq::sample::SampleOpts { temperature, top_k, top_p, cfg };
            generate(&ar, &ar_config, &tokenizer, &config, class, num, &opts, mergear.then_some(window), keep, seed, &output)
        }
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

/// Opens `fashion-mnist[:split]` or an image folder.
pub fn open_data(spec: &str) -> Result<std::sync::Arc<dyn mergevq::data::Source>> {
    use mergevq::data::{FashionMnist, ImageFolder, FASHION_MNIST_DIR};
    Ok(match spec.split_once(':').map(|(a, b)| (a, b)).unwrap_or((spec, "train")) {
        ("fashion-mnist", split) => std::sync::Arc::new(FashionMnist::open(Path::new(FASHION_MNIST_DIR), split)?),
        _ => std::sync::Arc::new(ImageFolder::open(Path::new(spec))?),
    })
}

fn extract_tokens(weights: &Path, config: &Path, data: &str, out: &Path, keep: Option<usize>, limit: Option<usize>, seed: u64) -> Result<()> {
    use mergevq::data::{Augment, Loader};
    use rand::{Rng, SeedableRng};
    let device = mergevq::device();
    let cfg = TokenizerConfig::load(config)?;
    let mut tok = Tokenizer::open(&cfg, weights, false, &device)?;
    let l = tok.full_len();
    let candidates: Vec<usize> = match (&tok.plan.candidates, keep) {
        (_, Some(k)) => vec![k],
        (Some(c), None) => c.remain.iter().map(|&k| k as usize).filter(|&k| k <= l).collect(),
        (None, None) => vec![tok.plan.kept()? as usize],
    };
    let probs: Vec<f64> = match (&tok.plan.candidates, keep) {
        (Some(c), None) => c.cum_prob[..candidates.len()].to_vec(),
        _ => vec![1.0],
    };
    let source = open_data(data)?;
    let n = limit.unwrap_or(usize::MAX).min(source.len());
    let res = cfg.ddconfig.resolution as u32;
    let aug = Augment { resolution: res, random_crop: false, flip: false, pad: true };
    let loader = Loader { source: source.clone(), augment: aug.clone(), strong: aug, batch: 1, seed, skipped: Default::default() };
    // Each image's K: drawn from the candidate distribution (seeded by its index).
    let ks: Vec<usize> = (0..n)
        .map(|i| {
            let u: f64 = rand::rngs::StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).random();
            candidates[probs.partition_point(|&p| p < u).min(candidates.len() - 1)]
        })
        .collect();
    let mut set = TokenSetParts::default();
    let pb = progress(n as u64, "extract-tokens");
    let r = res as usize;
    for &k in &candidates {
        tok.set_keep(k)?;
        let items: Vec<usize> = (0..n).filter(|&i| ks[i] == k).collect();
        for chunk in items.chunks(32) {
            let mut pixels = Vec::new();
            let mut labels = Vec::new();
            for &i in chunk {
                let b = loader.batch_in_order(i);
                if b.size == 0 {
                    continue;
                }
                pixels.extend(b.images);
                labels.push(b.labels[0]);
            }
            let m = labels.len();
            if m == 0 {
                continue;
            }
            let x = burn::prelude::Tensor::<4>::from_data(burn::prelude::TensorData::new(pixels, [m, 3, r, r]), &device);
            let t = tok.encode(x)?;
            for (j, g) in t.group.iter().enumerate() {
                let idx = &t.indices[j * t.k..(j + 1) * t.k];
                set.codes.push(g.iter().map(|&gi| idx[gi]).collect());
                set.group.push(g.clone());
                set.keep.push(t.k);
                set.labels.push(labels[j]);
            }
            pb.inc(chunk.len() as u64);
        }
    }
    pb.finish_and_clear();
    let ts = mergevq::tokens_file::TokenSet { bits: cfg.embed_dim, candidates: candidates.clone(), codes: set.codes, group: set.group, keep: set.keep, labels: set.labels, classes: source.classes() };
    ts.save(out)?;
    println!("wrote {} images × L={l} codes (K ∈ {candidates:?}, {} classes) to {}", ts.len(), ts.classes, out.display());
    Ok(())
}

#[derive(Default)]
struct TokenSetParts {
    codes: Vec<Vec<i64>>,
    group: Vec<Vec<usize>>,
    keep: Vec<usize>,
    labels: Vec<usize>,
}

#[allow(clippy::too_many_arguments)]
fn generate(ar: &Path, ar_config: &Path, weights: &Path, config: &Path, class: usize, num: usize, opts: &mergevq::sample::SampleOpts, window: Option<usize>, keep: Option<usize>, seed: u64, out: &Path) -> Result<()> {
    use rand::SeedableRng;
    let device = mergevq::device();
    let acfg = mergevq::train::ar::ArConfig::load(ar_config)?;
    let w = mergevq::weights::Weights::open(ar, false, &device)?;
    let gpt = mergevq::gpt::Gpt::load(&w, "", &acfg.gpt).with_context(|| format!("AR weights {} do not fit {}", ar.display(), ar_config.display()))?;
    w.finish(&[])?;
    let cfg = TokenizerConfig::load(config)?;
    let tok = Tokenizer::open(&cfg, weights, false, &device)?;
    if cfg.embed_dim != acfg.gpt.bits() || tok.full_len() != acfg.gpt.block_size {
        bail!("the AR model generates {}-bit codes on L={} tokens, the tokenizer has {} bits and L={}", acfg.gpt.bits(), acfg.gpt.block_size, cfg.embed_dim, tok.full_len());
    }
    let merge = if acfg.gpt.merge_tokens > 0 {
        let ts = mergevq::tokens_file::TokenSet::load(&acfg.tokens).ok();
        let cands: Vec<usize> = ts.map(|t| t.candidates).unwrap_or_default();
        let k = keep.unwrap_or(tok.plan.kept()? as usize);
        Some(cands.iter().position(|&c| c == k).ok_or_else(|| anyhow::anyhow!("K={k} is not among the model's kept-count candidates {cands:?}"))?)
    } else {
        if window.is_some() {
            bail!("--mergear needs a MergeAR model (gpt.merge_tokens > 0)");
        }
        None
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let side = cfg.embed_res();
    let res = cfg.ddconfig.resolution as u32;
    let cols = (num as f64).sqrt().ceil() as u32;
    let rows = (num as u32).div_ceil(cols);
    let mut grid = image::RgbImage::new(cols * res, rows * res);
    let (mut tokens, mut secs, mut peak) = (0usize, 0.0, 0usize);
    let pb = progress(num as u64, "generate");
    for i in 0..num {
        let t0 = std::time::Instant::now();
        let g = mergevq::sample::generate(&gpt, class, merge, window, opts, &mut rng, None)?;
        secs += t0.elapsed().as_secs_f64();
        tokens += g.codes.len();
        peak = peak.max(g.peak_kv);
        let codes = mergevq::lfq::Lfq::codes(&g.codes, cfg.embed_dim, 1, side, side, &device);
        let img = tensor_to_rgb(tok.decoder.forward(codes).reshape([3, res as usize, res as usize]));
        image::imageops::overlay(&mut grid, &img, ((i as u32 % cols) * res) as i64, ((i as u32 / cols) * res) as i64);
        pb.inc(1);
    }
    pb.finish_and_clear();
    save_png(&grid, out)?;
    println!("{num} images of class {class}: {:.1} tokens/s, peak KV-cache entries {peak} (of {} positions){}; wrote {}", tokens as f64 / secs, acfg.gpt.block_size + acfg.gpt.prefix(), window.map(|w| format!(", MergeAR window {w}")).unwrap_or_default(), out.display());
    Ok(())
}
