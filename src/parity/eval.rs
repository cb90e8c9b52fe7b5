//! Evaluation networks: the FID Inception-v3.
use super::{got, Case, Got};
use anyhow::Result;

impl Case {
    pub(super) fn inception(&self) -> Result<Vec<Got>> {
        let w = self.weights()?;
        let net = crate::eval::inception::InceptionV3::load(&w, crate::eval::inception::InputRange::Torch)?;
        w.finish(&[])?;
        let f = net.features(self.tensor("images")?);
        let [b, d] = f.dims();
        Ok(vec![got("features".into(), f.reshape([b, d, 1, 1]), false)])
    }
}
