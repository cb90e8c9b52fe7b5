//! PyTorch / Lightning checkpoints (`.ckpt`, `.pt`, `.pth`): the `state_dict` read from the
//! zip + pickle without executing it, with the EMA copies swapped in on request.
use crate::io::weights::HostTensor;
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Reads the `state_dict` of a PyTorch / Lightning checkpoint without executing its pickle.
/// With `ema`, `model_ema.<name without dots>` buffers replace the regular parameters.
pub fn read_checkpoint(path: &Path, ema: bool) -> Result<BTreeMap<String, HostTensor>> {
    use burn::store::pytorch_reader::{DType, PytorchReader};
    let reader = PytorchReader::with_top_level_key(path, "state_dict")
        .or_else(|_| PytorchReader::new(path))
        .map_err(|e| anyhow!("{} is not a readable PyTorch checkpoint: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for (name, t) in reader.into_tensors() {
        let shape = t.shape().to_vec();
        let dtype = t.dtype();
        let bytes = t.read().map_err(|e| anyhow!("cannot read tensor `{name}` from {}: {e}", path.display()))?;
        let data: Vec<f32> = match dtype {
            DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().unwrap())).collect(),
            DType::F64 => bytes.chunks_exact(8).map(|c| f64::from_ne_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::F16 => bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_ne_bytes([c[0], c[1]]))).collect(),
            DType::BF16 => {
                bytes.chunks_exact(2).map(|c| f32::from_bits((u16::from_ne_bytes([c[0], c[1]]) as u32) << 16)).collect()
            }
            DType::I64 => bytes.chunks_exact(8).map(|c| i64::from_ne_bytes(c.try_into().unwrap()) as f32).collect(),
            _ => continue,
        };
        map.insert(name, HostTensor { shape, data });
    }
    if ema && swap_in_ema(&mut map) == 0 {
        bail!("{} has no `model_ema.*` weights (trained without use_ema?)", path.display());
    }
    map.retain(|k, _| !k.starts_with("model_ema."));
    Ok(map)
}

/// Replaces each parameter by its `model_ema.<name without dots>` copy (Lightning's LitEma);
/// returns how many were replaced.
fn swap_in_ema(map: &mut BTreeMap<String, HostTensor>) -> usize {
    let ema_keys: HashMap<String, String> = map
        .keys()
        .filter(|k| !k.starts_with("model_ema."))
        .map(|k| (format!("model_ema.{}", k.replace('.', "")), k.clone()))
        .collect();
    let mut swapped = 0;
    for (ema_key, key) in &ema_keys {
        if let Some(t) = map.get(ema_key).cloned() {
            map.insert(key.clone(), t);
            swapped += 1;
        }
    }
    swapped
}

/// IEEE half → single precision, subnormals and inf/NaN included.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}
