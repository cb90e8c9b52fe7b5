//! `init`, `reconstruct`, `encode`, `decode`: a tokenizer's weights, and images through it.
use super::large::LargeArgs;
use crate::progress;
use anyhow::{bail, Result};
use burn::prelude::Device;
use mergevq::io::image::{load_image, merge_map, psnr, save_png, tensor_to_rgb};
use mergevq::io::tokens::TokensFile;
use mergevq::memory::Use;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::tome::KeepPlan;
use mergevq::tokenizer::Tokenizer;
use mergevq::validate::{int_in, MAX_SIZE};
use std::path::{Path, PathBuf};

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
    #[command(flatten)]
    pub large: LargeArgs,
}

impl ModelArgs {
    /// The tokenizer.
    pub fn load(&self, device: &Device) -> Result<Tokenizer> {
        let cfg = TokenizerConfig::load(&self.config)?;
        self.large.tokenizer(&cfg, 1, Use::Inference)?;
        Tokenizer::open(&cfg, &self.weights, self.ema, device)
    }
}

/// The kept count of `encode` and `reconstruct` (`decode` takes K from the tokens file).
#[derive(clap::Args)]
pub struct KeepArg {
    /// Kept-token count K (a perfect square ≤ L); default: the config's.
    #[arg(long, value_parser = int_in(1, MAX_SIZE))]
    pub keep: Option<usize>,
}

impl KeepArg {
    /// The merge schedule of `--keep` (default: the config's K).
    pub fn plan(&self, tok: &Tokenizer) -> Result<KeepPlan> {
        match self.keep {
            Some(k) => tok.keep(k),
            None => Ok(tok.plan.clone()),
        }
    }
}

/// `mergevq init`.
#[derive(clap::Args)]
pub struct InitArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    large: LargeArgs,
}

impl InitArgs {
    pub fn run(self) -> Result<()> {
        let cfg = TokenizerConfig::load(&self.config)?;
        self.large.tokenizer(&cfg, 1, Use::Inference)?;
        let tok = Tokenizer::init(&cfg, self.seed, &mergevq::device())?;
        tok.save(&self.output)?;
        println!("wrote {} (seed {})", self.output.display(), self.seed);
        Ok(())
    }
}

/// `mergevq reconstruct`.
#[derive(clap::Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    keep: KeepArg,
    /// Images (PNG/JPEG); other sizes are padded or resized to the config's resolution (its `preprocess`).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
}

impl ReconstructArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let tok = self.model.load(&device)?;
        let plan = self.keep.plan(&tok)?;
        let res = tok.cfg.ddconfig.resolution;
        let side = tok.cfg.embed_res();
        mergevq::io::fs::create_output_dir(&self.output)?;
        let pb = progress::bar(self.images.len() as u64, "reconstruct");
        for path in &self.images {
            let (x, note) = load_image(path, res, tok.cfg.preprocess, &device)?;
            if let Some(n) = note {
                pb.suspend(|| eprintln!("note: {n}"));
            }
            let input = tensor_to_rgb(x.clone().reshape([3, res, res]));
            let t = tok.encode(x, &plan)?;
            let rec = tensor_to_rgb(tok.decode(t.quantized, &t.group).reshape([3, res, res]));
            let name = stem(path);
            save_png(&rec, &self.output.join(format!("{name}_rec.png")))?;
            save_png(&merge_map(&input, &t.group[0], side), &self.output.join(format!("{name}_merge.png")))?;
            let line = format!("{}: L={} K={} PSNR={:.2} dB", path.display(), side * side, t.k, psnr(&input, &rec));
            pb.suspend(|| println!("{line}"));
            pb.inc(1);
        }
        pb.finish_and_clear();
        println!("wrote reconstructions and merge maps to {}", self.output.display());
        Ok(())
    }
}

/// The file name without its extension, for output names.
fn stem(p: &Path) -> String {
    p.file_stem().and_then(|s| s.to_str()).unwrap_or("image").to_string()
}

/// `mergevq encode`.
#[derive(clap::Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    keep: KeepArg,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
}

impl EncodeArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let tok = self.model.load(&device)?;
        let plan = self.keep.plan(&tok)?;
        let res = tok.cfg.ddconfig.resolution;
        let mut file = TokensFile { bits: tok.cfg.embed_dim, resolution: res, indices: vec![], group: vec![] };
        let pb = progress::bar(self.images.len() as u64, "encode");
        for path in &self.images {
            let (x, note) = load_image(path, res, tok.cfg.preprocess, &device)?;
            if let Some(n) = note {
                pb.suspend(|| eprintln!("note: {n}"));
            }
            let t = tok.encode(x, &plan)?;
            file.indices.push(t.indices);
            file.group.extend(t.group);
            pb.inc(1);
        }
        pb.finish_and_clear();
        file.save(&self.output)?;
        println!(
            "wrote {} images × K={} tokens (L={}) to {}",
            file.indices.len(),
            file.indices[0].len(),
            file.group[0].len(),
            self.output.display()
        );
        Ok(())
    }
}

/// `mergevq decode`.
#[derive(clap::Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A tokens file from `encode` (it holds each image's K and merge map).
    tokens: PathBuf,
    /// Refused: K comes from the tokens file (kept so the mistake gets a clear message).
    #[arg(long, hide = true)]
    keep: Option<String>,
    #[arg(short, long)]
    output: PathBuf,
}

impl DecodeArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        if self.keep.is_some() {
            bail!(
                "decode takes K from the tokens file {}; --keep applies to encode and reconstruct",
                self.tokens.display()
            );
        }
        let tok = self.model.load(&device)?;
        let file = TokensFile::load(&self.tokens)?;
        file.check_fits(&tok, &self.tokens)?;
        mergevq::io::fs::create_output_dir(&self.output)?;
        let res = tok.cfg.ddconfig.resolution;
        for (i, (idx, grp)) in file.indices.iter().zip(&file.group).enumerate() {
            let img = tok.decode_indices(idx, std::slice::from_ref(grp), &device)?;
            save_png(&tensor_to_rgb(img.reshape([3, res, res])), &self.output.join(format!("{i}.png")))?;
        }
        println!("wrote {} images to {}", file.indices.len(), self.output.display());
        Ok(())
    }
}
