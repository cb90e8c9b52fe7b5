//! The tokens file `encode` writes and `decode` reads: safetensors with `indices` [B, K] and
//! `group` [B, L] (int64), and the codebook size and resolution in the metadata; and the token
//! set `extract-tokens` writes for AR training.
use crate::io::data::{Augment, Loader, Source};
use crate::io::safetensors::parse;
use crate::io::token_tables::{below, candidates, codes_fit, column, number, rows, MAX_BITS};
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

#[derive(Clone, Debug, PartialEq)]
pub struct TokensFile {
    /// LFQ bits per token (codebook size 2^bits).
    pub bits: usize,
    pub resolution: usize,
    pub indices: Vec<Vec<i64>>,
    /// For each image, the kept token (0..K) of each of the L grid positions.
    pub group: Vec<Vec<usize>>,
}

impl TokensFile {
    pub fn save(&self, path: &Path) -> Result<()> {
        let b = self.indices.len();
        let (k, l) = (self.indices[0].len(), self.group[0].len());
        let idx: Vec<u8> = self.indices.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        let grp: Vec<u8> = self.group.iter().flatten().flat_map(|&v| (v as i64).to_le_bytes()).collect();
        let views = vec![
            ("indices".to_string(), TensorView::new(Dtype::I64, vec![b, k], &idx)?),
            ("group".to_string(), TensorView::new(Dtype::I64, vec![b, l], &grp)?),
        ];
        let meta: HashMap<String, String> = [
            ("bits".to_string(), self.bits.to_string()),
            ("resolution".to_string(), self.resolution.to_string()),
            ("format".to_string(), "mergevq-tokens-1".to_string()),
        ]
        .into();
        crate::io::atomic::atomic_write(path, &safetensors::serialize(views, Some(meta))?)
    }

    /// Reads a tokens file [`save`](Self::save) wrote, checked: B ≥ 1 images, K ≥ 1 codes of
    /// `bits` bits and L group entries (each a kept token 0..K) per image.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read tokens file {}", path.display()))?;
        let bad = |why: String| anyhow!("{} is not a mergevq tokens file: {why}", path.display());
        let (st, meta) = parse(&bytes).map_err(|e| bad(e.to_string()))?;
        let bits = number(&meta, "bits", 1, MAX_BITS).map_err(bad)?;
        let resolution = number(&meta, "resolution", 1, usize::MAX).map_err(bad)?;
        let indices = rows(&st, "indices", None).map_err(bad)?;
        if indices.is_empty() {
            return Err(bad("it holds no images".into()));
        }
        codes_fit(&indices, bits, "code").map_err(bad)?;
        let k = indices[0].len();
        let group = rows(&st, "group", Some(indices.len()))
            .and_then(|g| g.iter().map(|r| below(r, k, "group entry")).collect())
            .map_err(bad)?;
        Ok(Self { bits, resolution, indices, group })
    }
}

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

    /// Index of image i's K among the candidates.
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
        let (candidates, cum_prob) = kept_candidates(tok, keep)?;
        let n = n.min(source.len());
        let ks: Vec<usize> = (0..n).map(|i| draw_keep(seed, i, &candidates, &cum_prob)).collect();
        let aug =
            Augment { resolution: tok.cfg.ddconfig.resolution as u32, random_crop: false, flip: false, pad: true };
        let loader = Loader {
            source: source.clone(),
            augment: aug.clone(),
            strong: aug,
            batch: 1,
            seed,
            skipped: Default::default(),
        };
        let mut set = Self {
            bits: tok.cfg.embed_dim,
            candidates: candidates.clone(),
            codes: vec![],
            group: vec![],
            keep: vec![],
            labels: vec![],
            classes: source.classes(),
        };
        for &k in &candidates {
            let plan = tok.keep(k)?;
            let items: Vec<usize> = (0..n).filter(|&i| ks[i] == k).collect();
            for chunk in items.chunks(32) {
                set.push_encoded(tok, &plan, &loader, chunk)?;
                progress(chunk.len() as u64);
            }
        }
        Ok(set)
    }

    /// Encodes the images `items` of the loader (skipping unreadable ones) and appends their
    /// full rasters of codes, group maps, K (of `plan`) and labels.
    fn push_encoded(&mut self, tok: &Tokenizer, plan: &KeepPlan, loader: &Loader, items: &[usize]) -> Result<()> {
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

    pub fn save(&self, path: &Path) -> Result<()> {
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
            ("format".to_string(), "mergevq-tokenset-1".to_string()),
            ("bits".to_string(), self.bits.to_string()),
            ("candidates".to_string(), cands),
            ("classes".to_string(), self.classes.to_string()),
        ]
        .into();
        crate::io::atomic::atomic_write(path, &safetensors::serialize(views, Some(meta))?)
    }

    /// Reads a token set [`save`](Self::save) wrote, checked: N images of L codes of `bits`
    /// bits, their group maps (each entry a kept token 0..K), K among the candidates and
    /// labels 0..classes.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read tokens {}", path.display()))?;
        let bad = |why: String| anyhow!("{} is not a mergevq token set (from extract-tokens): {why}", path.display());
        let (st, meta) = parse(&bytes).map_err(|e| bad(e.to_string()))?;
        if meta.get("format").map(|s| s.as_str()) != Some("mergevq-tokenset-1") {
            bail!(bad("missing format tag".into()));
        }
        Self::read_tables(&st, &meta).map_err(bad)
    }

    /// The tables and metadata of a token set, checked against each other.
    fn read_tables(st: &SafeTensors, meta: &HashMap<String, String>) -> Result<Self, String> {
        let (bits, classes) = (number(meta, "bits", 1, MAX_BITS)?, number(meta, "classes", 1, usize::MAX)?);
        let candidates = candidates(meta)?;
        let codes = rows(st, "codes", None)?;
        codes_fit(&codes, bits, "code")?;
        let n = codes.len();
        let labels = below(&column(st, "labels", n)?, classes, "label")?;
        let keep = column(st, "keep", n)?;
        let keep: Vec<usize> = below(&keep, usize::MAX, "kept count")?;
        if let Some(k) = keep.iter().find(|k| !candidates.contains(k)) {
            return Err(format!("kept count {k} is not among the candidates {candidates:?}"));
        }
        let group = rows(st, "group", Some(n))?
            .iter()
            .zip(&keep)
            .map(|(g, &k)| below(g, k, "group entry"))
            .collect::<Result<Vec<_>, _>>()?;
        if group.first().is_some_and(|g| g.len() != codes[0].len()) {
            return Err(format!("`group` has {} columns, `codes` {}", group[0].len(), codes[0].len()));
        }
        Ok(Self { bits, candidates, codes, group, keep, labels, classes })
    }
}

/// The kept counts K to draw from, with their cumulative probabilities: `keep` alone if given,
/// else the tokenizer's candidates up to L (or its one fixed K).
fn kept_candidates(tok: &Tokenizer, keep: Option<usize>) -> Result<(Vec<usize>, Vec<f64>)> {
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
fn draw_keep(seed: u64, i: usize, candidates: &[usize], cum_prob: &[f64]) -> usize {
    let u: f64 = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).random();
    candidates[cum_prob.partition_point(|&p| p < u).min(candidates.len() - 1)]
}
