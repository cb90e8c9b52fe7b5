//! `bench ar`: batched AR decoding of B images (2B sequences with guidance), plain vs MergeAR,
//! on one random MergeAR GPT decoded both ways: "plain" keeps every entry (w ≥ L), "mergear"
//! evicts with window w. The code sequences are forced from the tokenizer encoding crops of a
//! real photo (`group_maps`), so both modes decode the same tokens. Records
//! `ar[.model].L{L}.b{B}[.cfg].{plain|mergear}` with tokens/s over all images (`per_s`), the
//! bytes the KV caches allocated (`peak_kv_mib`) and the guidance scale (`cfg`).
use super::group_maps::photo_codes;
use super::{Common, Record};
use anyhow::Result;
use mergevq::ar::batched::{generate_batch, image_rng, slots, Request};
use mergevq::ar::gpt::{Gpt, GptConfig};
use mergevq::ar::sample::SampleOpts;
use mergevq::io::weights::Weights;
use mergevq::validate::{float_in, int_in, square_in, FloatRange};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// The authors' stage-2 GPT (configs/gpu_s2/imagenet_cond_llamagen_B_*.yaml: dim 1024,
    /// 24 spatial layers, 16 heads) instead of --dim/--layers/--heads.
    #[arg(long)]
    pub gpt_b: bool,
}

impl ArModel {
    /// (dim, layers, heads).
    fn size(&self) -> (usize, usize, usize) {
        if self.gpt_b {
            (1024, 24, 16)
        } else {
            (self.dim, self.layers, self.heads)
        }
    }

    /// Record-name prefix: `ar` for the default dim-256 model, `ar.gpt_b`, else `ar.d{dim}l{layers}h{heads}`.
    fn tag(&self) -> String {
        match self.size() {
            (256, 8, 8) => "ar".into(),
            (1024, 24, 16) => "ar.gpt_b".into(),
            (d, l, h) => format!("ar.d{d}l{l}h{h}"),
        }
    }
}

/// `mergevq bench ar`.
#[derive(clap::Args)]
pub struct ArBench {
    #[command(flatten)]
    gpt: ArModel,
    /// Sequence lengths L: 256 and 1024, the grids of the GR_d64 and G_d64 tokenizers.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 1024], value_parser = square_in(4, 65_536))]
    lengths: Vec<usize>,
    /// Classifier-free guidance scale (≠ 1 decodes a conditional and an unconditional
    /// sequence per image, as `generate --cfg` does).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, value_parser = float_in(FloatRange::FINITE))]
    cfg: f64,
    /// Images decoded together.
    #[arg(long, default_value_t = 1, value_parser = int_in(1, super::MAX_BATCH))]
    batch: usize,
    /// Kept count K (default: the tokenizer config's, 144 at L=256 and 256 at L=1024).
    #[arg(long, value_parser = int_in(1, 65_536))]
    keep: Option<usize>,
    /// The MergeAR cache window w.
    #[arg(long, default_value_t = 2, value_parser = int_in(0, 65_536))]
    window: usize,
    /// The photo the tokenizer encodes for the group maps.
    #[arg(long, default_value = "assets/rocket.jpg")]
    photo: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// What one `ar` call measures.
pub struct ArRun<'a> {
    pub model: &'a ArModel,
    pub lengths: &'a [usize],
    pub cfg: f64,
    pub batch: usize,
    pub keep: Option<usize>,
    pub window: usize,
    pub photo: &'a Path,
    pub runs: usize,
}

impl ArBench {
    pub fn records(&self) -> Result<Vec<Record>> {
        ar(&ArRun {
            model: &self.gpt,
            lengths: &self.lengths,
            cfg: self.cfg,
            batch: self.batch,
            keep: self.keep,
            window: self.window,
            photo: &self.photo,
            runs: self.common.runs(),
        })
    }
}

/// A GPT of the model's size with one merge instruction (the kept count K) at length L.
fn gpt_config(m: &ArModel, l: usize) -> GptConfig {
    let (dim, layers, heads) = m.size();
    GptConfig {
        factorized_bits: [6, 12],
        block_size: l,
        dim,
        n_head: heads,
        spatial_n_layer: layers,
        factorized_n_layer: 2,
        class_num: 1000,
        merge_tokens: 1,
        multiple_of: 256,
        rope_base: 10000.0,
        class_dropout: 0.0,
    }
}

/// Both decoding modes at every length L.
pub fn ar(r: &ArRun) -> Result<Vec<Record>> {
    let (dim, layers, heads) = r.model.size();
    let guided = r.cfg != 1.0;
    let rows = if guided { "2 sequences (CFG)" } else { "1 sequence" };
    println!(
        "AR decoding: dim {dim}, {layers} layers, {heads} heads, 18-bit codes (6+12), batch {} images × {rows}, window {}, median of {} (plain and MergeAR alternately)",
        r.batch, r.window, r.runs
    );
    for &l in r.lengths {
        gpt_config(r.model, l).validate()?;
    }
    let mut out = Vec::new();
    for &l in r.lengths {
        let device = mergevq::device();
        let gpt = Gpt::load(Weights::random(0, &device).root(), &gpt_config(r.model, l))?;
        let (k, codes) = photo_codes(l, r.batch, r.keep, r.photo)?;
        println!(
            "{:>6} {:>6} {:>10} {:>12} {:>14} {:>16} {:>8}",
            "L", "K", "mode", "tokens/s", "peak entries", "KV allocated MiB", "speedup"
        );
        let reqs: Vec<Request> =
            codes.iter().map(|c| Request { class: 1, merge: Some(0), keep: k, forced: Some(c.clone()) }).collect();
        let opts = SampleOpts { cfg: r.cfg, ..Default::default() };
        let modes = [("plain", None), ("mergear", Some(r.window))];
        // One warm-up of each, then plain and MergeAR alternately, so that drifts of the
        // machine's speed fall on both.
        let mut times = [Vec::new(), Vec::new()];
        let (mut peak_bytes, mut peak_entries) = ([0; 2], [0; 2]);
        for run in 0..=r.runs {
            for (m, &(_, window)) in modes.iter().enumerate() {
                let mut rngs: Vec<_> = (0..r.batch as u64).map(|i| image_rng(0, i)).collect();
                let t0 = Instant::now();
                let b = generate_batch(&gpt, &reqs, window, &opts, &mut rngs, |_| {})?;
                if run > 0 {
                    times[m].push(t0.elapsed().as_secs_f64());
                }
                peak_bytes[m] = b.peak_kv_bytes;
                peak_entries[m] = b.images.iter().map(|g| g.peak_kv).max().unwrap_or(0);
            }
        }
        let mut base = None;
        for (m, (mode, window)) in modes.into_iter().enumerate() {
            let tag = if guided { ".cfg" } else { "" };
            let mut rec = Record::new(format!("{}.L{l}.b{}{tag}.{mode}", r.model.tag(), r.batch), times[m].clone());
            let tps = (r.batch * l) as f64 / rec.median_s;
            let mib = peak_bytes[m] as f64 / (1024.0 * 1024.0);
            rec.per_s = Some(tps);
            rec.peak_kv_mib = Some(mib);
            rec.cfg = Some(r.cfg);
            let per_seq = slots(gpt.cfg.prefix(), l, k, window);
            let entries = peak_entries[m];
            rec.note = format!("L={l} K={k} w={} slots/sequence {per_seq}, peak entries {entries}", r.window);
            let b = *base.get_or_insert(tps);
            println!("{l:>6} {k:>6} {mode:>10} {tps:>12.1} {entries:>14} {mib:>16.2} {:>7.2}x", tps / b);
            out.push(rec);
        }
    }
    Ok(out)
}
