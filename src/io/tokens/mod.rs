//! Token files. The tokens file `encode` writes and `decode` reads: safetensors with `indices`
//! [B, K] and `group` [B, L] (int64), and the codebook size and resolution in the metadata; and
//! the token set `extract-tokens` writes for AR training ([`TokenSet`]). Both are checked entry
//! by entry when loaded and before saving (see `check`): a file that loads can be used without
//! further checks.
mod check;
mod set;
mod shards;

pub use set::TokenSet;
pub use shards::{extract_shards, Extraction, ShardReport};

use crate::io::marker::{Format, Marker};
use crate::io::output::Outputs;
use crate::tokenizer::Tokenizer;
use anyhow::{anyhow, bail, Context, Result};
use check::{check_bits, check_codes, check_group, check_len, check_square, meta_num, read_i64, rows, to_groups};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

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
    /// The marker of a tokens file (`encode` replaces only a file carrying it).
    pub const MARKER: Marker = Marker::format("mergevq-tokens-1", "mergevq tokens file (from encode)");

    /// Writes the file through `out` after checking it (see [`TokensFile::validate`]).
    pub fn save(&self, path: &Path, out: &Outputs) -> Result<()> {
        self.validate().with_context(|| format!("tokens for {} are inconsistent", path.display()))?;
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
            Self::MARKER.entry(),
        ]
        .into();
        out.write(path, Format::Safetensors(Self::MARKER), &safetensors::serialize(views, Some(meta))?)
    }

    /// Reads and checks a tokens file; an error names the file and the first entry at fault.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read tokens file {}", path.display()))?;
        let bad = |e: anyhow::Error| anyhow!("{} is not a mergevq tokens file: {e}", path.display());
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.into()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.into()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let file = Self::parse(&st, &meta).map_err(bad)?;
        file.validate().map_err(|e| anyhow!("tokens file {} is invalid: {e}", path.display()))?;
        Ok(file)
    }

    /// The fields of the file, unchecked.
    fn parse(st: &SafeTensors, meta: &HashMap<String, String>) -> Result<Self> {
        let (idx, idx_shape) = read_i64(st, "indices", 2)?;
        let (grp, grp_shape) = read_i64(st, "group", 2)?;
        Ok(Self {
            bits: meta_num(meta, "bits")?,
            resolution: meta_num(meta, "resolution")?,
            indices: rows(&idx, &idx_shape, "indices")?,
            group: to_groups(rows(&grp, &grp_shape, "group")?)?,
        })
    }

    /// Checks the file is whole and consistent: at least one image; as many group maps as
    /// index rows; K and L square grids with K ≤ L, the same for every image; every index in
    /// the codebook (0..2^bits) and every group entry a kept token (0..K).
    pub fn validate(&self) -> Result<()> {
        check_bits(self.bits)?;
        if self.resolution == 0 {
            bail!("resolution is 0");
        }
        let (Some(first), Some(first_group)) = (self.indices.first(), self.group.first()) else {
            bail!("it holds no images");
        };
        if self.indices.len() != self.group.len() {
            bail!("{} rows of `indices` but {} of `group`", self.indices.len(), self.group.len());
        }
        let (k, l) = (first.len(), first_group.len());
        check_square(k, "K")?;
        check_square(l, "L")?;
        if k > l {
            bail!("K = {k} kept tokens is more than L = {l} grid positions");
        }
        check_len(&self.indices, k, "indices")?;
        check_len(&self.group, l, "group")?;
        check_codes(&self.indices, self.bits, "indices")?;
        self.group.iter().enumerate().try_for_each(|(i, g)| check_group(i, g, k))
    }

    /// Checks the file was made by a tokenizer like `tok` (same code bits, L and resolution);
    /// `path` names it in the error.
    pub fn check_fits(&self, tok: &Tokenizer, path: &Path) -> Result<()> {
        let (bits, l, res) = (tok.cfg.embed_dim, tok.full_len(), tok.cfg.ddconfig.resolution);
        let p = path.display();
        if self.bits != bits {
            bail!("{p} holds {}-bit codes but the tokenizer uses {bits} bits (another tokenizer?)", self.bits);
        }
        if self.group[0].len() != l {
            bail!("{p} has L={} tokens per image, the tokenizer makes L={l}", self.group[0].len());
        }
        if self.resolution != res {
            bail!("{p} is for {0}×{0} images, the tokenizer makes {res}×{res}", self.resolution);
        }
        Ok(())
    }
}
