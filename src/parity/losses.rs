//! Training-loss networks: LPIPS and the PatchGAN discriminator.
use super::{got, Case, Got};
use anyhow::Result;

impl Case {
    pub(super) fn lpips(&self) -> Result<Vec<Got>> {
        let w = self.weights()?;
        let net = crate::loss::lpips::Lpips::load(w.root())?;
        w.finish(&[])?;
        Ok(vec![got("distance".into(), net.forward(self.tensor("input")?, self.tensor("target")?), false)])
    }

    pub(super) fn discriminator(&self) -> Result<Vec<Got>> {
        let c = &self.config;
        let w = self.weights()?;
        let d = crate::loss::gan::Discriminator::load(
            w.root(),
            c["input_nc"].as_u64().unwrap_or(3) as usize,
            c["ndf"].as_u64().unwrap_or(64) as usize,
            c["n_layers"].as_u64().unwrap_or(3) as usize,
        )?;
        w.finish(&[])?;
        Ok(vec![got("logits".into(), d.forward(self.tensor("image")?, false), false)])
    }
}
