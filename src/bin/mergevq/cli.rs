//! The `mergevq` command line: the subcommands and their dispatch. Each subcommand's flags and
//! work live in `commands/`.
use crate::commands::bench::BenchArgs;
use crate::commands::demo::DemoArgs;
use crate::commands::eval::{EvalGenArgs, EvalReconArgs, ProbeArgs};
use crate::commands::generate::GenerateArgs;
use crate::commands::parity::ParityArgs;
use crate::commands::tokenize::{DecodeArgs, EncodeArgs, InitArgs, ReconstructArgs};
use crate::commands::tokens::ExtractTokensArgs;
use crate::commands::train::{TrainArArgs, TrainTokenizerArgs};
use anyhow::Result;
use clap::{Arg, CommandFactory, FromArgMatches, Subcommand};

/// MergeVQ: visual tokenization with token merging and lookup-free quantization.
#[derive(clap::Parser)]
#[command(name = "mergevq", version, about)]
pub struct Args {
    /// Without a subcommand, runs `demo`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where to compute: cpu, cuda, cuda:N or vulkan (GPU devices in builds with their feature,
    /// scripts/build-gpu.sh).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
    /// Float precision of every tensor: f32; tf32 (GPUs: tensor-core matmuls and convolutions);
    /// bf16.
    #[arg(long, global = true, default_value = "f32")]
    pub precision: mergevq::device::Precision,
}

impl Args {
    /// The command line, parsed; on a usage error clap prints it (naming the flag) and exits 2.
    /// A value may start with `-` when it is a number (`--cfg -3`), so negative numbers reach
    /// the range checks instead of reading as unknown flags (real-valued options also take
    /// `-inf`, to refuse it by name).
    pub fn parse() -> Self {
        let matches = negative_numbers(Self::command()).get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    pub fn run(self) -> Result<()> {
        mergevq::device::set_default(mergevq::device::open(&self.device, self.precision)?);
        self.command.unwrap_or_else(|| Command::Demo(DemoArgs::default())).run()
    }
}

/// Lets every option that takes a value, in every subcommand, take a negative number.
fn negative_numbers(cmd: clap::Command) -> clap::Command {
    let allow = |a: Arg| if a.get_action().takes_values() { a.allow_negative_numbers(true) } else { a };
    cmd.mut_args(allow).mut_subcommands(negative_numbers)
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the bundled Fashion-MNIST tokenizer and MergeAR model: reconstructions at several K,
    /// MergeAR vs plain AR samples, and a report.html.
    Demo(DemoArgs),
    /// Run golden test cases (folders with case.json + safetensors) and compare every output.
    Parity(ParityArgs),
    /// Write randomly initialised tokenizer weights for a config.
    Init(InitArgs),
    /// Encode and decode images; writes the reconstruction and the merge map, prints PSNR.
    Reconstruct(ReconstructArgs),
    /// Tokenize images into a tokens file (indices, K, group map).
    Encode(EncodeArgs),
    /// Decode a tokens file into PNGs (<output>/<n>.png).
    Decode(DecodeArgs),
    /// Train a tokenizer (losses, EMA, checkpoints in run.out_dir; --resume continues).
    TrainTokenizer(TrainTokenizerArgs),
    /// Tokenize a data set once for AR training: full-raster codes, group maps, K, labels.
    ExtractTokens(ExtractTokensArgs),
    /// Train the AR generator (plain or MergeAR) on an extracted token set.
    TrainAr(TrainArArgs),
    /// Generate class-conditional images with the AR model and decode them with the tokenizer.
    Generate(GenerateArgs),
    /// Reconstruction metrics over kept counts: PSNR, SSIM, LPIPS, rFID, codebook usage;
    /// writes report.json, rate–distortion plots and a reconstruction grid to the output folder.
    EvalRecon(EvalReconArgs),
    /// Generation metrics: gFID and KID of a folder of samples against a reference folder or
    /// saved statistics.
    EvalGen(EvalGenArgs),
    /// Linear probing of the frozen encoder's [CLS] features and mean-pooled merged tokens.
    Probe(ProbeArgs),
    /// Benchmarks (medians after a warm-up).
    Bench(BenchArgs),
}

impl Command {
    pub fn run(self) -> Result<()> {
        match self {
            Self::Demo(a) => a.run(),
            Self::Parity(a) => a.run(),
            Self::Init(a) => a.run(),
            Self::Reconstruct(a) => a.run(),
            Self::Encode(a) => a.run(),
            Self::Decode(a) => a.run(),
            Self::TrainTokenizer(a) => a.run(),
            Self::ExtractTokens(a) => a.run(),
            Self::TrainAr(a) => a.run(),
            Self::Generate(a) => a.run(),
            Self::EvalRecon(a) => a.run(),
            Self::EvalGen(a) => a.run(),
            Self::Probe(a) => a.run(),
            Self::Bench(a) => a.run(),
        }
    }
}
