//! `init`, `reconstruct`, `encode`, `decode`: a tokenizer's weights, and images through it.
use crate::progress;
use anyhow::Result;
use burn::prelude::Device;
use mergevq::io::image::{load_image, merge_map, psnr, save_png, tensor_to_rgb};
use mergevq::io::tokens::TokensFile;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::tome::KeepPlan;
use mergevq::tokenizer::Tokenizer;
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
    /// Kept-token count K (a perfect square ≤ L); default: the config's.
    #[arg(long)]
    pub keep: Option<usize>,
}

impl ModelArgs {
    /// The tokenizer and the merge schedule of `--keep` (default: the config's K).
    pub fn load(&self, device: &Device) -> Result<(Tokenizer, KeepPlan)> {
        let cfg = TokenizerConfig::load(&self.config)?;
        let tok = Tokenizer::open(&cfg, &self.weights, self.ema, device)?;
        let plan = match self.keep {
            Some(k) => tok.keep(k)?,
            None => tok.plan.clone(),
        };
        Ok((tok, plan))
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
}

impl InitArgs {
    pub fn run(self) -> Result<()> {
        let cfg = TokenizerConfig::load(&self.config)?;
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
    /// Images (PNG/JPEG); other sizes are padded or resized to the config's resolution (its `preprocess`).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
}

impl ReconstructArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let (tok, plan) = self.model.load(&device)?;
        let res = tok.cfg.ddconfig.resolution;
        let side = tok.cfg.embed_res();
        std::fs::create_dir_all(&self.output)?;
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
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
}

impl EncodeArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let (tok, plan) = self.model.load(&device)?;
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
    tokens: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
}

impl DecodeArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let (tok, _) = self.model.load(&device)?;
        let file = TokensFile::load(&self.tokens)?;
        file.check_fits(&tok, &self.tokens)?;
        std::fs::create_dir_all(&self.output)?;
        let res = tok.cfg.ddconfig.resolution;
        for (i, (idx, grp)) in file.indices.iter().zip(&file.group).enumerate() {
            let img = tok.decode_indices(idx, std::slice::from_ref(grp), &device)?;
            save_png(&tensor_to_rgb(img.reshape([3, res, res])), &self.output.join(format!("{i}.png")))?;
        }
        println!("wrote {} images to {}", file.indices.len(), self.output.display());
        Ok(())
    }
}
