//! `init`, `reconstruct`, `encode`, `decode`: a tokenizer's weights, and images through it.
use super::large::LargeArgs;
use crate::progress;
use anyhow::{bail, Result};
use burn::prelude::Device;
use mergevq::eval::metrics::psnr;
use mergevq::io::image::{load_image, merge_map, save_image, tensor_to_rgb};
use mergevq::io::marker::Format;
use mergevq::io::output::Outputs;
use mergevq::io::safetensors::WEIGHTS;
use mergevq::io::tokens::TokensFile;
use mergevq::memory::Use;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::tome::KeepPlan;
use mergevq::tokenizer::Tokenizer;
use mergevq::validate::{int_in, MAX_SIZE};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A trained tokenizer: its weights and config (the evaluation and token-extraction commands).
#[derive(clap::Args)]
pub struct TrainedArgs {
    /// Tokenizer weights (safetensors).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Tokenizer config: TOML, or an official YAML.
    #[arg(long)]
    pub config: PathBuf,
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
    #[command(flatten)]
    pub large: LargeArgs,
}

impl ModelArgs {
    /// Where a command with this model and the inputs `more` may write.
    pub fn outputs<P: AsRef<Path>>(&self, more: impl IntoIterator<Item = P>) -> Outputs {
        let mut out = Outputs::new([&self.config, &self.weights]);
        more.into_iter().for_each(|p| out.add(p.as_ref()));
        out
    }

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
        let out = Outputs::new([&self.config]);
        out.check(&self.output, Format::Safetensors(WEIGHTS))?;
        let cfg = TokenizerConfig::load(&self.config)?;
        self.large.tokenizer(&cfg, 1, Use::Inference)?;
        let tok = Tokenizer::init(&cfg, self.seed, &mergevq::device())?;
        tok.save(&self.output, &out)?;
        println!("wrote {} (seed {})", self.output.display(), self.seed);
        Ok(())
    }
}

/// A tokenizer at a kept count K, the images to run it on and where the result goes.
#[derive(clap::Args)]
pub struct ImagesArgs {
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

/// `mergevq reconstruct`.
#[derive(clap::Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    job: ImagesArgs,
}

impl ReconstructArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let tok = self.job.model.load(&device)?;
        let plan = self.job.keep.plan(&tok)?;
        let res = tok.cfg.ddconfig.resolution;
        let side = tok.cfg.embed_res();
        let out = self.job.model.outputs(&self.job.images);
        out.dir(&self.job.output)?;
        let names = output_names(&self.job.images, &self.job.output)?;
        for (rec, merge) in &names {
            out.check(rec, Format::Image)?;
            out.check(merge, Format::Image)?;
        }
        let pb = progress::bar(self.job.images.len() as u64, "reconstruct");
        for (path, (rec_path, merge_path)) in self.job.images.iter().zip(&names) {
            let (x, note) = load_image(path, res, tok.cfg.preprocess, &device)?;
            if let Some(n) = note {
                pb.suspend(|| eprintln!("note: {n}"));
            }
            let input = tensor_to_rgb(x.clone().reshape([3, res, res]));
            let t = tok.encode(x, &plan)?;
            let rec = tensor_to_rgb(tok.decode(t.quantized, &t.group).reshape([3, res, res]));
            save_image(&rec, rec_path, &out)?;
            save_image(&merge_map(&input, &t.group[0], side), merge_path, &out)?;
            let line = format!("{}: L={} K={} PSNR={:.2} dB", path.display(), side * side, t.k, psnr(&input, &rec));
            pb.suspend(|| println!("{line}"));
            pb.inc(1);
        }
        pb.finish_and_clear();
        println!("wrote reconstructions and merge maps to {}", self.job.output.display());
        Ok(())
    }
}

/// The reconstruction and merge-map files of each image (`<stem>_rec.png`,
/// `<stem>_merge.png` in `dir`); refuses two images with one stem, which would write the same
/// files.
fn output_names(images: &[PathBuf], dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut seen: HashMap<String, &Path> = HashMap::new();
    let mut names = Vec::new();
    for p in images {
        let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "image".into());
        if let Some(first) = seen.insert(stem.clone(), p) {
            bail!(
                "images {} and {} would both write {}: give images with distinct file names",
                first.display(),
                p.display(),
                dir.join(format!("{stem}_rec.png")).display()
            );
        }
        names.push((dir.join(format!("{stem}_rec.png")), dir.join(format!("{stem}_merge.png"))));
    }
    Ok(names)
}

/// `mergevq encode`.
#[derive(clap::Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    job: ImagesArgs,
}

impl EncodeArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let tok = self.job.model.load(&device)?;
        let plan = self.job.keep.plan(&tok)?;
        let out = self.job.model.outputs(&self.job.images);
        out.check(&self.job.output, Format::Safetensors(TokensFile::MARKER))?;
        let res = tok.cfg.ddconfig.resolution;
        let mut file = TokensFile { bits: tok.cfg.embed_dim, resolution: res, indices: vec![], group: vec![] };
        let pb = progress::bar(self.job.images.len() as u64, "encode");
        for path in &self.job.images {
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
        file.save(&self.job.output, &out)?;
        println!(
            "wrote {} images × K={} tokens (L={}) to {}",
            file.indices.len(),
            file.indices[0].len(),
            file.group[0].len(),
            self.job.output.display()
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
        let out = self.model.outputs([&self.tokens]);
        out.dir(&self.output)?;
        let res = tok.cfg.ddconfig.resolution;
        for (i, (idx, grp)) in file.indices.iter().zip(&file.group).enumerate() {
            let img = tok.decode_indices(idx, std::slice::from_ref(grp), &device)?;
            save_image(&tensor_to_rgb(img.reshape([3, res, res])), &self.output.join(format!("{i}.png")), &out)?;
        }
        println!("wrote {} images to {}", file.indices.len(), self.output.display());
        Ok(())
    }
}
