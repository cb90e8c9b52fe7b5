//! `extract-tokens` into a folder of shards: a data set of any size tokenized in batches, each
//! shard of `shard_size` images written atomically as a token set of its own, so that a killed
//! run resumes at the first missing shard with the same result. `extract.json` records the
//! options; a folder made with other options is refused rather than mixed. `TokenSet::load` of
//! the folder reads every shard back as one set.
use super::set::{draw_keep, kept_candidates};
use super::TokenSet;
use crate::io::data::{Loader, Source};
use crate::io::marker::{Format, Marker};
use crate::io::output::Outputs;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The marker of a shard folder's `extract.json`.
pub const MANIFEST: Marker = Marker::format("mergevq-token-shards-1", "mergevq token shards (from extract-tokens)");

/// How images are tokenized: a fixed K or K drawn per image from the candidates with `seed`,
/// `batch` images per encoder call.
#[derive(Clone, Copy, Debug)]
pub struct Extraction {
    pub keep: Option<usize>,
    pub seed: u64,
    pub batch: usize,
}

/// What a sharded extraction did.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardReport {
    pub shards: usize,
    /// Shards found complete from an earlier run.
    pub reused: usize,
    /// Images in the written and reused shards (unreadable ones are skipped).
    pub images: usize,
    pub candidates: Vec<usize>,
    pub classes: usize,
}

impl Extraction {
    /// Tokenizes the images `range` of `source` into one set, grouped by K in candidate order,
    /// `batch` at a time; `between` runs after every batch (an error stops the run).
    pub fn run(
        &self,
        tok: &Tokenizer,
        source: Arc<dyn Source>,
        range: Range<usize>,
        progress: &dyn Fn(u64),
        between: &dyn Fn() -> Result<()>,
    ) -> Result<TokenSet> {
        crate::validate::check_int("batch", self.batch, 1, crate::validate::MAX_SIZE)?;
        let (candidates, cum_prob) = kept_candidates(tok, self.keep)?;
        let loader = Loader::in_order(source.clone(), tok.cfg.ddconfig.resolution as u32, tok.cfg.preprocess, 1);
        let mut set = TokenSet {
            bits: tok.cfg.embed_dim,
            candidates: candidates.clone(),
            codes: vec![],
            group: vec![],
            keep: vec![],
            labels: vec![],
            classes: source.classes(),
        };
        let ks: Vec<usize> = range.clone().map(|i| draw_keep(self.seed, i, &candidates, &cum_prob)).collect();
        for &k in &candidates {
            let plan = tok.keep(k)?;
            let items: Vec<usize> = range.clone().filter(|&i| ks[i - range.start] == k).collect();
            for chunk in items.chunks(self.batch) {
                set.push_encoded(tok, &plan, &loader, chunk)?;
                progress(chunk.len() as u64);
                between()?;
            }
        }
        Ok(set)
    }
}

/// The file of shard `s` in `dir`.
fn shard_path(dir: &Path, s: usize) -> PathBuf {
    dir.join(format!("shard-{s:05}.safetensors"))
}

/// Tokenizes the first `n` images of `source` into shards of `shard_size` images in `dir`,
/// reusing the complete shards of an earlier run with the same options (`spec` names the data
/// in the manifest). `progress` gets image counts; `between` runs after every batch.
#[allow(clippy::too_many_arguments)]
pub fn extract_shards(
    tok: &Tokenizer,
    source: Arc<dyn Source>,
    spec: &str,
    n: usize,
    job: &Extraction,
    shard_size: usize,
    dir: &Path,
    out: &Outputs,
    progress: &dyn Fn(u64),
    between: &dyn Fn() -> Result<()>,
) -> Result<ShardReport> {
    crate::validate::check_int("shard size", shard_size, 1, crate::validate::MAX_SIZE)?;
    let n = n.min(source.len());
    let (candidates, _) = kept_candidates(tok, job.keep)?;
    let (m_key, m_value) = MANIFEST.entry();
    let mut manifest = json!({
        "images": n, "data_images": source.len(), "data": spec, "shard_size": shard_size,
        "keep": job.keep, "seed": job.seed, "bits": tok.cfg.embed_dim, "L": tok.full_len(),
        "candidates": candidates, "classes": source.classes(),
    });
    manifest[m_key] = m_value.into();
    out.dir(dir)?;
    let mpath = dir.join("extract.json");
    if mpath.exists() {
        let text = std::fs::read_to_string(&mpath).with_context(|| format!("cannot read {}", mpath.display()))?;
        let old: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if old != manifest {
            bail!(
                "{} holds shards of another extraction ({}); this one is {manifest}: use another output folder",
                dir.display(),
                old
            );
        }
    } else {
        out.write(&mpath, Format::Json(MANIFEST), format!("{manifest:#}\n").as_bytes())?;
    }
    let shards = n.div_ceil(shard_size);
    let mut report = ShardReport { shards, reused: 0, images: 0, candidates, classes: source.classes() };
    for s in 0..shards {
        let range = s * shard_size..((s + 1) * shard_size).min(n);
        let path = shard_path(dir, s);
        if let Ok(done) = TokenSet::load(&path) {
            report.reused += 1;
            report.images += done.len();
            progress(range.len() as u64);
            continue;
        }
        let set = job.run(tok, source.clone(), range, progress, between)?;
        report.images += set.len();
        if !set.is_empty() {
            set.save(&path, out)?;
        }
    }
    Ok(report)
}

/// The shards of a folder `extract_shards` wrote, as one set (in shard order); every shard
/// must come from the same tokenizer and data.
pub fn load_shards(dir: &Path) -> Result<TokenSet> {
    let mut files: Vec<PathBuf> = crate::io::fs::list_dir(dir)?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("shard-") && f.ends_with(".safetensors"))
        })
        .collect();
    files.sort();
    let Some(first) = files.first() else {
        bail!("token folder {} holds no shard-*.safetensors files (from extract-tokens)", dir.display());
    };
    let mut all = TokenSet::load(first)?;
    for f in &files[1..] {
        let s = TokenSet::load(f)?;
        if (s.bits, &s.candidates, s.classes) != (all.bits, &all.candidates, all.classes) {
            bail!("shard {} does not match {} (another tokenizer or data set?)", f.display(), first.display());
        }
        if s.codes.first().map(Vec::len) != all.codes.first().map(Vec::len) {
            bail!("shard {} has another L than {}", f.display(), first.display());
        }
        all.codes.extend(s.codes);
        all.group.extend(s.group);
        all.keep.extend(s.keep);
        all.labels.extend(s.labels);
    }
    Ok(all)
}
