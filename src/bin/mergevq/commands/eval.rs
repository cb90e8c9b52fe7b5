//! `eval-recon`, `eval-gen`, `probe`: reconstruction, generation and representation metrics.
use super::large::LargeArgs;
use super::tokenize::TrainedArgs;
use crate::progress;
use anyhow::{bail, Result};
use mergevq::eval::metrics::{check_sample_size, frechet_distance, kid, Stats};
use mergevq::eval::plot::LinePlot;
use mergevq::eval::probe::{extract, linear_probe, SplitFeatures};
use mergevq::eval::{eval_recon, features_of, load_inception, load_lpips, load_stats, save_stats, ReconReport, STATS};
use mergevq::io::data::{self, ImageFolder, Source};
use mergevq::io::image::save_image;
use mergevq::io::marker::{Format, Marker};
use mergevq::io::output::Outputs;
use mergevq::memory::Use;
use mergevq::tokenizer::config::TokenizerConfig;
use mergevq::tokenizer::Tokenizer;
use mergevq::validate::{float_in, int_in, FloatRange, MAX_SIZE};
use std::path::{Path, PathBuf};

/// The marker of eval-recon's report.json (a re-run replaces only a report carrying it).
const RECON_REPORT: Marker = Marker::format("mergevq-eval-recon-1", "mergevq eval-recon report");
/// The marker of eval-gen's report.json.
const GEN_REPORT: Marker = Marker::format("mergevq-eval-gen-1", "mergevq eval-gen report");

/// `mergevq eval-recon`.
#[derive(clap::Args)]
pub struct EvalReconArgs {
    #[command(flatten)]
    model: TrainedArgs,
    /// An image folder, or fashion-mnist[:train|test].
    #[arg(long)]
    data: String,
    /// Kept counts K (perfect squares ≤ L); default the config's K.
    #[arg(long, value_delimiter = ',', value_parser = int_in(1, MAX_SIZE))]
    keep: Vec<usize>,
    /// Images to evaluate (at most the data set's).
    #[arg(long, default_value_t = 1000, value_parser = int_in(1, MAX_SIZE))]
    num: usize,
    #[arg(long, default_value_t = 32, value_parser = int_in(1, MAX_SIZE))]
    batch: usize,
    /// Skip rFID (InceptionV3 on every image is the slow part on a CPU).
    #[arg(long)]
    no_fid: bool,
    /// rFID over the first N of the evaluated images only (default: all of them); the other
    /// metrics still cover every image.
    #[arg(long, value_parser = int_in(2, MAX_SIZE))]
    fid_num: Option<usize>,
    /// This model's name in the plots' legends.
    #[arg(long, default_value = "MergeVQ")]
    label: String,
    /// Another eval-recon report to draw in the same plots, as NAME=PATH/report.json (repeatable):
    /// baselines such as fixed-grid tokenizers on one rate–distortion curve.
    #[arg(long, value_parser = parse_compare)]
    compare: Vec<(String, PathBuf)>,
    /// How the decoder puts the K tokens back on the L-token grid: `source`, the encoder's source
    /// map (side information, L·⌈log₂K⌉ bits per image), or `learned`, the source-recovery model
    /// (k2lconfig.learn_source; no side information). Default: `learned` where the model has it.
    #[arg(long, value_enum)]
    unmerge: Option<Unmerge>,
    #[arg(long, default_value = "weights/inception_fid.safetensors")]
    inception: PathBuf,
    #[arg(long, default_value = "weights/lpips_vgg16.safetensors")]
    lpips: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    large: LargeArgs,
}

impl EvalReconArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let compared =
            self.compare.iter().map(|(name, p)| Ok((name.clone(), read_report(p)?))).collect::<Result<Vec<_>>>()?;
        let outs = self.outputs()?;
        let cfg = TokenizerConfig::load(&self.model.config)?;
        self.large.tokenizer(&cfg, self.batch, Use::Inference)?;
        let tok = Tokenizer::open(&cfg, &self.model.tokenizer, false, &device)?;
        let tok = match (self.unmerge, tok.recovery.is_some()) {
            (Some(Unmerge::Source), _) => tok.without_recovery(),
            (Some(Unmerge::Learned), false) => bail!(
                "--unmerge learned: {} has no learned source recovery (k2lconfig.learn_source)",
                self.model.config.display()
            ),
            _ => tok,
        };
        let keeps = if self.keep.is_empty() { vec![tok.plan.kept()? as usize] } else { self.keep.clone() };
        for &k in &keeps {
            tok.keep(k)?;
        }
        let source = data::open(&self.data)?;
        let inc = (!self.no_fid).then(|| load_inception(&self.inception, &device)).transpose()?;
        let lp = load_lpips(&self.lpips, &device)?;
        let n = self.num.min(source.len());
        let pb = progress::bar((n * keeps.len()) as u64, "eval-recon");
        let fid = inc.as_ref().map(|net| (net, self.fid_num.unwrap_or(n)));
        let (reports, grid) = eval_recon(&tok, source, n, &keeps, self.batch, Some(&lp), fid, &|k| pb.inc(k))?;
        pb.finish_and_clear();
        print_table(&reports);
        save_image(&grid, &self.output.join("reconstructions.png"), &outs)?;
        if let (Some(r), false) = (reports.first(), self.no_fid) {
            println!("rFID from {} images (against the same images' originals)", r.fid_images);
            if let Some(w) = check_sample_size("rFID", r.fid_images)? {
                eprintln!("warning: {w}");
            }
        }
        let unmerge = if tok.recovery.is_some() { "learned" } else { "source" };
        self.write_report(&reports, &compared, tok.full_len(), unmerge, &outs)
    }

    /// Where eval-recon may write (anywhere but its inputs), once the output folder exists and
    /// the files it will write there may be written.
    fn outputs(&self) -> Result<Outputs> {
        let outs = Outputs::new([
            &self.model.tokenizer,
            &self.model.config,
            Path::new(&self.data),
            &self.inception,
            &self.lpips,
        ]);
        outs.dir(&self.output)?;
        outs.check(&self.output.join("report.json"), Format::Json(RECON_REPORT))?;
        for png in ["reconstructions.png", "rd_psnr.png", "rd_bits.png", "rd_rfid.png"] {
            outs.check(&self.output.join(png), Format::Image)?;
        }
        Ok(outs)
    }

    /// report.json and the rate–distortion plots (PSNR against K and against bits per image, and
    /// rFID unless skipped), with the compared reports' series.
    fn write_report(
        &self,
        reports: &[ReconReport],
        compared: &[(String, Vec<ReconReport>)],
        l: usize,
        unmerge: &str,
        outs: &Outputs,
    ) -> Result<()> {
        let out = &self.output;
        let (key, value) = RECON_REPORT.entry();
        let json = serde_json::json!({key: value, "tokenizer": self.model.tokenizer, "config": self.model.config,
            "data": self.data, "L": l, "unmerge": unmerge, "results": reports});
        let text = serde_json::to_string_pretty(&json)?;
        outs.write(&out.join("report.json"), Format::Json(RECON_REPORT), text.as_bytes())?;
        let bits = |r: &ReconReport| (r.code_bits + r.side_bits) as f64;
        let plot = |x: &str, y: &str, fx: &dyn Fn(&ReconReport) -> f64, fy: &dyn Fn(&ReconReport) -> Option<f64>| {
            // Points in x order: the source map makes bits per image non-monotonic in K.
            let series = |rs: &[ReconReport]| {
                let mut p: Vec<(f64, f64)> = rs.iter().filter_map(|r| fy(r).map(|v| (fx(r), v))).collect();
                p.sort_by(|a, b| a.0.total_cmp(&b.0));
                p
            };
            let mut p = LinePlot::new(x, y).with(&self.label, series(reports));
            for (name, rs) in compared {
                p = p.with(name, series(rs));
            }
            p.render(560, 360)
        };
        let k = |r: &ReconReport| r.keep as f64;
        save_image(&plot("kept tokens K", "PSNR (dB)", &k, &|r| Some(r.psnr))?, &out.join("rd_psnr.png"), outs)?;
        let bits_label = "bits per image (codes + source map)";
        save_image(&plot(bits_label, "PSNR (dB)", &bits, &|r| Some(r.psnr))?, &out.join("rd_bits.png"), outs)?;
        if !self.no_fid {
            save_image(&plot("kept tokens K", "rFID", &k, &|r| r.rfid)?, &out.join("rd_rfid.png"), outs)?;
        }
        println!(
            "wrote {}/{{report.json,rd_psnr.png,rd_bits.png{},reconstructions.png}}",
            out.display(),
            if self.no_fid { "" } else { ",rd_rfid.png" }
        );
        Ok(())
    }
}

/// `--compare NAME=PATH`.
fn parse_compare(s: &str) -> std::result::Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("{s:?} is not NAME=PATH (a legend name and an eval-recon report.json)")),
    }
}

/// The results of an eval-recon report.json.
fn read_report(path: &Path) -> Result<Vec<ReconReport>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read report {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("report {} is not JSON: {e}", path.display()))?;
    let (key, value) = RECON_REPORT.entry();
    if v.get(&key).and_then(|x| x.as_str()) != Some(value.as_str()) {
        bail!("{} is not an eval-recon report.json", path.display());
    }
    serde_json::from_value(v["results"].clone())
        .map_err(|e| anyhow::anyhow!("report {}: bad results: {e}", path.display()))
}

/// The decoder's way back to the full grid (`eval-recon --unmerge`).
#[derive(Clone, Copy, clap::ValueEnum)]
enum Unmerge {
    Source,
    Learned,
}

/// One row per K: images, bits per image (codes + side information), PSNR, SSIM, LPIPS, rFID
/// ("-" when not computed), usage, perplexity.
fn print_table(reports: &[ReconReport]) {
    println!(
        "{:>5} {:>7} {:>11} {:>8} {:>7} {:>8} {:>9} {:>8} {:>10}",
        "K", "images", "bits", "PSNR", "SSIM", "LPIPS", "rFID", "usage", "perplexity"
    );
    let opt = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "-".into());
    for r in reports {
        println!(
            "{:>5} {:>7} {:>11} {:>8.2} {:>7.4} {:>8} {:>9} {:>8.4} {:>10.1}",
            r.keep,
            r.images,
            format!("{}+{}", r.code_bits, r.side_bits),
            r.psnr,
            r.ssim,
            opt(r.lpips, 4),
            opt(r.rfid, 2),
            r.codebook_usage,
            r.perplexity
        );
    }
    for (r, p) in reports.iter().filter_map(|r| r.placement.map(|p| (r, p))) {
        println!("K={}: the learned recovery gives {:.1} % of grid positions the source map's code", r.keep, 100.0 * p);
    }
}

/// `mergevq eval-gen`.
#[derive(clap::Args)]
pub struct EvalGenArgs {
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
    #[arg(long, default_value_t = 16, value_parser = int_in(1, MAX_SIZE))]
    batch: usize,
    #[arg(short, long)]
    output: PathBuf,
}

impl EvalGenArgs {
    pub fn run(self) -> Result<()> {
        let device = mergevq::device();
        let outs = Outputs::new([&self.samples, &self.reference, &self.inception]);
        if let Some(p) = &self.save_stats {
            outs.check(p, Format::Safetensors(STATS))?;
        }
        outs.dir(&self.output)?;
        outs.check(&self.output.join("report.json"), Format::Json(GEN_REPORT))?;
        let net = load_inception(&self.inception, &device)?;
        let features = |folder: &ImageFolder, what: &str| {
            let pb = progress::bar(folder.len() as u64, what);
            let f = features_of(&net, folder, self.batch, &device, &|k| pb.inc(k));
            pb.finish_and_clear();
            f
        };
        let fg = features(&ImageFolder::open(&self.samples)?, "features (samples)")?;
        let (ref_stats, fr) = if self.reference.is_file() {
            load_stats(&self.reference)?
        } else {
            let fr = features(&ImageFolder::open(&self.reference)?, "features (reference)")?;
            (Stats::from_features(&fr), fr)
        };
        if let Some(p) = &self.save_stats {
            save_stats(p, &fr, &outs)?;
        }
        let warnings =
            [check_sample_size("gFID (samples)", fg.len())?, check_sample_size("gFID (reference)", fr.len())?];
        let gfid = frechet_distance(&Stats::from_features(&fg), &ref_stats);
        let size = fg.len().min(fr.len()).min(1000);
        let (kid_mean, kid_std) = kid(&fg, &fr, 100, size, 0);
        for w in warnings.into_iter().flatten() {
            eprintln!("warning: {w}");
        }
        println!(
            "gFID {gfid:.3} ({} samples, {} reference images)  KID {kid_mean:.5} ± {kid_std:.5} (100 subsets of {size})",
            fg.len(),
            fr.len()
        );
        println!("Inception Score: not available (the registry FID weights have no classifier head)");
        let (key, value) = GEN_REPORT.entry();
        let json = serde_json::json!({key: value, "samples": self.samples, "reference": self.reference, "n_samples": fg.len(), "n_reference": fr.len(), "gfid": gfid, "kid": kid_mean, "kid_std": kid_std, "kid_subset_size": size, "inception_score": null});
        let text = serde_json::to_string_pretty(&json)?;
        outs.write(&self.output.join("report.json"), Format::Json(GEN_REPORT), text.as_bytes())
    }
}

/// `mergevq probe`.
#[derive(clap::Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    model: TrainedArgs,
    /// Training images: a folder or fashion-mnist[:split].
    #[arg(long)]
    train: String,
    #[arg(long)]
    val: String,
    #[arg(long, default_value_t = 5000, value_parser = int_in(1, MAX_SIZE))]
    num_train: usize,
    #[arg(long, default_value_t = 1000, value_parser = int_in(1, MAX_SIZE))]
    num_val: usize,
    #[arg(long, default_value_t = 30, value_parser = int_in(1, MAX_SIZE))]
    epochs: usize,
    /// Learning rate of the linear classifier.
    #[arg(long, default_value_t = 1e-2, allow_hyphen_values = true, value_parser = float_in(FloatRange::POSITIVE))]
    lr: f64,
    /// Feature cache (reused when present).
    #[arg(long, default_value = "probe_features.safetensors")]
    cache: PathBuf,
    #[command(flatten)]
    large: LargeArgs,
}

impl ProbeArgs {
    pub fn run(self) -> Result<()> {
        let cfg = TokenizerConfig::load(&self.model.config)?;
        self.large.tokenizer(&cfg, 1, Use::Inference)?;
        let tok = Tokenizer::open(&cfg, &self.model.tokenizer, false, &mergevq::device())?;
        let (train_src, val_src) = (data::open(&self.train)?, data::open(&self.val)?);
        let classes = train_src.classes();
        let f = match SplitFeatures::load(&self.cache, &self.cache_key()) {
            Some(f) => {
                println!("using cached features {}", self.cache.display());
                f
            }
            None => {
                let outs = Outputs::new([
                    &self.model.tokenizer,
                    &self.model.config,
                    Path::new(&self.train),
                    Path::new(&self.val),
                ]);
                outs.check(&self.cache, Format::Safetensors(SplitFeatures::MARKER))?;
                self.extract(&tok, train_src, val_src, &outs)?
            }
        };
        let (tr, va) = (&f.train, &f.val);
        let (epochs, lr) = (self.epochs, self.lr);
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

    /// What the cached features depend on: the tokenizer, the data and the image counts.
    fn cache_key(&self) -> String {
        let (w, c) = (self.model.tokenizer.display(), self.model.config.display());
        format!("{w}|{c}|{}|{}|{}|{}", self.train, self.val, self.num_train, self.num_val)
    }

    /// Extracts the features of both splits and caches them through `outs`.
    fn extract(
        &self,
        tok: &Tokenizer,
        train: std::sync::Arc<dyn Source>,
        val: std::sync::Arc<dyn Source>,
        outs: &Outputs,
    ) -> Result<SplitFeatures> {
        let pb = progress::bar((self.num_train.min(train.len()) + self.num_val.min(val.len())) as u64, "features");
        let f = SplitFeatures {
            train: extract(tok, train, self.num_train, 64, &|k| pb.inc(k))?,
            val: extract(tok, val, self.num_val, 64, &|k| pb.inc(k))?,
        };
        pb.finish_and_clear();
        f.save(&self.cache, &self.cache_key(), outs)?;
        Ok(f)
    }
}
