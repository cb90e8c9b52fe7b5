//! Training checkpoints: one safetensors file with the model, its EMA, the discriminator and
//! both optimizers' moments under state-dict names, and the counters in its metadata. Written
//! atomically: a crash while saving leaves the previous checkpoint intact.
use super::config::RunConfig;
use crate::io::marker::{Format, Marker};
use crate::io::output::Outputs;
use crate::io::safetensors::{f32_values, parse};
use crate::io::weights::HostTensor;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub struct Checkpoint {
    /// Tensors by group ("model", "ema", "disc", "opt_g.m", …) and name.
    pub groups: BTreeMap<String, BTreeMap<String, HostTensor>>,
    pub meta: serde_json::Value,
}

impl Checkpoint {
    /// The metadata key that marks a checkpoint (a run replaces only a file carrying it).
    pub const MARKER: Marker = Marker { key: "mergevq_checkpoint", value: None, what: "mergevq training checkpoint" };

    /// Where a run keeps its checkpoint: `checkpoint.safetensors` in `run.out_dir`.
    pub fn path(run: &RunConfig) -> PathBuf {
        run.out_dir.join("checkpoint.safetensors")
    }

    /// The checkpoint to continue from with `--resume` (`None` without it); an error when the
    /// run has none.
    pub fn resume(run: &RunConfig, resume: bool) -> Result<Option<Self>> {
        if !resume {
            return Ok(None);
        }
        let p = Self::path(run);
        if !p.exists() {
            bail!("--resume: no checkpoint at {}", p.display());
        }
        Self::load(&p).map(Some)
    }

    /// Writes the checkpoint through `out` (atomically).
    pub fn save(&self, path: &Path, out: &Outputs) -> Result<()> {
        let mut flat: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (g, tensors) in &self.groups {
            for (name, t) in tensors {
                if let Some(v) = t.data.iter().find(|v| !v.is_finite()) {
                    bail!("refusing to save a checkpoint: `{g}/{name}` holds {v}");
                }
                flat.push((
                    format!("{g}/{name}"),
                    t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    t.shape.clone(),
                ));
            }
        }
        let views: Vec<(String, TensorView)> = flat
            .iter()
            .map(|(k, b, s)| Ok((k.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
            .collect::<Result<_, safetensors::SafeTensorError>>()?;
        let meta: HashMap<String, String> = [(Self::MARKER.key.to_string(), self.meta.to_string())].into();
        out.write(path, Format::Safetensors(Self::MARKER), &safetensors::serialize(views, Some(meta))?)
    }

    /// Reads a checkpoint [`save`](Self::save) wrote: f32 tensors named `<group>/<name>`,
    /// all finite, and the counters as a JSON object in the metadata.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let bad = |e: String| anyhow!("{} is not a mergevq training checkpoint: {e}", path.display());
        let (st, meta) = parse(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.get(Self::MARKER.key).ok_or_else(|| bad("no checkpoint metadata".into()))?;
        let meta: serde_json::Value = serde_json::from_str(meta).map_err(|e| bad(e.to_string()))?;
        if !meta.is_object() {
            return Err(bad(format!("its metadata `{meta}` is not a JSON object")));
        }
        let mut groups: BTreeMap<String, BTreeMap<String, HostTensor>> = BTreeMap::new();
        for (key, view) in st.tensors() {
            let (g, name) = key.split_once('/').ok_or_else(|| bad(format!("tensor `{key}` has no group")))?;
            let data = f32_values(&view).ok_or_else(|| bad(format!("tensor `{key}` is not f32")))?;
            if let Some(v) = data.iter().find(|v| !v.is_finite()) {
                return Err(bad(format!("tensor `{key}` holds {v}")));
            }
            groups
                .entry(g.to_string())
                .or_default()
                .insert(name.to_string(), HostTensor { shape: view.shape().to_vec(), data });
        }
        Ok(Self { groups, meta })
    }
}
