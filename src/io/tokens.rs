//! The tokens file `encode` writes and `decode` reads: safetensors with `indices` [B, K] and
//! `group` [B, L] (int64), and the codebook size and resolution in the metadata; and the token
//! set `extract-tokens` writes for AR training.
use crate::io::data::{Augment, Loader, Source};
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

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read tokens file {}", path.display()))?;
        let bad = |why: String| anyhow!("{} is not a mergevq tokens file: {why}", path.display());
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let num = |k: &str| -> Result<usize> {
            meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| bad(format!("no `{k}` in metadata")))
        };
        let rows = |name: &str| -> Result<Vec<Vec<i64>>> {
            let t = st.tensor(name).map_err(|_| bad(format!("no `{name}` tensor")))?;
            if t.dtype() != Dtype::I64 || t.shape().len() != 2 {
                bail!(bad(format!("`{name}` must be a 2-d int64 tensor")));
            }
            let v: Vec<i64> = t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
            Ok(v.chunks(t.shape()[1].max(1)).map(|c| c.to_vec()).collect())
        };
        let indices = rows("indices")?;
        let group: Vec<Vec<usize>> =
            rows("group")?.into_iter().map(|r| r.into_iter().map(|v| v.max(0) as usize).collect()).collect();
        if indices.len() != group.len() || indices.is_empty() {
            bail!(bad("indices and group disagree on the number of images".into()));
        }
        Ok(Self { bits: num("bits")?, resolution: num("resolution")?, indices, group })
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

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read tokens {}", path.display()))?;
        let bad = |why: String| anyhow!("{} is not a mergevq token set (from extract-tokens): {why}", path.display());
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(|s| s.as_str()) != Some("mergevq-tokenset-1") {
            bail!(bad("missing format tag".into()));
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let get = |name: &str| -> Result<(Vec<i64>, Vec<usize>)> {
            let t = st.tensor(name).map_err(|_| bad(format!("no `{name}`")))?;
            if t.dtype() != Dtype::I64 {
                bail!(bad(format!("`{name}` must be int64")));
            }
            Ok((
                t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
                t.shape().to_vec(),
            ))
        };
        let (codes, shape) = get("codes")?;
        let (group, _) = get("group")?;
        let (keep, _) = get("keep")?;
        let (labels, _) = get("labels")?;
        let l = shape.get(1).copied().unwrap_or(0).max(1);
        let num = |k: &str| -> Result<usize> {
            meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| bad(format!("no `{k}`")))
        };
        Ok(Self {
            bits: num("bits")?,
            classes: num("classes")?,
            candidates: meta
                .get("candidates")
                .map(|c| c.split(',').filter_map(|v| v.parse().ok()).collect())
                .unwrap_or_default(),
            codes: codes.chunks(l).map(|c| c.to_vec()).collect(),
            group: group.chunks(l).map(|c| c.iter().map(|&g| g as usize).collect()).collect(),
            keep: keep.into_iter().map(|k| k as usize).collect(),
            labels: labels.into_iter().map(|k| k as usize).collect(),
        })
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
