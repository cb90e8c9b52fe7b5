//! `generate`: class-conditional sampling with the AR model (plain, or MergeAR with cache
//! eviction), decoded by the tokenizer into one grid image.
use crate::progress;
use anyhow::{anyhow, bail, Context, Result};
use burn::prelude::Device;
use mergevq::ar::gpt::Gpt;
use mergevq::ar::sample::{generate, SampleOpts};
use mergevq::io::image::{save_png, tensor_to_rgb};
use mergevq::io::tokens::TokenSet;
use mergevq::io::weights::Weights;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use mergevq::train::ar::ArConfig;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

/// `mergevq generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
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
}

/// Decoding throughput over a run.
#[derive(Default)]
struct Speed {
    tokens: usize,
    secs: f64,
    /// Largest KV cache (entries) of any sample.
    peak: usize,
}

impl GenerateArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let (acfg, gpt) = self.load_gpt(&device)?;
        let cfg = TokenizerConfig::load(&self.config)?;
        let tok = Tokenizer::open(&cfg, &self.tokenizer, false, &device)?;
        if cfg.embed_dim != acfg.gpt.bits() || tok.full_len() != acfg.gpt.block_size {
            bail!(
                "the AR model generates {}-bit codes on L={} tokens, the tokenizer has {} bits and L={}",
                acfg.gpt.bits(),
                acfg.gpt.block_size,
                cfg.embed_dim,
                tok.full_len()
            );
        }
        let merge = self.merge_index(&acfg, &tok)?;
        let (grid, speed) = self.sample_grid(&gpt, &tok, merge)?;
        save_png(&grid, &self.output)?;
        println!(
            "{} images of class {}: {:.1} tokens/s, peak KV-cache entries {} (of {} positions){}; wrote {}",
            self.num,
            self.class,
            speed.tokens as f64 / speed.secs,
            speed.peak,
            acfg.gpt.block_size + acfg.gpt.prefix(),
            self.window().map(|w| format!(", MergeAR window {w}")).unwrap_or_default(),
            self.output.display()
        );
        Ok(())
    }

    /// The MergeAR cache window, when decoding with eviction.
    fn window(&self) -> Option<usize> {
        self.mergear.then_some(self.window)
    }

    fn load_gpt(&self, device: &Device) -> Result<(ArConfig, Gpt)> {
        let acfg = ArConfig::load(&self.ar_config)?;
        let w = Weights::open(&self.ar, false, device)?;
        let gpt = Gpt::load(&w, "", &acfg.gpt)
            .with_context(|| format!("AR weights {} do not fit {}", self.ar.display(), self.ar_config.display()))?;
        w.finish(&[])?;
        Ok((acfg, gpt))
    }

    /// The merge instruction for MergeAR models: the index of K among the kept-count
    /// candidates of the token set the model was trained on; `None` for plain models.
    fn merge_index(&self, acfg: &ArConfig, tok: &Tokenizer) -> Result<Option<usize>> {
        if acfg.gpt.merge_tokens == 0 {
            if self.mergear {
                bail!("--mergear needs a MergeAR model (gpt.merge_tokens > 0)");
            }
            return Ok(None);
        }
        let cands = TokenSet::load(&acfg.tokens)
            .with_context(|| format!("the token set of {} (its kept-count candidates)", self.ar_config.display()))?
            .candidates;
        let k = self.keep.unwrap_or(tok.plan.kept()? as usize);
        let index = cands.iter().position(|&c| c == k);
        Ok(Some(index.ok_or_else(|| anyhow!("K={k} is not among the model's kept-count candidates {cands:?}"))?))
    }

    /// Samples `num` images into a grid of ⌈√num⌉ columns, row by row.
    fn sample_grid(&self, gpt: &Gpt, tok: &Tokenizer, merge: Option<usize>) -> Result<(image::RgbImage, Speed)> {
        let opts = SampleOpts { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p, cfg: self.cfg };
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let res = tok.cfg.ddconfig.resolution as u32;
        let cols = (self.num as f64).sqrt().ceil() as u32;
        let rows = (self.num as u32).div_ceil(cols);
        let mut grid = image::RgbImage::new(cols * res, rows * res);
        let mut speed = Speed::default();
        let pb = progress::bar(self.num as u64, "generate");
        for i in 0..self.num as u32 {
            let t0 = Instant::now();
            let g = generate(gpt, self.class, merge, self.window(), &opts, &mut rng, None)?;
            speed.secs += t0.elapsed().as_secs_f64();
            speed.tokens += g.codes.len();
            speed.peak = speed.peak.max(g.peak_kv);
            let img = tensor_to_rgb(tok.decode_codes(&g.codes)?.reshape([3, res as usize, res as usize]));
            image::imageops::overlay(&mut grid, &img, ((i % cols) * res) as i64, ((i / cols) * res) as i64);
            pb.inc(1);
        }
        pb.finish_and_clear();
        Ok((grid, speed))
    }
}
