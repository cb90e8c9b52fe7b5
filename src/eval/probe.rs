//! Linear probing (the MAE protocol): frozen features, a parameter-free BatchNorm
//! (standardisation with the training set's statistics) and one linear layer trained with
//! AdamW and a cosine schedule; reports top-1 accuracy.
use crate::io::data::{Loader, Source};
use crate::io::marker::Marker;
use crate::io::output::Outputs;
use crate::io::safetensors::{read_safetensors, write_safetensors};
use crate::io::weights::HostTensor;
use crate::tokenizer::Tokenizer;
use crate::train::optim::{Adam, Schedule};
use anyhow::{bail, Result};
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Features of one split: [CLS] and mean-pooled merged tokens per image, and labels.
pub struct Features {
    pub cls: Vec<Vec<f32>>,
    pub pooled: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
}

/// The features of both splits, as cached between probe runs: safetensors with
/// `{train,val}_{cls,pooled}` [N, D], `{train,val}_labels` [N] and `key` (the bytes of a string
/// naming what produced the features; a cache made for another key is not used).
pub struct SplitFeatures {
    pub train: Features,
    pub val: Features,
}

impl SplitFeatures {
    /// Reads a cache written for `key`; `None` when it is missing, unreadable or for another key.
    pub fn load(path: &Path, key: &str) -> Option<Self> {
        let m = read_safetensors(path).ok()?;
        let stored: String = m.get("key")?.data.iter().map(|&c| c as u8 as char).collect();
        if stored != key {
            return None;
        }
        let split = |s: &str| -> Option<Features> {
            Some(Features {
                cls: rows(m.get(&format!("{s}_cls"))?),
                pooled: rows(m.get(&format!("{s}_pooled"))?),
                labels: m.get(&format!("{s}_labels"))?.data.iter().map(|&v| v as usize).collect(),
            })
        };
        Some(Self { train: split("train")?, val: split("val")? })
    }

    /// The marker of a feature cache (`probe` replaces only a file carrying it).
    pub const MARKER: Marker = Marker::format("mergevq-probe-features-1", "mergevq probe feature cache");

    /// Writes the cache under `key` through `out`.
    pub fn save(&self, path: &Path, key: &str, out: &Outputs) -> Result<()> {
        let mut m = BTreeMap::new();
        for (s, f) in [("train", &self.train), ("val", &self.val)] {
            m.insert(format!("{s}_cls"), matrix(&f.cls));
            m.insert(format!("{s}_pooled"), matrix(&f.pooled));
            let labels = f.labels.iter().map(|&v| v as f32).collect();
            m.insert(format!("{s}_labels"), HostTensor { shape: vec![f.labels.len()], data: labels });
        }
        m.insert("key".into(), HostTensor { shape: vec![key.len()], data: key.bytes().map(f32::from).collect() });
        write_safetensors(path, &m, Self::MARKER, out)
    }
}

/// Rows of equal length → one [N, D] tensor.
fn matrix(rows: &[Vec<f32>]) -> HostTensor {
    HostTensor { shape: vec![rows.len(), rows.first().map_or(0, Vec::len)], data: rows.concat() }
}

/// A [N, D] tensor → its N rows.
fn rows(t: &HostTensor) -> Vec<Vec<f32>> {
    t.data.chunks(t.shape.get(1).copied().unwrap_or(1).max(1)).map(<[f32]>::to_vec).collect()
}

/// [CLS] and mean-pooled features of the first `n` images of `source` (in order, centre
/// crops), `batch` at a time; `progress` is called with the images done.
pub fn extract(
    tok: &Tokenizer,
    source: Arc<dyn Source>,
    n: usize,
    batch: usize,
    progress: &dyn Fn(u64),
) -> Result<Features> {
    let device = tok.device();
    let res = tok.cfg.ddconfig.resolution;
    let loader = Loader::in_order(source.clone(), res as u32, tok.cfg.preprocess, batch);
    let n = n.min(source.len());
    let mut f = Features { cls: vec![], pooled: vec![], labels: vec![] };
    let rows = |t: Tensor<2>| -> Vec<Vec<f32>> {
        let [b, d] = t.dims();
        let v = crate::io::readback::floats(t);
        (0..b).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
    };
    for k in 0..n.div_ceil(batch) {
        let b = loader.batch_in_order(k);
        if b.size == 0 {
            continue;
        }
        let x = Tensor::<4>::from_data(TensorData::new(b.images, [b.size, 3, res, res]), &device);
        let (c, p) = tok.encoder.probe_features(x, &tok.plan)?;
        f.cls.extend(rows(c));
        f.pooled.extend(rows(p));
        f.labels.extend(b.labels);
        progress(b.size as u64);
    }
    f.cls.truncate(n);
    f.pooled.truncate(n);
    f.labels.truncate(n);
    Ok(f)
}

#[derive(Module, Debug)]
struct Head {
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

/// Trains the probe on (train_x, train_y) and returns top-1 accuracy on (val_x, val_y).
#[allow(clippy::too_many_arguments)]
pub fn linear_probe(
    train_x: &[Vec<f32>],
    train_y: &[usize],
    val_x: &[Vec<f32>],
    val_y: &[usize],
    classes: usize,
    epochs: usize,
    lr: f64,
    seed: u64,
) -> Result<f64> {
    if train_x.is_empty() || val_x.is_empty() {
        bail!("linear probing needs training and validation images");
    }
    let d = train_x[0].len();
    let n = train_x.len() as f64;
    let mean: Vec<f64> = (0..d).map(|j| train_x.iter().map(|r| r[j] as f64).sum::<f64>() / n).collect();
    let std: Vec<f64> = (0..d)
        .map(|j| (train_x.iter().map(|r| (r[j] as f64 - mean[j]).powi(2)).sum::<f64>() / n + 1e-6).sqrt())
        .collect();
    let norm = |rows: &[Vec<f32>]| -> Vec<f32> {
        rows.iter()
            .flat_map(|r| (0..d).map(|j| ((r[j] as f64 - mean[j]) / std[j]) as f32).collect::<Vec<_>>())
            .collect()
    };
    let (tx, vx) = (norm(train_x), norm(val_x));
    let device = crate::device().autodiff();
    let mut head = Head {
        weight: Param::from_data(TensorData::new(vec![0f32; classes * d], [d, classes]), &device),
        bias: Param::from_data(TensorData::new(vec![0f32; classes], [classes]), &device),
    };
    let mut opt = Adam::new((0.9, 0.999), 0.0, true);
    let batch = 256.min(train_x.len());
    let steps_per_epoch = train_x.len().div_ceil(batch);
    let total = epochs * steps_per_epoch;
    let schedule = Schedule::WarmupCosine { warmup: steps_per_epoch, min_lr: 0.0 };
    let mut order: Vec<usize> = (0..train_x.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut step = 0;
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(batch) {
            let b = chunk.len();
            let x: Vec<f32> = chunk.iter().flat_map(|&i| tx[i * d..(i + 1) * d].iter().copied()).collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [b, d]), &device);
            let y = crate::nn::one_hot(&chunk.iter().map(|&i| train_y[i]).collect::<Vec<_>>(), classes, &device);
            let logits = x.matmul(head.weight.val()) + head.bias.val().unsqueeze();
            let loss = (log_softmax(logits, 1) * y).sum().neg() / b as f64;
            let mut grads = GradientsParams::from_grads(loss.backward(), &head);
            head = opt.step(head, &mut grads, schedule.lr(lr, step, total), 1.0);
            step += 1;
        }
    }
    let x = Tensor::<2>::from_data(TensorData::new(vx, [val_x.len(), d]), &device);
    let pred = crate::io::readback::ints((x.matmul(head.weight.val()) + head.bias.val().unsqueeze()).argmax(1));
    let correct = pred.iter().zip(val_y).filter(|(p, y)| **p as usize == **y).count();
    Ok(correct as f64 / val_y.len() as f64)
}
