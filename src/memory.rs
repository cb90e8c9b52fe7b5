//! Memory estimates made from a config before any weight is allocated, and the check that
//! refuses a model the machine cannot hold (instead of an abort on a failed allocation).
//!
//! The estimate is deliberately simple: parameters × 4 bytes (f32), times 5 when training
//! (weights, gradients, Adam's two moments, EMA); activations: the largest feature map at the
//! batch size × [`INFERENCE_FACTOR`] for inference, the sum of the maps every layer keeps for the
//! backward pass × [`TRAINING_FACTOR`] for training. It is meant to be right within a factor of
//! two — enough to tell a laptop-sized model from one that cannot fit.
use anyhow::{bail, Result};

/// Live copies of the largest feature map during an inference pass (input, output, norm and
/// activation temporaries).
pub const INFERENCE_FACTOR: f64 = 6.0;
/// Tensors a layer keeps per output map for the backward pass (norm, activation, conv input).
pub const TRAINING_FACTOR: f64 = 4.0;
/// Copies of every parameter while training: weights, gradients, two Adam moments, EMA.
pub const TRAINING_PARAM_COPIES: f64 = 5.0;

/// What the model is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Inference,
    Training,
}

/// An estimate of the memory a model needs, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    pub parameters: f64,
    pub activations: f64,
    pub batch: usize,
}

const GIB: f64 = (1u64 << 30) as f64;

impl Estimate {
    /// From a parameter count and the f32 values of activations (already at `batch`).
    pub fn new(params: f64, activation_values: f64, batch: usize, usage: Use) -> Self {
        let copies = if usage == Use::Training { TRAINING_PARAM_COPIES } else { 1.0 };
        Self { parameters: params * 4.0 * copies, activations: activation_values * 4.0, batch }
    }

    /// Two models held together (e.g. a tokenizer and a GPT).
    pub fn plus(self, other: Estimate) -> Self {
        Self {
            parameters: self.parameters + other.parameters,
            activations: self.activations.max(other.activations),
            batch: self.batch.max(other.batch),
        }
    }

    pub fn total(&self) -> f64 {
        self.parameters + self.activations
    }

    /// Refuses an estimate above the available memory (unless `allow_large`), with the numbers.
    pub fn check(&self, allow_large: bool) -> Result<()> {
        match available_bytes() {
            Some(avail) if !allow_large => self.check_against(avail as f64),
            _ => Ok(()),
        }
    }

    /// Refuses an estimate above `available` bytes.
    pub fn check_against(&self, available: f64) -> Result<()> {
        if self.total() > available {
            bail!(
                "the model needs ≈ {:.1} GiB for parameters + {:.1} GiB for activations at batch {}; \
                 {:.1} GiB available; pass --allow-large to try anyway",
                self.parameters / GIB,
                self.activations / GIB,
                self.batch,
                available / GIB
            );
        }
        Ok(())
    }
}

/// MemAvailable of /proc/meminfo in bytes; `None` where there is no such file (other OSes).
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_above_available_with_the_numbers() {
        let e = Estimate::new(GIB, GIB / 2.0, 8, Use::Inference);
        let msg = e.check_against(GIB).unwrap_err().to_string();
        assert!(msg.contains("≈ 4.0 GiB for parameters + 2.0 GiB for activations at batch 8"), "{msg}");
        assert!(msg.contains("1.0 GiB available") && msg.contains("--allow-large"), "{msg}");
        assert!(e.check_against(10.0 * GIB).is_ok());
        assert!(e.check(true).is_ok());
    }
}
