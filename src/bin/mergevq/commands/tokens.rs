//! `extract-tokens`: a data set tokenized once for AR training: into one token set file
//! (`TokenSet::extract`) or, for a data set of any size, into a folder of shards that a killed
//! run resumes (`extract_shards`).
use super::large::LargeArgs;
use super::tokenize::TrainedArgs;
use crate::progress;
use anyhow::Result;
use mergevq::io::data;
use mergevq::io::marker::Format;
use mergevq::io::output::Outputs;
use mergevq::io::tokens::{extract_shards, Extraction, TokenSet};
use mergevq::memory::Use;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use mergevq::validate::{int_in, MAX_SIZE};
use std::path::{Path, PathBuf};

/// `mergevq extract-tokens`.
#[derive(clap::Args)]
pub struct ExtractTokensArgs {
    /// Tokenizer weights.
    #[command(flatten)]
    model: TrainedArgs,
    /// An image folder (class sub-folders), or fashion-mnist[:train|test].
    #[arg(long)]
    data: String,
    /// A token set file (`*.safetensors`), or a folder of shards (any other path): written
    /// shard by shard, resumed where a killed run stopped; `train-ar` reads either.
    #[arg(short, long)]
    output: PathBuf,
    /// Images per shard (folder output).
    #[arg(long, default_value_t = 10_000, value_parser = int_in(1, MAX_SIZE))]
    shard_size: usize,
    /// Images per encoder call.
    #[arg(long, default_value_t = 32, value_parser = int_in(1, 4096))]
    batch: usize,
    /// Fix K for every image (default: drawn from the tokenizer's candidate list).
    #[arg(long, value_parser = int_in(1, MAX_SIZE))]
    keep: Option<usize>,
    /// Only the first N images.
    #[arg(long, value_parser = int_in(1, MAX_SIZE))]
    limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    large: LargeArgs,
}

impl ExtractTokensArgs {
    pub fn run(self) -> Result<()> {
        let out = Outputs::new([&self.model.tokenizer, &self.model.config, Path::new(&self.data)]);
        if !self.single_file() {
            return self.run_shards(&out);
        }
        out.check(&self.output, Format::Safetensors(TokenSet::MARKER))?;
        let cfg = TokenizerConfig::load(&self.model.config)?;
        self.large.tokenizer(&cfg, 1, Use::Inference)?;
        let tok = Tokenizer::open(&cfg, &self.model.tokenizer, false, &mergevq::device())?;
        let source = data::open(&self.data)?;
        let n = self.limit.unwrap_or(usize::MAX).min(source.len());
        let pb = progress::bar(n as u64, "extract-tokens");
        let set = TokenSet::extract(&tok, source, n, self.keep, self.seed, &|k| pb.inc(k))?;
        pb.finish_and_clear();
        set.save(&self.output, &out)?;
        println!(
            "wrote {} images × L={} codes (K ∈ {:?}, {} classes) to {}",
            set.len(),
            tok.full_len(),
            set.candidates,
            set.classes,
            self.output.display()
        );
        Ok(())
    }

    /// Whether the output is one token set file (else a folder of shards).
    fn single_file(&self) -> bool {
        self.output.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    }

    /// The folder output: shards of `--shard-size` images, resumed after a kill.
    fn run_shards(&self, out: &Outputs) -> Result<()> {
        let cfg = TokenizerConfig::load(&self.model.config)?;
        self.large.tokenizer(&cfg, self.batch, Use::Inference)?;
        let tok = Tokenizer::open(&cfg, &self.model.tokenizer, false, &mergevq::device())?;
        let source = data::open(&self.data)?;
        let n = self.limit.unwrap_or(usize::MAX).min(source.len());
        let job = Extraction { keep: self.keep, seed: self.seed, batch: self.batch };
        let pb = progress::bar(n as u64, "extract-tokens");
        let (dir, size) = (&self.output, self.shard_size);
        let r = extract_shards(&tok, source, &self.data, n, &job, size, dir, out, &|k| pb.inc(k), &|| Ok(()))?;
        pb.finish_and_clear();
        println!(
            "wrote {} images × L={} codes (K ∈ {:?}, {} classes) in {} shards ({} from an earlier run) to {}",
            r.images,
            tok.full_len(),
            r.candidates,
            r.classes,
            r.shards,
            r.reused,
            self.output.display()
        );
        Ok(())
    }
}
