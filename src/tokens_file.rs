//! The tokens file `encode` writes and `decode` reads: safetensors with `indices` [B, K] and
//! `group` [B, L] (int64), and the codebook size and resolution in the metadata.
use anyhow::{anyhow, bail, Context, Result};
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
    pub fn save(&self, path: &Path) -> Result<()> {
        let b = self.indices.len();
        let (k, l) = (self.indices[0].len(), self.group[0].len());
        let idx: Vec<u8> = self.indices.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        let grp: Vec<u8> = self.group.iter().flatten().flat_map(|&v| (v as i64).to_le_bytes()).collect();
        let views = vec![
            ("indices".to_string(), TensorView::new(Dtype::I64, vec![b, k], &idx)?),
            ("group".to_string(), TensorView::new(Dtype::I64, vec![b, l], &grp)?),
        ];
        let meta: HashMap<String, String> = [("bits".to_string(), self.bits.to_string()), ("resolution".to_string(), self.resolution.to_string()), ("format".to_string(), "mergevq-tokens-1".to_string())].into();
        crate::weights::atomic_write(path, &safetensors::serialize(views, Some(meta))?)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read tokens file {}", path.display()))?;
        let bad = |why: String| anyhow!("{} is not a mergevq tokens file: {why}", path.display());
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let num = |k: &str| -> Result<usize> { meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| bad(format!("no `{k}` in metadata"))) };
        let rows = |name: &str| -> Result<Vec<Vec<i64>>> {
            let t = st.tensor(name).map_err(|_| bad(format!("no `{name}` tensor")))?;
            if t.dtype() != Dtype::I64 || t.shape().len() != 2 {
                bail!(bad(format!("`{name}` must be a 2-d int64 tensor")));
            }
            let v: Vec<i64> = t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
            Ok(v.chunks(t.shape()[1].max(1)).map(|c| c.to_vec()).collect())
        };
        let indices = rows("indices")?;
        let group: Vec<Vec<usize>> = rows("group")?.into_iter().map(|r| r.into_iter().map(|v| v.max(0) as usize).collect()).collect();
        if indices.len() != group.len() || indices.is_empty() {
            bail!(bad("indices and group disagree on the number of images".into()));
        }
        Ok(Self { bits: num("bits")?, resolution: num("resolution")?, indices, group })
    }
}
