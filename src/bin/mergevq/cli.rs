//! The `mergevq` command line.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mergevq::io::image::{load_image, merge_map, psnr, save_png, tensor_to_rgb};
use mergevq::io::tokens::TokensFile;
use mergevq::parity::Case;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
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
    /// Run the bundled Fashion-MNIST tokenizer and MergeAR model: reconstructions at several K,
    /// MergeAR vs plain AR samples, and a report.html.
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
    /// Reconstruction metrics over kept counts: PSNR, SSIM, LPIPS, rFID, codebook usage;
    /// writes report.json, rate–distortion plots and a reconstruction grid to the output folder.
    EvalRecon {
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        config: PathBuf,
        /// An image folder, or fashion-mnist[:train|test].
        #[arg(long)]
        data: String,
        /// Kept counts K (perfect squares ≤ L); default the config's K.
        #[arg(long, value_delimiter = ',')]
        keep: Vec<usize>,
        #[arg(long, default_value_t = 1000)]
        num: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Skip rFID (InceptionV3 on every image is the slow part on a CPU).
        #[arg(long)]
        no_fid: bool,
        #[arg(long, default_value = "weights/inception_fid.safetensors")]
        inception: PathBuf,
        #[arg(long, default_value = "weights/lpips_vgg16.safetensors")]
        lpips: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Generation metrics: gFID and KID of a folder of samples against a reference folder or
    /// saved statistics.
    EvalGen {
        /// Folder of generated images (one size).
        #[arg(long)]
        samples: PathBuf,
        /// Reference: an image folder, or a stats file from --save-stats.
        #[arg(long)]
        reference: PathBuf,
        /// Save the reference statistics here for reuse.
        #[arg(long)]
        save_stats: Option<PathBuf>,
        #[arg(long, default_value = "weights/inception_fid.safetensors")]
        inception: PathBuf,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Linear probing of the frozen encoder's [CLS] features and mean-pooled merged tokens.
    Probe {
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        config: PathBuf,
        /// Training images: a folder or fashion-mnist[:split].
        #[arg(long)]
        train: String,
        #[arg(long)]
        val: String,
        #[arg(long, default_value_t = 5000)]
        num_train: usize,
        #[arg(long, default_value_t = 1000)]
        num_val: usize,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        #[arg(long, default_value_t = 1e-2)]
        lr: f64,
        /// Feature cache (reused when present).
        #[arg(long, default_value = "probe_features.safetensors")]
        cache: PathBuf,
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
        Command::Demo { output } => crate::demo::run(&output),
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
        Command::ExtractTokens { tokenizer, config, data, output, keep, limit, seed } => {
            extract_tokens(&tokenizer, &config, &data, &output, keep, limit, seed)
        }
        Command::TrainAr { config, resume } => {
            let cfg = mergevq::train::ar::ArConfig::load(&config)?;
            let mut t = mergevq::train::ar::ArTrainer::new(cfg, resume)?;
            if resume {
                println!("resuming at step {}", t.step);
            }
            let s = t.run()?;
            println!("validation loss (EMA) {:.4}; wrote {}", s.val, s.exported.display());
            Ok(())
        }
        Command::Generate {
            ar,
            ar_config,
            tokenizer,
            config,
            class,
            num,
            cfg,
            top_k,
            top_p,
            temperature,
            mergear,
            window,
            keep,
            seed,
            output,
        } => {
            let opts = mergevq::ar::sample::SampleOpts { temperature, top_k, top_p, cfg };
            generate(
                &ar,
                &ar_config,
                &tokenizer,
                &config,
                class,
                num,
                &opts,
                mergear.then_some(window),
                keep,
                seed,
                &output,
            )
        }
        Command::EvalRecon { tokenizer, config, data, keep, num, batch, no_fid, inception, lpips, output } => {
            eval_recon(
                &tokenizer,
                &config,
                &data,
                keep,
                num,
                batch,
                (!no_fid).then_some(inception.as_path()),
                &lpips,
                &output,
            )
        }
        Command::EvalGen { samples, reference, save_stats, inception, batch, output } => {
            eval_gen(&samples, &reference, save_stats.as_deref(), &inception, batch, &output)
        }
        Command::Probe { tokenizer, config, train, val, num_train, num_val, epochs, lr, cache } => {
            probe(&tokenizer, &config, &train, &val, num_train, num_val, epochs, lr, &cache)
        }
        Command::TrainTokenizer { config, resume } => {
            let cfg = mergevq::train::config::TrainConfig::load(&config)?;
            let mut t = mergevq::train::tokenizer::Trainer::new(cfg, resume)?;
            if resume {
                println!("resuming at step {}", t.step);
            }
            let s = t.run()?;
            println!(
                "trained {} steps ({:.1} images/s); validation PSNR (EMA) {:.2} dB; wrote {}",
                s.steps,
                s.images_per_s,
                s.val,
                s.exported.display()
            );
            Ok(())
        }
    }
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
    println!(
        "wrote {} images × K={} tokens (L={}) to {}",
        file.indices.len(),
        file.indices[0].len(),
        file.group[0].len(),
        out.display()
    );
    Ok(())
}

fn decode(model: &ModelArgs, tokens: &Path, out: &Path) -> Result<()> {
    let device = mergevq::device();
    let tok = model.load(&device)?;
    let file = TokensFile::load(tokens)?;
    if file.bits != tok.cfg.embed_dim {
        bail!(
            "{} holds {}-bit codes but the tokenizer uses {} bits (another tokenizer?)",
            tokens.display(),
            file.bits,
            tok.cfg.embed_dim
        );
    }
    if file.group[0].len() != tok.full_len() {
        bail!(
            "{} has L={} tokens per image, the tokenizer makes L={}",
            tokens.display(),
            file.group[0].len(),
            tok.full_len()
        );
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
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}").unwrap().progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn parity(dirs: Vec<PathBuf>) -> Result<()> {
    let mut cases = Vec::new();
    for d in dirs {
        if d.join("case.json").exists() {
            cases.push(d);
        } else if d.is_dir() {
            let mut sub: Vec<PathBuf> = std::fs::read_dir(&d)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("case.json").exists())
                .collect();
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
                if o.pass {
                    passed += 1
                } else {
                    failed += 1
                }
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
pub fn open_data(spec: &str) -> Result<std::sync::Arc<dyn mergevq::io::data::Source>> {
    use mergevq::io::data::{FashionMnist, ImageFolder, FASHION_MNIST_DIR};
    Ok(match spec.split_once(':').map(|(a, b)| (a, b)).unwrap_or((spec, "train")) {
        ("fashion-mnist", split) => std::sync::Arc::new(FashionMnist::open(Path::new(FASHION_MNIST_DIR), split)?),
        _ => std::sync::Arc::new(ImageFolder::open(Path::new(spec))?),
    })
}

fn extract_tokens(
    weights: &Path,
    config: &Path,
    data: &str,
    out: &Path,
    keep: Option<usize>,
    limit: Option<usize>,
    seed: u64,
) -> Result<()> {
    use mergevq::io::data::{Augment, Loader};
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
    let loader = Loader {
        source: source.clone(),
        augment: aug.clone(),
        strong: aug,
        batch: 1,
        seed,
        skipped: Default::default(),
    };
    // Each image's K: drawn from the candidate distribution (seeded by its index).
    let ks: Vec<usize> = (0..n)
        .map(|i| {
            let u: f64 =
                rand::rngs::StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).random();
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
            let x =
                burn::prelude::Tensor::<4>::from_data(burn::prelude::TensorData::new(pixels, [m, 3, r, r]), &device);
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
    let ts = mergevq::io::tokens::TokenSet {
        bits: cfg.embed_dim,
        candidates: candidates.clone(),
        codes: set.codes,
        group: set.group,
        keep: set.keep,
        labels: set.labels,
        classes: source.classes(),
    };
    ts.save(out)?;
    println!(
        "wrote {} images × L={l} codes (K ∈ {candidates:?}, {} classes) to {}",
        ts.len(),
        ts.classes,
        out.display()
    );
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
fn generate(
    ar: &Path,
    ar_config: &Path,
    weights: &Path,
    config: &Path,
    class: usize,
    num: usize,
    opts: &mergevq::ar::sample::SampleOpts,
    window: Option<usize>,
    keep: Option<usize>,
    seed: u64,
    out: &Path,
) -> Result<()> {
    use rand::SeedableRng;
    let device = mergevq::device();
    let acfg = mergevq::train::ar::ArConfig::load(ar_config)?;
    let w = mergevq::io::weights::Weights::open(ar, false, &device)?;
    let gpt = mergevq::ar::gpt::Gpt::load(&w, "", &acfg.gpt)
        .with_context(|| format!("AR weights {} do not fit {}", ar.display(), ar_config.display()))?;
    w.finish(&[])?;
    let cfg = TokenizerConfig::load(config)?;
    let tok = Tokenizer::open(&cfg, weights, false, &device)?;
    if cfg.embed_dim != acfg.gpt.bits() || tok.full_len() != acfg.gpt.block_size {
        bail!(
            "the AR model generates {}-bit codes on L={} tokens, the tokenizer has {} bits and L={}",
            acfg.gpt.bits(),
            acfg.gpt.block_size,
            cfg.embed_dim,
            tok.full_len()
        );
    }
    let merge = if acfg.gpt.merge_tokens > 0 {
        let ts = mergevq::io::tokens::TokenSet::load(&acfg.tokens).ok();
        let cands: Vec<usize> = ts.map(|t| t.candidates).unwrap_or_default();
        let k = keep.unwrap_or(tok.plan.kept()? as usize);
        Some(
            cands
                .iter()
                .position(|&c| c == k)
                .ok_or_else(|| anyhow::anyhow!("K={k} is not among the model's kept-count candidates {cands:?}"))?,
        )
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
        let g = mergevq::ar::sample::generate(&gpt, class, merge, window, opts, &mut rng, None)?;
        secs += t0.elapsed().as_secs_f64();
        tokens += g.codes.len();
        peak = peak.max(g.peak_kv);
        let codes = mergevq::tokenizer::lfq::Lfq::codes(&g.codes, cfg.embed_dim, 1, side, side, &device);
        let img = tensor_to_rgb(tok.decoder.forward(codes).reshape([3, res as usize, res as usize]));
        image::imageops::overlay(&mut grid, &img, ((i as u32 % cols) * res) as i64, ((i as u32 / cols) * res) as i64);
        pb.inc(1);
    }
    pb.finish_and_clear();
    save_png(&grid, out)?;
    println!(
        "{num} images of class {class}: {:.1} tokens/s, peak KV-cache entries {peak} (of {} positions){}; wrote {}",
        tokens as f64 / secs,
        acfg.gpt.block_size + acfg.gpt.prefix(),
        window.map(|w| format!(", MergeAR window {w}")).unwrap_or_default(),
        out.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn eval_recon(
    weights: &Path,
    config: &Path,
    data: &str,
    keeps: Vec<usize>,
    num: usize,
    batch: usize,
    inception: Option<&Path>,
    lpips: &Path,
    out: &Path,
) -> Result<()> {
    let device = mergevq::device();
    let cfg = TokenizerConfig::load(config)?;
    let mut tok = Tokenizer::open(&cfg, weights, false, &device)?;
    let keeps = if keeps.is_empty() { vec![tok.plan.kept()? as usize] } else { keeps };
    for &k in &keeps {
        tok.clone().set_keep(k)?;
    }
    let source = open_data(data)?;
    let inc = inception.map(|p| mergevq::eval::load_inception(p, &device)).transpose()?;
    let lp = mergevq::eval::load_lpips(lpips, &device)?;
    std::fs::create_dir_all(out)?;
    let n = num.min(source.len());
    let pb = progress((n * keeps.len()) as u64, "eval-recon");
    let reports = mergevq::eval::eval_recon(
        &mut tok,
        source,
        n,
        &keeps,
        batch,
        Some(&lp),
        inc.as_ref(),
        &out.join("reconstructions.png"),
        &|k| pb.inc(k),
    )?;
    pb.finish_and_clear();
    println!(
        "{:>5} {:>7} {:>8} {:>7} {:>8} {:>9} {:>8} {:>10}",
        "K", "images", "PSNR", "SSIM", "LPIPS", "rFID", "usage", "perplexity"
    );
    for r in &reports {
        let opt = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "-".into());
        println!(
            "{:>5} {:>7} {:>8.2} {:>7.4} {:>8} {:>9} {:>8.4} {:>10.1}",
            r.keep,
            r.images,
            r.psnr,
            r.ssim,
            opt(r.lpips, 4),
            opt(r.rfid, 2),
            r.codebook_usage,
            r.perplexity
        );
    }
    let json = serde_json::json!({"tokenizer": weights, "config": config, "data": data, "L": tok.full_len(), "results": reports});
    mergevq::io::weights::atomic_write(&out.join("report.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    let series = |f: &dyn Fn(&mergevq::eval::ReconReport) -> Option<f64>| {
        reports.iter().filter_map(|r| f(r).map(|v| (r.keep as f64, v))).collect::<Vec<_>>()
    };
    save_png(&mergevq::eval::plot::line_plot(&[series(&|r| Some(r.psnr))], 480, 320), &out.join("rd_psnr.png"))?;
    if inception.is_some() {
        save_png(&mergevq::eval::plot::line_plot(&[series(&|r| r.rfid)], 480, 320), &out.join("rd_rfid.png"))?;
    }
    println!(
        "wrote {}/{{report.json,rd_psnr.png{},reconstructions.png}}",
        out.display(),
        if inception.is_some() { ",rd_rfid.png" } else { "" }
    );
    Ok(())
}

fn eval_gen(
    samples: &Path,
    reference: &Path,
    save: Option<&Path>,
    inception: &Path,
    batch: usize,
    out: &Path,
) -> Result<()> {
    use mergevq::eval::metrics::{frechet_distance, kid, Stats};
    use mergevq::io::data::{ImageFolder, Source};
    let device = mergevq::device();
    let net = mergevq::eval::load_inception(inception, &device)?;
    let gen = ImageFolder::open(samples)?;
    let pb = progress(gen.len() as u64, "features (samples)");
    let fg = mergevq::eval::features_of(&net, &gen, batch, &device, &|k| pb.inc(k))?;
    pb.finish_and_clear();
    let (ref_stats, fr) = if reference.is_file() {
        mergevq::eval::load_stats(reference)?
    } else {
        let r = ImageFolder::open(reference)?;
        let pb = progress(r.len() as u64, "features (reference)");
        let fr = mergevq::eval::features_of(&net, &r, batch, &device, &|k| pb.inc(k))?;
        pb.finish_and_clear();
        (Stats::from_features(&fr), fr)
    };
    if let Some(p) = save {
        mergevq::eval::save_stats(p, &fr)?;
    }
    let gfid = frechet_distance(&Stats::from_features(&fg), &ref_stats);
    let size = fg.len().min(fr.len()).min(1000);
    let (kid_mean, kid_std) = kid(&fg, &fr, 100, size, 0);
    println!("gFID {gfid:.3}  KID {kid_mean:.5} ± {kid_std:.5}  ({} samples, {} reference)", fg.len(), fr.len());
    println!("Inception Score: not available (the registry FID weights have no classifier head)");
    std::fs::create_dir_all(out)?;
    let json = serde_json::json!({"samples": samples, "reference": reference, "n_samples": fg.len(), "n_reference": fr.len(), "gfid": gfid, "kid": kid_mean, "kid_std": kid_std, "inception_score": null});
    mergevq::io::weights::atomic_write(&out.join("report.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn probe(
    weights: &Path,
    config: &Path,
    train: &str,
    val: &str,
    num_train: usize,
    num_val: usize,
    epochs: usize,
    lr: f64,
    cache: &Path,
) -> Result<()> {
    use mergevq::eval::probe::{extract, linear_probe, Features};
    let device = mergevq::device();
    let cfg = TokenizerConfig::load(config)?;
    let tok = Tokenizer::open(&cfg, weights, false, &device)?;
    let (train_src, val_src) = (open_data(train)?, open_data(val)?);
    let classes = train_src.classes();
    let key = format!("{}|{}|{train}|{val}|{num_train}|{num_val}", weights.display(), config.display());
    let cached = mergevq::io::weights::read_safetensors(cache).ok().filter(|m| {
        m.get("key").map(|k| k.data.iter().map(|&c| c as u8 as char).collect::<String>()) == Some(key.clone())
    });
    let (tr, va) = match cached {
        Some(m) => {
            println!("using cached features {}", cache.display());
            let rows = |k: &str| -> Vec<Vec<f32>> {
                let t = &m[k];
                t.data.chunks(t.shape[1]).map(|c| c.to_vec()).collect()
            };
            let labels = |k: &str| -> Vec<usize> { m[k].data.iter().map(|&v| v as usize).collect() };
            (
                Features { cls: rows("train_cls"), pooled: rows("train_pooled"), labels: labels("train_labels") },
                Features { cls: rows("val_cls"), pooled: rows("val_pooled"), labels: labels("val_labels") },
            )
        }
        None => {
            let n = num_train.min(train_src.len()) + num_val.min(val_src.len());
            let pb = progress(n as u64, "features");
            let tr = extract(&tok, train_src, num_train, 64, &|k| pb.inc(k))?;
            let va = extract(&tok, val_src, num_val, 64, &|k| pb.inc(k))?;
            pb.finish_and_clear();
            let mut m = std::collections::BTreeMap::new();
            let put = |m: &mut std::collections::BTreeMap<String, mergevq::io::weights::HostTensor>,
                       k: &str,
                       rows: &[Vec<f32>]| {
                m.insert(
                    k.to_string(),
                    mergevq::io::weights::HostTensor { shape: vec![rows.len(), rows[0].len()], data: rows.concat() },
                );
            };
            put(&mut m, "train_cls", &tr.cls);
            put(&mut m, "train_pooled", &tr.pooled);
            put(&mut m, "val_cls", &va.cls);
            put(&mut m, "val_pooled", &va.pooled);
            m.insert(
                "train_labels".into(),
                mergevq::io::weights::HostTensor {
                    shape: vec![tr.labels.len()],
                    data: tr.labels.iter().map(|&v| v as f32).collect(),
                },
            );
            m.insert(
                "val_labels".into(),
                mergevq::io::weights::HostTensor {
                    shape: vec![va.labels.len()],
                    data: va.labels.iter().map(|&v| v as f32).collect(),
                },
            );
            m.insert(
                "key".into(),
                mergevq::io::weights::HostTensor {
                    shape: vec![key.len()],
                    data: key.bytes().map(|b| b as f32).collect(),
                },
            );
            mergevq::io::weights::write_safetensors(cache, &m)?;
            (tr, va)
        }
    };
    let a_cls = linear_probe(&tr.cls, &tr.labels, &va.cls, &va.labels, classes, epochs, lr, 0)?;
    let a_pool = linear_probe(&tr.pooled, &tr.labels, &va.pooled, &va.labels, classes, epochs, lr, 0)?;
    println!(
        "linear probe top-1: [CLS] {:.2}%  mean-pooled merged tokens {:.2}%  ({} train, {} val, {classes} classes)",
        100.0 * a_cls,
        100.0 * a_pool,
        tr.labels.len(),
        va.labels.len()
    );
    Ok(())
}
