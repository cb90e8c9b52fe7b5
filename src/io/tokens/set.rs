//! The token set `extract-tokens` writes for AR training: per image the full raster of codes,
//! the group map, the kept count K and the class label.
use super::check::{check_bits, check_codes, check_group, check_len, meta_num, read_i64, rows, to_groups};
use super::shards::Extraction;
use crate::io::data::{Loader, Source};
use crate::io::marker::{Format, Marker};
use crate::io::output::Outputs;
use crate::tokenizer::tome::KeepPlan;
use crate::tokenizer::Tokenizer;
use anyhow::{anyhow, bail, Context, Result};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A tokenized data set for AR training (`extract-tokens`): per image the full raster of L
/// codes (each position carries the code of the kept token that absorbed it), the group map,
/// the kept count K and its index among the tokenizer's candidates, and the class label.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSet {
    pub bits: usize,
    /// Kept-count candidates (the merge instructions), e.g. [25, 36, 49, 64].
    pub candidates: Vec<usize>,
    pub codes: Vec<Vec<i64>>,
    pub group: Vec<Vec<usize>>,
    pub keep: Vec<usize>,
    pub labels: Vec<usize>,
    pub classes: usize,
}

impl TokenSet {
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Index of image i's K among the candidates (a loaded set has every K among them).
    pub fn merge_index(&self, i: usize) -> usize {
        self.candidates.iter().position(|&k| k == self.keep[i]).unwrap_or(0)
    }

    /// Tokenizes the first `n` images of `source` (centre crops, in order). Each image's K is
    /// `keep` if given, else drawn from the tokenizer's candidate distribution by a generator
    /// seeded with `seed` and the image's index, so a run is reproducible. Images are encoded
    /// 32 at a time, grouped by K in candidate order; unreadable ones are skipped. `progress`
    /// is called with the number of images done.
    pub fn extract(
        tok: &Tokenizer,
        source: Arc<dyn Source>,
        n: usize,
        keep: Option<usize>,
        seed: u64,
        progress: &dyn Fn(u64),
    ) -> Result<Self> {
        let n = n.min(source.len());
        let job = Extraction { keep, seed, batch: 32 };
        job.run(tok, source, 0..n, progress, &|| Ok(()))
    }

    /// Encodes the images `items` of the loader (skipping unreadable ones) and appends their
    /// full rasters of codes, group maps, K (of `plan`) and labels.
    pub(super) fn push_encoded(
        &mut self,
        tok: &Tokenizer,
        plan: &KeepPlan,
        loader: &Loader,
        items: &[usize],
    ) -> Result<()> {
        let r = tok.cfg.ddconfig.resolution;
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for &i in items {
            let b = loader.batch_in_order(i);
            if b.size > 0 {
                pixels.extend(b.images);
                labels.push(b.labels[0]);
            }
        }
        if labels.is_empty() {
            return Ok(());
        }
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [labels.len(), 3, r, r]), &tok.device());
        let t = tok.encode(x, plan)?;
        for ((g, idx), label) in t.group.into_iter().zip(t.indices.chunks(t.k)).zip(labels) {
            self.codes.push(g.iter().map(|&gi| idx[gi]).collect());
            self.group.push(g);
            self.keep.push(t.k);
            self.labels.push(label);
        }
        Ok(())
    }

    /// The marker of a token set (`extract-tokens` replaces only a file carrying it).
    pub const MARKER: Marker = Marker::format("mergevq-tokenset-1", "mergevq token set (from extract-tokens)");

    /// Writes the set through `out` after checking it (see [`TokenSet::validate`]).
    pub fn save(&self, path: &Path, out: &Outputs) -> Result<()> {
        self.validate().with_context(|| format!("token set for {} is inconsistent", path.display()))?;
        let n = self.len();
        let l = self.codes.first().map(|c| c.len()).unwrap_or(0);
        let i64s = |v: Vec<i64>| -> Vec<u8> { v.into_iter().flat_map(|x| x.to_le_bytes()).collect() };
        let codes = i64s(self.codes.concat());
        let group = i64s(self.group.iter().flatten().map(|&g| g as i64).collect());
        let keep = i64s(self.keep.iter().map(|&k| k as i64).collect());
        let labels = i64s(self.labels.iter().map(|&k| k as i64).collect());
        let views = vec![
            ("codes".to_string(), TensorView::new(Dtype::I64, vec![n, l], &codes)?),
            ("group".to_string(), TensorView::new(Dtype::I64, vec![n, l], &group)?),
            ("keep".to_string(), TensorView::new(Dtype::I64, vec![n], &keep)?),
            ("labels".to_string(), TensorView::new(Dtype::I64, vec![n], &labels)?),
        ];
        let cands = self.candidates.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        let meta: HashMap<String, String> = [
            Self::MARKER.entry(),
            ("bits".to_string(), self.bits.to_string()),
            ("candidates".to_string(), cands),
            ("classes".to_string(), self.classes.to_string()),
        ]
        .into();
        out.write(path, Format::Safetensors(Self::MARKER), &safetensors::serialize(views, Some(meta))?)
    }

    /// Reads and checks a token set; an error names the file and the first entry at fault.
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return super::shards::load_shards(path);
        }
        let bytes = std::fs::read(path).with_context(|| format!("cannot read tokens {}", path.display()))?;
        let bad =
            |e: anyhow::Error| anyhow!("{} is not a mergevq token set (from extract-tokens): {e}", path.display());
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.into()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get(Self::MARKER.key).map(|s| s.as_str()) != Self::MARKER.value {
            return Err(bad(anyhow!("missing format tag")));
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.into()))?;
        let set = Self::parse(&st, &meta).map_err(bad)?;
        set.validate().map_err(|e| anyhow!("token set {} is invalid: {e}", path.display()))?;
        Ok(set)
    }

    /// The fields of the file, unchecked.
    fn parse(st: &SafeTensors, meta: &HashMap<String, String>) -> Result<Self> {
        let (codes, codes_shape) = read_i64(st, "codes", 2)?;
        let (group, group_shape) = read_i64(st, "group", 2)?;
        let (keep, _) = read_i64(st, "keep", 1)?;
        let (labels, _) = read_i64(st, "labels", 1)?;
        let cands = meta.get("candidates").ok_or_else(|| anyhow!("no `candidates` in the metadata"))?;
        let nonneg = |v: Vec<i64>, what: &str| -> Result<Vec<usize>> {
            v.into_iter()
                .enumerate()
                .map(|(i, x)| usize::try_from(x).map_err(|_| anyhow!("image {i}: `{what}` {x} is negative")))
                .collect()
        };
        Ok(Self {
            bits: meta_num(meta, "bits")?,
            classes: meta_num(meta, "classes")?,
            candidates: cands
                .split(',')
                .map(|c| c.trim().parse().map_err(|_| anyhow!("`candidates` = `{cands}` is not a list of numbers")))
                .collect::<Result<_>>()?,
            codes: rows(&codes, &codes_shape, "codes")?,
            group: to_groups(rows(&group, &group_shape, "group")?)?,
            keep: nonneg(keep, "keep")?,
            labels: nonneg(labels, "labels")?,
        })
    }

    /// Checks the set is consistent: distinct candidates ≥ 1; `codes`, `group`, `keep` and
    /// `labels` for the same images; rows of one length L ≥ 1; every code in the codebook
    /// (0..2^bits), label below `classes`, K among the candidates and ≤ L, group entry a kept
    /// token (0..K), and positions of one group carrying one code.
    pub fn validate(&self) -> Result<()> {
        check_bits(self.bits)?;
        if self.classes == 0 {
            bail!("classes is 0");
        }
        let n = self.len();
        for (what, len) in [("group", self.group.len()), ("keep", self.keep.len()), ("labels", self.labels.len())] {
            if len != n {
                bail!("`codes` has {n} images but `{what}` has {len}");
            }
        }
        let l = self.codes.first().map_or(usize::MAX, Vec::len);
        if l == 0 {
            bail!("`codes` has no tokens per image");
        }
        check_len(&self.codes, l, "codes")?;
        check_len(&self.group, l, "group")?;
        self.check_candidates(l)?;
        check_codes(&self.codes, self.bits, "codes")?;
        (0..n).try_for_each(|i| self.check_image(i))
    }

    /// Checks the candidates are distinct kept counts in 1..=L.
    fn check_candidates(&self, l: usize) -> Result<()> {
        let c = &self.candidates;
        if c.is_empty() || c.iter().any(|&k| k == 0 || k > l) {
            bail!("kept-count candidates {c:?} must be a non-empty list of values in 1..={l}");
        }
        if (1..c.len()).any(|i| c[..i].contains(&c[i])) {
            bail!("kept-count candidates {c:?} repeat a value");
        }
        Ok(())
    }

    /// Checks image i's label, K and group map.
    fn check_image(&self, i: usize) -> Result<()> {
        let (label, k) = (self.labels[i], self.keep[i]);
        if label >= self.classes {
            bail!("image {i}: label {label} is not below the {} classes", self.classes);
        }
        if !self.candidates.contains(&k) {
            bail!("image {i}: K = {k} is not among the kept-count candidates {:?}", self.candidates);
        }
        check_group(i, &self.group[i], k)?;
        let mut code_of = vec![None; k];
        for (p, (&g, &c)) in self.group[i].iter().zip(&self.codes[i]).enumerate() {
            match code_of[g] {
                Some(first) if first != c => {
                    bail!("image {i}, position {p}: code {c} differs from {first}, the code of its group {g}")
                }
                _ => code_of[g] = Some(c),
            }
        }
        Ok(())
    }
}

/// The kept counts K to draw from, with their cumulative probabilities: `keep` alone if given,
/// else the tokenizer's candidates up to L (or its one fixed K).
pub(super) fn kept_candidates(tok: &Tokenizer, keep: Option<usize>) -> Result<(Vec<usize>, Vec<f64>)> {
    let l = tok.full_len();
    Ok(match (&tok.plan.candidates, keep) {
        (_, Some(k)) => (vec![k], vec![1.0]),
        (Some(c), None) => {
            let ks: Vec<usize> = c.remain.iter().map(|&k| k as usize).filter(|&k| k <= l).collect();
            let cum_prob = c.cum_prob[..ks.len()].to_vec();
            (ks, cum_prob)
        }
        (None, None) => (vec![tok.plan.kept()? as usize], vec![1.0]),
    })
}

/// Image i's K: one uniform draw from a generator seeded by `seed` and i, looked up in the
/// cumulative distribution.
pub(super) fn draw_keep(seed: u64, i: usize, candidates: &[usize], cum_prob: &[f64]) -> usize {
    let u: f64 = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).random();
    candidates[cum_prob.partition_point(|&p| p < u).min(candidates.len() - 1)]
}
