//! Alignment of the encoder's [CLS] head (MergeVQ §3.2): label-smoothed cross-entropy with
//! class labels (the offline default), or knowledge distillation (KL, temperature T) to a
//! teacher's features.
use anyhow::{anyhow, bail, Result};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use std::path::Path;

/// A teacher's [CLS] features, one row of `dim` values per training image (data-set order).
pub struct Teacher {
    features: Vec<f32>,
    dim: usize,
}

impl Teacher {
    /// Reads the `features` tensor [N, D] of a safetensors file; N must be `images`.
    pub fn load(path: &Path, images: usize) -> Result<Self> {
        let m = crate::io::safetensors::read_safetensors(path)?;
        let f = m.get("features").ok_or_else(|| anyhow!("{} has no `features` tensor", path.display()))?;
        if f.shape.len() != 2 || f.shape[0] != images {
            bail!("teacher features {} must be [N={images}, D], got {:?}", path.display(), f.shape);
        }
        Ok(Self { features: f.data.clone(), dim: f.shape[1] })
    }

    /// The features of the images `indices`, [B, D].
    fn rows(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let d = self.dim;
        let t: Vec<f32> = indices.iter().flat_map(|&i| self.features[i * d..(i + 1) * d].iter().copied()).collect();
        Tensor::from_data(TensorData::new(t, [indices.len(), d]), device)
    }
}

/// The alignment term of a batch's [CLS] head [B, classes]: KL (T = 4) to the teacher's
/// features of the images `indices`, or without a teacher label-smoothed CE (ε = `eps`) with
/// their `labels`.
pub fn alignment(
    head: Tensor<2>,
    teacher: Option<&Teacher>,
    indices: &[usize],
    labels: &[usize],
    eps: f64,
) -> Result<Tensor<1>> {
    let [_, classes] = head.dims();
    match teacher {
        Some(t) => {
            if t.dim != classes {
                bail!("teacher features have {} dims, the [CLS] head {classes} (set num_classes)", t.dim);
            }
            let target = t.rows(indices, &head.device());
            Ok(distill_kl(head, target, 4.0))
        }
        None => {
            if let Some(bad) = labels.iter().find(|&&c| c >= classes) {
                bail!("label {bad} is outside the {classes} classes of the [CLS] head (set num_classes)");
            }
            Ok(label_smoothed_ce(head, labels, eps))
        }
    }
}

/// (1 − ε)·(−log p_y) + ε·mean_k(−log p_k), averaged over the batch.
pub fn label_smoothed_ce(logits: Tensor<2>, labels: &[usize], eps: f64) -> Tensor<1> {
    let [_, classes] = logits.dims();
    let onehot = crate::nn::one_hot(labels, classes, &logits.device());
    let logp = log_softmax(logits, 1);
    let nll = (logp.clone() * onehot).sum_dim(1).neg();
    let smooth = logp.mean_dim(1).neg();
    (nll * (1.0 - eps) + smooth * eps).mean()
}

/// T²·KL(softmax(teacher/T) ‖ softmax(student/T)), summed over classes, averaged over the batch.
pub fn distill_kl(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [b, _] = student.dims();
    let p = softmax(teacher.clone() / temperature, 1);
    let logp_t = log_softmax(teacher / temperature, 1);
    let logp_s = log_softmax(student / temperature, 1);
    (p * (logp_t - logp_s)).sum() / b as f64 * (temperature * temperature)
}
