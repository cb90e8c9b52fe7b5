//! The generator side of the tokenizer loss (taming VQLPIPSWithDiscriminator, optimizer_idx 0;
//! MergeVQ §3): reconstruction + perceptual (nll) and adversarial terms on the image, LFQ
//! entropy and commitment on the codes, and the source-recovery BCE, as named weighted terms.
use super::gan::{hinge_g_loss, non_saturating_g_loss, Discriminator};
use super::lpips::Lpips;
use crate::nn::Conv2d;
use crate::tokenizer::lfq::LfqLosses;
use crate::train::config::{AdvLoss, LossConfig, Reconstruction};
use burn::prelude::*;

/// One named loss term: a scalar and its weight in the total (0: logged only).
pub struct Term {
    pub name: &'static str,
    pub value: Tensor<1>,
    pub weight: f64,
}

impl Term {
    pub fn new(name: &'static str, value: Tensor<1>, weight: f64) -> Self {
        Self { name, value, weight }
    }
}

/// Σ weight · value, summed in the terms' order; `None` without terms.
pub fn weighted_sum(terms: &[Term]) -> Option<Tensor<1>> {
    terms.iter().map(|t| t.value.clone() * t.weight).reduce(|a, b| a + b)
}

/// One reconstruction and what its losses need: the input x and the decoder output x̂
/// [B, 3, H, W], and the input of the decoder's last conv (for the adaptive weight).
pub struct Decoded {
    pub x: Tensor<4>,
    pub rec: Tensor<4>,
    pub last_in: Tensor<4>,
}

/// The image terms of a step, and the adaptive generator weight when it was computed.
pub struct ImageTerms {
    pub terms: Vec<Term>,
    pub d_weight: Option<f64>,
}

/// The image losses: the weights, the perceptual network (when perceptual_weight > 0) and the
/// discriminator (only read: the generator's loss does not train it).
pub struct GeneratorLoss<'a> {
    pub cfg: &'a LossConfig,
    pub lpips: Option<&'a Lpips>,
    pub disc: &'a Discriminator,
}

impl GeneratorLoss<'_> {
    /// nll: reconstruction (L1, or L2) "rec", and with LPIPS the perceptual distance "lpips".
    pub fn nll(&self, x: &Tensor<4>, r: Tensor<4>) -> Vec<Term> {
        let diff = x.clone() - r.clone();
        let rec =
            if self.cfg.reconstruction == Reconstruction::L2 { diff.powi_scalar(2).mean() } else { diff.abs().mean() };
        let mut terms = vec![Term::new("rec", rec, 1.0)];
        if let Some(net) = self.lpips {
            terms.push(Term::new("lpips", net.forward(x.clone(), r).mean(), self.cfg.perceptual_weight));
        }
        terms
    }

    /// The generator's adversarial loss g on x̂: hinge or non-saturating.
    pub fn adversarial(&self, r: Tensor<4>) -> Tensor<1> {
        let fake = self.disc.forward(r, true);
        if self.cfg.gen_adv_loss == AdvLoss::Hinge {
            hinge_g_loss(fake)
        } else {
            non_saturating_g_loss(fake)
        }
    }

    /// The image terms: nll, and once the discriminator has started (`adversarial`) g —
    /// weighted adaptively when `adaptive_disc_weight` is set (`conv_out` the decoder's last
    /// layer), else by gen_loss_weight.
    pub fn image_terms(&self, img: &Decoded, conv_out: &Conv2d, adversarial: bool) -> ImageTerms {
        match (adversarial, self.cfg.adaptive_disc_weight) {
            (true, Some(disc_weight)) => self.adaptive_terms(img, conv_out, disc_weight),
            _ => {
                let mut terms = self.nll(&img.x, img.rec.clone());
                if adversarial && self.cfg.gen_loss_weight > 0.0 {
                    terms.push(Term::new("g_adv", self.adversarial(img.rec.clone()), self.cfg.gen_loss_weight));
                }
                ImageTerms { terms, d_weight: None }
            }
        }
    }
}

/// The LFQ terms: "entropy" (weight codebook_weight, enlarged by codebook_enlarge_ratio and
/// decaying linearly to 1× over codebook_enlarge_steps) and "commit".
pub fn codebook_terms(cfg: &LossConfig, lf: LfqLosses, step: usize) -> [Term; 2] {
    let enlarge =
        cfg.codebook_enlarge_ratio * (1.0 - step as f64 / cfg.codebook_enlarge_steps.max(1) as f64).max(0.0) + 1.0;
    [
        Term::new("entropy", lf.entropy_aux, cfg.codebook_weight * enlarge),
        Term::new("commit", lf.commitment, cfg.commit_weight),
    ]
}

/// Binary cross-entropy of the learned recovery's source matrix S [B, K, L] (clamped to
/// [1e-6, 1 − 1e-6]) against the encoder's 0/1 source matrix `target`.
pub fn source_bce(pred: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
    let pred = pred.clamp(1e-6, 1.0 - 1e-6);
    (target.clone() * pred.clone().log() + (target.neg() + 1.0) * (pred.neg() + 1.0).log()).mean().neg()
}
