//! PyTorch / Lightning checkpoints (`.ckpt`, `.pt`, `.pth`): the `state_dict` read from the
//! zip + pickle without executing it, with the EMA copies swapped in on request.
use crate::io::guard::guarded_decode;
use crate::io::weights::HostTensor;
use anyhow::{anyhow, bail, Result};
use burn::store::pytorch_reader::DType;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Reads the `state_dict` of a PyTorch / Lightning checkpoint without executing its pickle.
/// With `ema`, `model_ema.<name without dots>` buffers replace the regular parameters. The
/// zip and pickle reader runs behind [`guarded_decode`]: a malformed file is an error.
pub fn read_checkpoint(path: &Path, ema: bool) -> Result<BTreeMap<String, HostTensor>> {
    let mut map = guarded_decode(path, || read_tensors(path))?;
    if ema && swap_in_ema(&mut map) == 0 {
        bail!("{} has no `model_ema.*` weights (trained without use_ema?)", path.display());
    }
    map.retain(|k, _| !k.starts_with("model_ema."));
    Ok(map)
}

/// Every tensor of the checkpoint (under `state_dict` when it has one), as f32.
fn read_tensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    use burn::store::pytorch_reader::PytorchReader;
    let reader = PytorchReader::with_top_level_key(path, "state_dict")
        .or_else(|_| PytorchReader::new(path))
        .map_err(|e| anyhow!("{} is not a readable PyTorch checkpoint: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for (name, t) in reader.into_tensors() {
        let bytes = t.read().map_err(|e| anyhow!("cannot read tensor `{name}` from {}: {e}", path.display()))?;
        let data = to_f32(t.dtype(), &bytes);
        if data.len() != t.num_elements() {
            bail!("tensor `{name}` in {} holds {} values for shape {:?}", path.display(), data.len(), t.shape());
        }
        map.insert(name, HostTensor { shape: t.shape().to_vec(), data });
    }
    Ok(map)
}

/// Native-endian tensor bytes of any checkpoint dtype as f32 (integers and booleans converted).
fn to_f32(dtype: DType, b: &[u8]) -> Vec<f32> {
    fn each<const N: usize>(b: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        b.chunks_exact(N).map(|c| f(c.try_into().expect("chunks_exact gives N bytes"))).collect()
    }
    match dtype {
        DType::F64 => each(b, |c| f64::from_ne_bytes(c) as f32),
        DType::F32 => each(b, f32::from_ne_bytes),
        DType::F16 => each(b, |c| f16_to_f32(u16::from_ne_bytes(c))),
        DType::BF16 => each(b, |c| f32::from_bits((u16::from_ne_bytes(c) as u32) << 16)),
        DType::I64 => each(b, |c| i64::from_ne_bytes(c) as f32),
        DType::I32 => each(b, |c| i32::from_ne_bytes(c) as f32),
        DType::I16 => each(b, |c| i16::from_ne_bytes(c) as f32),
        DType::I8 => each(b, |c: [u8; 1]| c[0] as i8 as f32),
        DType::U64 => each(b, |c| u64::from_ne_bytes(c) as f32),
        DType::U32 => each(b, |c| u32::from_ne_bytes(c) as f32),
        DType::U16 => each(b, |c| u16::from_ne_bytes(c) as f32),
        DType::U8 | DType::Bool => each(b, |c: [u8; 1]| c[0] as f32),
    }
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
