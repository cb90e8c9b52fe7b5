//! safetensors files: named tensors read as f32 or kept exact as integers, and written as f32.
use crate::io::marker::{Format, Marker};
use crate::io::output::Outputs;
use crate::io::weights::HostTensor;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A tensor read from a file, keeping integer tensors exact.
#[derive(Clone, Debug)]
pub enum TypedTensor {
    F32(HostTensor),
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl TypedTensor {
    pub fn to_f32(self) -> HostTensor {
        match self {
            TypedTensor::F32(t) => t,
            TypedTensor::I64 { shape, data } => {
                HostTensor { shape, data: data.into_iter().map(|v| v as f32).collect() }
            }
        }
    }
}

/// Whether `path` holds a safetensors file (rather than a PyTorch checkpoint), by its first bytes.
pub fn is_safetensors(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open weights {}", path.display()))?;
    let mut head = [0u8; 9];
    let n = f.read(&mut head).with_context(|| format!("cannot read {}", path.display()))?;
    // A zip (PyTorch >= 1.6) starts with "PK"; a legacy pickle with 0x80; safetensors with a u64 length then '{'.
    Ok(n == 9 && head[8] == b'{')
}

/// Reads every tensor of a safetensors file as f32 (integers are converted).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    Ok(read_safetensors_typed(path)?.into_iter().map(|(k, v)| (k, v.to_f32())).collect())
}

/// Reads every tensor of a safetensors file: floats as f32, integers as i64.
pub fn read_safetensors_typed(path: &Path) -> Result<BTreeMap<String, TypedTensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (st, _) = parse(&bytes).map_err(|e| anyhow!("{} is not a valid safetensors file: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let Some(t) = typed(shape, view.dtype(), view.data()) else {
            bail!("tensor `{name}` in {} has unsupported dtype {:?}", path.display(), view.dtype());
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// Parses safetensors `bytes` into its tensors and its metadata strings (empty without any).
/// The crate checks the header against the bytes (sizes, offsets, shapes that overflow).
pub fn parse(bytes: &[u8]) -> Result<(SafeTensors<'_>, HashMap<String, String>), SafeTensorError> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    Ok((SafeTensors::deserialize(bytes)?, header.metadata().clone().unwrap_or_default()))
}

/// The values of an f32 tensor; `None` for another dtype.
pub fn f32_values(view: &TensorView) -> Option<Vec<f32>> {
    match typed(view.shape().to_vec(), view.dtype(), view.data())? {
        TypedTensor::F32(t) if view.dtype() == Dtype::F32 => Some(t.data),
        _ => None,
    }
}

/// Decodes little-endian tensor bytes; `None` for a dtype we do not read.
fn typed(shape: Vec<usize>, dtype: Dtype, b: &[u8]) -> Option<TypedTensor> {
    Some(match dtype {
        Dtype::F32 => TypedTensor::F32(HostTensor {
            shape,
            data: b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        }),
        Dtype::F64 => TypedTensor::F32(HostTensor {
            shape,
            data: b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        }),
        Dtype::I64 => TypedTensor::I64 {
            shape,
            data: b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        },
        Dtype::I32 => TypedTensor::I64 {
            shape,
            data: b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
        },
        _ => return None,
    })
}

/// Weights written by this program (`init`, the trainers' EMA exports).
pub const WEIGHTS: Marker = Marker::format("mergevq-weights-1", "mergevq weights file");

/// Writes named f32 tensors as safetensors with `marker` in the metadata, through `out`
/// (which replaces only a file with the same marker).
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    marker: Marker,
    out: &Outputs,
) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| Ok((k.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let meta: HashMap<String, String> = [marker.entry()].into();
    out.write(path, Format::Safetensors(marker), &safetensors::serialize(views, Some(meta))?)
}
