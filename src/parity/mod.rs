//! Runs golden cases made from the authors' PyTorch code (case.json + weights.safetensors +
//! tensors.safetensors) through this crate and compares every output.
mod ar;
mod compare;
mod eval;
mod losses;
mod tokenizer;
mod tome;

use crate::io::safetensors::{read_safetensors_typed, TypedTensor};
use crate::io::weights::{HostTensor, Weights};
use anyhow::{anyhow, bail, Context, Result};
use burn::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Case {
    pub dir: PathBuf,
    pub name: String,
    pub symbol: String,
    pub config: Value,
    pub atol: f64,
    pub rtol: f64,
    pub json: Value,
    tensors: BTreeMap<String, TypedTensor>,
    device: Device,
}

/// One output the code produced; `exact` outputs must match bit for bit.
pub struct Got {
    pub name: String,
    pub value: TypedTensor,
    pub exact: bool,
}

pub struct Outcome {
    pub name: String,
    pub pass: bool,
    pub max_abs_err: f64,
    pub worst: String,
    pub failures: Vec<String>,
}

impl Case {
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let path = dir.join("case.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        let reference = json["reference"].as_str().ok_or_else(|| anyhow!("{}: no `reference`", path.display()))?;
        let symbol = reference.split(';').next().unwrap_or("").split(':').nth(1).unwrap_or("").trim().to_string();
        let tensors_path = dir.join("tensors.safetensors");
        let tensors = if tensors_path.exists() { read_safetensors_typed(&tensors_path)? } else { BTreeMap::new() };
        Ok(Self {
            dir: dir.to_path_buf(),
            name: json["name"].as_str().unwrap_or("?").to_string(),
            symbol,
            config: json["config"].clone(),
            atol: json["tolerance"]["atol"].as_f64().unwrap_or(0.0),
            rtol: json["tolerance"]["rtol"].as_f64().unwrap_or(0.0),
            json,
            tensors,
            device: device.clone(),
        })
    }

    fn input(&self, name: &str) -> Result<HostTensor> {
        self.tensors
            .get(&format!("in.{name}"))
            .cloned()
            .map(TypedTensor::to_f32)
            .ok_or_else(|| anyhow!("case has no input `in.{name}`"))
    }

    fn tensor<const D: usize>(&self, name: &str) -> Result<Tensor<D>> {
        to_tensor(self.input(name)?, &self.device)
    }

    /// The case's weights: weights.safetensors plus the tensors listed in `generated_weights`.
    fn weights(&self) -> Result<Weights> {
        let path = self.dir.join("weights.safetensors");
        let mut map = if path.exists() { crate::io::safetensors::read_safetensors(&path)? } else { BTreeMap::new() };
        for g in self.json["generated_weights"]["tensors"].as_array().into_iter().flatten() {
            let name = g["name"].as_str().ok_or_else(|| anyhow!("generated weight without a name"))?;
            let shape: Vec<usize> = ints(&g["shape"]).into_iter().map(|v| v as usize).collect();
            let data = generated(
                g["seed"].as_u64().unwrap_or(0),
                shape.iter().product(),
                g["lo"].as_f64().unwrap_or(0.0),
                g["hi"].as_f64().unwrap_or(0.0),
            );
            let sum: f64 = data.iter().map(|&v| v as f64).sum();
            if let Some(want) = g["check_sum_f64"].as_f64() {
                if (sum - want).abs() > 1e-6 * want.abs().max(1.0) {
                    bail!("generated weight {name}: checksum {sum} != {want}");
                }
            }
            map.insert(name.to_string(), HostTensor { shape, data });
        }
        Ok(Weights::from_map(map, &self.device))
    }

    /// Runs the case and compares. Errors mean the case could not be run at all.
    pub fn run(&self) -> Result<Outcome> {
        if self.symbol.starts_with("parse_r") {
            return self.run_schedule();
        }
        let got = match self.symbol.as_str() {
            "bipartite_soft_matching" => self.tome_merge()?,
            "LFQ" => self.lfq()?,
            "MergeVQEncoder" => self.encoder()?,
            "MergeVQDecoder" => self.decoder()?,
            "SourceRecovery" => self.source_recovery()?,
            "token_unmerge" => self.token_unmerge()?,
            "MergeVQModel.encode+decode" => self.tokenizer()?,
            "LPIPS" => self.lpips()?,
            "NLayerDiscriminator" => self.discriminator()?,
            "GPT" => self.gpt()?,
            "InceptionV3" => self.inception()?,
            other => bail!("case kind `{other}` is not implemented"),
        };
        Ok(self.compare(got))
    }
}

/// The golden README's weight generator: splitmix64 of seed + (i+1)·φ, top 24 bits, mapped
/// to [lo, hi) in f64 and rounded once to f32.
pub fn generated(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let k = z >> 40;
            (lo + (hi - lo) * (k as f64 * 2f64.powi(-24))) as f32
        })
        .collect()
}

/// Whether an error is within a tolerance (never for NaN).
fn within(err: f64, tol: f64) -> bool {
    err <= tol
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_i64()).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_f64()).collect()
}

pub fn to_tensor<const D: usize>(h: HostTensor, device: &Device) -> Result<Tensor<D>> {
    if h.shape.len() != D {
        bail!("expected a {D}-d tensor, got shape {:?}", h.shape);
    }
    Ok(Tensor::from_data(TensorData::new(h.data, h.shape), device))
}

fn got<const D: usize>(name: String, t: Tensor<D>, exact: bool) -> Got {
    let shape = t.dims().to_vec();
    let data = crate::io::readback::floats(t);
    Got { name, value: TypedTensor::F32(HostTensor { shape, data }), exact }
}

fn int(name: &str, v: &[i64]) -> Got {
    Got { name: name.into(), value: TypedTensor::I64 { shape: vec![v.len()], data: v.to_vec() }, exact: true }
}
