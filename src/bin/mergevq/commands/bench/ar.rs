//! `bench ar`: AR decoding, plain vs MergeAR, on a random GPT with a synthetic group map
//! (K = L/4, groups of 4 consecutive tokens): tokens/s, peak KV-cache entries and cache memory.
use super::measure::time;
use super::{Common, Record};
use anyhow::Result;
use mergevq::ar::gpt::{Gpt, GptConfig};
use mergevq::ar::sample::{generate, SampleOpts};
use mergevq::io::weights::Weights;
use mergevq::validate::{float_in, int_in, square_in, FloatRange};
use rand::SeedableRng;

/// The size of the random GPT.
#[derive(clap::Args, Clone)]
pub struct ArModel {
    /// Model width (a multiple of 4·heads).
    #[arg(long, default_value_t = 256, value_parser = int_in(1, 16_384))]
    pub dim: usize,
    #[arg(long, default_value_t = 8, value_parser = int_in(1, 256))]
    pub layers: usize,
    #[arg(long, default_value_t = 8, value_parser = int_in(1, 256))]
    pub heads: usize,
}

/// `mergevq bench ar`.
#[derive(clap::Args)]
pub struct ArBench {
    #[command(flatten)]
    gpt: ArModel,
    /// Sequence lengths L (perfect squares ≥ 4; K = L/4).
    #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 1024], value_parser = square_in(4, 65_536))]
    lengths: Vec<usize>,
    /// Classifier-free guidance scale (≠ 1 decodes a conditional and an unconditional
    /// sequence per image, as `generate --cfg` does).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, value_parser = float_in(FloatRange::FINITE))]
    cfg: f64,
    #[command(flatten)]
    pub common: Common,
}

impl ArBench {
    pub fn records(&self) -> Result<Vec<Record>> {
        ar(&self.gpt, &self.lengths, self.cfg, self.common.runs())
    }
}

/// Both decoding modes at every length L, with a `cfg_scale` guidance scale.
pub fn ar(m: &ArModel, lengths: &[usize], cfg_scale: f64, runs: usize) -> Result<Vec<Record>> {
    let rows = if cfg_scale != 1.0 { "2 sequences (CFG)" } else { "1 sequence" };
    println!("AR decoding: dim {}, {} layers, {} heads, 18-bit codes (6+12), one image = {rows}, sampling every token, median of {runs}", m.dim, m.layers, m.heads);
    println!(
        "{:>6} {:>6} {:>10} {:>12} {:>10} {:>14} {:>8}",
        "L", "K", "mode", "tokens/s", "peak KV", "KV memory MiB", "speedup"
    );
    let mut out = Vec::new();
    for &l in lengths {
        let mut base = None;
        for (mode, merge_tokens, window) in [("plain", 0usize, None), ("mergear", 1, Some(2usize))] {
            let (times, peak) = decode(m, l, merge_tokens, window, cfg_scale, runs)?;
            let tag = if cfg_scale != 1.0 { ".cfg" } else { "" };
            let mut rec = Record::new(format!("ar.L{l}{tag}.{mode}"), times);
            let tps = l as f64 / rec.median_s;
            rec.per_s = Some(tps);
            let seqs = if cfg_scale != 1.0 { 2 } else { 1 };
            let mib = (seqs * peak * m.layers * 2 * m.dim * 4) as f64 / (1024.0 * 1024.0);
            rec.note = format!("peak KV entries {peak}, KV memory {mib:.2} MiB");
            let b = *base.get_or_insert(tps);
            println!("{l:>6} {:>6} {mode:>10} {tps:>12.1} {peak:>10} {mib:>14.2} {:>7.2}x", l / 4, tps / b);
            out.push(rec);
        }
    }
    Ok(out)
}

/// Times decoding one synthetic merged image of L tokens (K = L/4 groups of 4 consecutive
/// positions, one code each, forced so every mode decodes the same sequence); returns the
/// run times and the peak KV-cache entries.
fn decode(
    m: &ArModel,
    l: usize,
    merge_tokens: usize,
    window: Option<usize>,
    cfg_scale: f64,
    runs: usize,
) -> Result<(Vec<f64>, usize)> {
    let device = mergevq::device();
    let opts = SampleOpts { cfg: cfg_scale, ..Default::default() };
    let cfg = GptConfig {
        factorized_bits: [6, 12],
        block_size: l,
        dim: m.dim,
        n_head: m.heads,
        spatial_n_layer: m.layers,
        factorized_n_layer: 2,
        class_num: 1000,
        merge_tokens,
        multiple_of: 256,
        rope_base: 10000.0,
        class_dropout: 0.0,
    };
    let gpt = Gpt::load(Weights::random(0, &device).root(), &cfg)?;
    let codes: Vec<i64> = (0..l).map(|j| ((j / 4) as i64 * 7919) % (1 << 18)).collect();
    let mut peak = 0;
    let times = time(runs, || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let g = generate(&gpt, 1, (merge_tokens > 0).then_some(0), window, &opts, &mut rng, Some(&codes))?;
        peak = g.peak_kv;
        Ok(())
    })?;
    Ok((times, peak))
}
