//! Reconstruction metrics over a data set.
use crate::data::Batch;
use crate::image_io::{psnr, tensor_to_rgb};
use crate::tokenizer::Tokenizer;
use anyhow::Result;
use burn::prelude::*;

/// Mean per-image PSNR (0–255 scale) of `model`'s reconstructions of the first `n` images,
/// read batch by batch from `batch(k)`.
pub fn mean_psnr(model: &Tokenizer, batch: impl Fn(usize) -> Batch, n: usize, device: &Device) -> Result<f64> {
    let res = model.cfg.ddconfig.resolution;
    let (mut sum, mut count) = (0.0, 0usize);
    let mut k = 0;
    while count < n {
        let b = batch(k);
        k += 1;
        if b.size == 0 {
            break;
        }
        let take = b.size.min(n - count);
        let x = Tensor::<4>::from_data(TensorData::new(b.images[..take * 3 * res * res].to_vec(), [take, 3, res, res]), device);
        let t = model.encode(x.clone())?;
        let rec = model.decode(t.quantized, &t.group);
        for i in 0..take {
            let a = tensor_to_rgb(x.clone().narrow(0, i, 1).reshape([3, res, res]));
            let r = tensor_to_rgb(rec.clone().narrow(0, i, 1).reshape([3, res, res]));
            sum += psnr(&a, &r).min(100.0);
        }
        count += take;
    }
    Ok(if count == 0 { f64::NAN } else { sum / count as f64 })
}
