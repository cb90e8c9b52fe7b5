//! Alignment of the encoder's [CLS] head (MergeVQ §3.2): label-smoothed cross-entropy with
//! class labels (the offline default), or knowledge distillation (KL, temperature T) to a
//! teacher's features.
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

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
