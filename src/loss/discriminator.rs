//! The discriminator side of the tokenizer loss (taming VQLPIPSWithDiscriminator,
//! optimizer_idx 1): hinge or vanilla loss on real x and reconstructed x̂, plus LeCam.
use super::gan::{hinge_d_loss, vanilla_d_loss, Discriminator, LeCam};
use crate::train::config::{AdvLoss, LossConfig};
use burn::prelude::*;

/// The discriminator's loss of one micro-batch: the total it is trained on, and the LeCam
/// term within it (unweighted; logged as "lecam") when lecam_weight > 0.
pub struct DiscriminatorLoss {
    pub total: Tensor<1>,
    pub lecam: Option<Tensor<1>>,
}

/// hinge (or vanilla) loss of D on x and x̂ (both detached: only D trains on it),
/// + lecam_weight · LeCam, which updates the LeCam EMAs.
pub fn discriminator_loss(
    disc: &Discriminator,
    lecam: &mut LeCam,
    cfg: &LossConfig,
    x: Tensor<4>,
    rec: Tensor<4>,
) -> DiscriminatorLoss {
    let real = disc.forward(x.detach(), true);
    let fake = disc.forward(rec.detach(), true);
    let d = if cfg.disc_loss == AdvLoss::Hinge {
        hinge_d_loss(real.clone(), fake.clone())
    } else {
        vanilla_d_loss(real.clone(), fake.clone())
    };
    if cfg.lecam_weight > 0.0 {
        let lc = lecam.update_and_loss(real, fake);
        DiscriminatorLoss { total: d + lc.clone() * cfg.lecam_weight, lecam: Some(lc) }
    } else {
        DiscriminatorLoss { total: d, lecam: None }
    }
}
