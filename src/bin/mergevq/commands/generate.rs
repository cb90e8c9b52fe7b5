//! `generate`: class-conditional sampling with the AR model (plain, or MergeAR with cache
//! eviction), decoded by the tokenizer into one grid image.
use super::large::LargeArgs;
use crate::progress;
use anyhow::{bail, Result};
use mergevq::ar::batched::{generate_batch, image_rng, Request};
use mergevq::ar::generator::{Generator, GeneratorConfig};
use mergevq::ar::sample::SampleOpts;
use mergevq::io::image::{save_image, tensor_to_rgb};
use mergevq::io::marker::Format;
use mergevq::io::output::Outputs;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use mergevq::validate::{float_in, int_in, FloatRange, MAX_SIZE};
use std::path::PathBuf;
use std::time::Instant;

/// `mergevq generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// AR weights (gpt_ema.safetensors from train-ar, or the bundled assets/demo/gpt.safetensors).
    #[arg(long)]
    ar: PathBuf,
    /// The AR config: a train-ar config (its [gpt] section; a MergeAR one takes its kept counts
    /// from its token set) or a generator config with `candidates` (assets/demo/gpt.toml).
    #[arg(long)]
    ar_config: PathBuf,
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 0, value_parser = int_in(0, MAX_SIZE))]
    class: usize,
    /// Images to sample (one grid).
    #[arg(long, default_value_t = 16, value_parser = int_in(1, MAX_IMAGES))]
    num: usize,
    /// Images decoded together per forward (two sequences each with --cfg ≠ 1); the tokens do
    /// not depend on it. Default: all of --num, at most 16.
    #[arg(long, value_parser = int_in(1, MAX_IMAGES))]
    batch: Option<usize>,
    /// Classifier-free guidance scale (1: off).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, value_parser = float_in(FloatRange::FINITE))]
    cfg: f64,
    /// Keep the k most likely codes (0: all).
    #[arg(long, default_value_t = 0, value_parser = int_in(0, MAX_SIZE))]
    top_k: usize,
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, value_parser = float_in(FloatRange::PROBABILITY))]
    top_p: f64,
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, value_parser = float_in(FloatRange::POSITIVE))]
    temperature: f64,
    /// MergeAR decoding with cache eviction (MergeAR models).
    #[arg(long)]
    mergear: bool,
    /// The MergeAR cache window (default: the model's).
    #[arg(long, value_parser = int_in(0, MAX_SIZE))]
    window: Option<usize>,
    /// Merge instruction: the kept count K (MergeAR models; default the tokenizer's K).
    #[arg(long, value_parser = int_in(1, MAX_SIZE))]
    keep: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(short, long)]
    output: PathBuf,
    /// Also write every sample as its own PNG into this folder (CLASS_INDEX.png, index from 0), e.g.
    /// for `eval-gen --samples`.
    #[arg(long)]
    each: Option<PathBuf>,
    #[command(flatten)]
    large: LargeArgs,
}

/// The most images one grid holds.
const MAX_IMAGES: usize = 4096;

/// Decoding throughput over a run.
#[derive(Default)]
struct Speed {
    tokens: usize,
    secs: f64,
    /// Largest KV cache (entries) of any sample.
    peak: usize,
    /// Most bytes a batch's KV caches allocated.
    peak_bytes: usize,
}

impl GenerateArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        self.opts().validate()?;
        if self.window.is_some() && !self.mergear {
            bail!("--window sets the cache window of MergeAR decoding: add --mergear");
        }
        let out = Outputs::new([&self.ar, &self.ar_config, &self.tokenizer, &self.config]);
        out.check(&self.output, Format::Image)?;
        if let Some(dir) = &self.each {
            out.dir(dir)?;
        }
        let gcfg = GeneratorConfig::load(&self.ar_config)?;
        let cfg = TokenizerConfig::load(&self.config)?;
        // Classifier-free guidance runs the conditional and the unconditional sequence.
        self.large.generator(&gcfg.gpt, &cfg, 2 * self.batch())?;
        let g = Generator::with_config(gcfg, &self.ar_config, &self.ar, &device)?;
        let tok = Tokenizer::open(&cfg, &self.tokenizer, false, &device)?;
        let gc = &g.cfg.gpt;
        if cfg.embed_dim != gc.bits() || tok.full_len() != gc.block_size {
            bail!(
                "the AR model {} generates {}-bit codes on L={} tokens, the tokenizer {} has {} bits and L={}",
                self.ar.display(),
                gc.bits(),
                gc.block_size,
                self.tokenizer.display(),
                cfg.embed_dim,
                tok.full_len()
            );
        }
        let merge = self.merge_index(&g.cfg, &tok)?;
        let (grid, speed) = self.sample_grid(&g, &tok, merge, &out)?;
        save_image(&grid, &self.output, &out)?;
        println!(
            "{} images of class {} in batches of {}: {:.1} tokens/s, peak KV-cache entries {} (of {} positions), peak KV memory {:.2} MiB{}; wrote {}",
            self.num,
            self.class,
            self.batch(),
            speed.tokens as f64 / speed.secs,
            speed.peak,
            gc.block_size + gc.prefix(),
            speed.peak_bytes as f64 / (1024.0 * 1024.0),
            self.window(&g.cfg).map(|w| format!(", MergeAR window {w}")).unwrap_or_default(),
            self.output.display()
        );
        Ok(())
    }

    /// The sampling options of the flags.
    fn opts(&self) -> SampleOpts {
        SampleOpts { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p, cfg: self.cfg }
    }

    /// Images per batch.
    fn batch(&self) -> usize {
        self.batch.unwrap_or(16).min(self.num)
    }

    /// The MergeAR cache window (the flag's, else the model's), when decoding with eviction.
    fn window(&self, g: &GeneratorConfig) -> Option<usize> {
        self.mergear.then(|| self.window.unwrap_or(g.window))
    }

    /// The merge instruction for MergeAR models: the index of K among the model's kept-count
    /// candidates; `None` for plain models, which take neither --mergear nor --keep.
    fn merge_index(&self, g: &GeneratorConfig, tok: &Tokenizer) -> Result<Option<usize>> {
        if g.gpt.merge_tokens == 0 && (self.mergear || self.keep.is_some()) {
            bail!(
                "--mergear and --keep need a MergeAR model; {} is plain AR (gpt.merge_tokens = 0)",
                self.ar_config.display()
            );
        }
        let k = match self.keep {
            Some(k) => k,
            None => tok.plan.kept()? as usize,
        };
        g.merge_index(k)
    }

    /// Samples `num` images, `batch` at a time (image i draws from its own stream of the seed),
    /// into a grid of ⌈√num⌉ columns, row by row (and one file each with --each).
    fn sample_grid(
        &self,
        g: &Generator,
        tok: &Tokenizer,
        merge: Option<usize>,
        out: &Outputs,
    ) -> Result<(image::RgbImage, Speed)> {
        let opts = self.opts();
        let res = tok.cfg.ddconfig.resolution as u32;
        let cols = (self.num as f64).sqrt().ceil() as u32;
        let rows = (self.num as u32).div_ceil(cols);
        let mut grid = image::RgbImage::new(cols * res, rows * res);
        let mut speed = Speed::default();
        let l = g.cfg.gpt.block_size;
        let keep = match merge {
            Some(m) => g.cfg.candidates[m],
            None => l,
        };
        let pb = progress::bar((self.num * l) as u64, "generate (tokens)");
        let t0 = Instant::now();
        for first in (0..self.num).step_by(self.batch()) {
            let n = self.batch().min(self.num - first);
            let reqs = vec![Request { class: self.class, merge, keep, forced: None }; n];
            let mut rngs: Vec<_> = (first..first + n).map(|i| image_rng(self.seed, i as u64)).collect();
            let tb = Instant::now();
            let b = generate_batch(&g.gpt, &reqs, self.window(&g.cfg), &opts, &mut rngs, |k| {
                pb.inc(k as u64);
                pb.set_message(format!("generate {:.0} tokens/s", pb.position() as f64 / t0.elapsed().as_secs_f64()));
            })?;
            speed.secs += tb.elapsed().as_secs_f64();
            speed.peak_bytes = speed.peak_bytes.max(b.peak_kv_bytes);
            for (i, s) in b.images.iter().enumerate() {
                speed.tokens += s.codes.len();
                speed.peak = speed.peak.max(s.peak_kv);
                let img = tensor_to_rgb(tok.decode_codes(&s.codes)?.reshape([3, res as usize, res as usize]));
                if let Some(dir) = &self.each {
                    save_image(&img, &dir.join(format!("{}_{:05}.png", self.class, first + i)), out)?;
                }
                let at = (first + i) as u32;
                image::imageops::overlay(&mut grid, &img, ((at % cols) * res) as i64, ((at / cols) * res) as i64);
            }
        }
        pb.finish_and_clear();
        Ok((grid, speed))
    }
}
