//! One micro-batch of a tokenizer training step: the forward pass, the generator's named
//! loss terms and the discriminator's loss, and their gradients.
use super::Trainer;
use crate::io::data::Batch;
use crate::loss::align::alignment;
use crate::loss::discriminator::discriminator_loss;
use crate::loss::generator::{codebook_terms, source_bce, weighted_sum, Decoded, GeneratorLoss, ImageTerms, Term};
use crate::nn::{map_to_tokens, tokens_to_map};
use crate::tokenizer::lfq::LfqLosses;
use crate::tokenizer::recovery::token_unmerge;
use crate::tokenizer::tome::source_matrix;
use anyhow::{bail, Result};
use burn::optim::GradientsParams;
use burn::prelude::*;
use std::collections::BTreeMap;

/// The outputs of one micro-batch besides the image that the generator's terms need.
pub(super) struct Aux {
    lf: LfqLosses,
    /// The recovery's predicted and the encoder's source matrices [B, K, L].
    source: Option<(Tensor<3>, Tensor<3>)>,
    /// The [CLS] head on the strong views [B, classes], when it is aligned.
    head: Option<Tensor<2>>,
}

/// Per-step means of the logged values over the `n` micro-batches of step `step`.
pub(super) struct Sums {
    pub(super) map: BTreeMap<&'static str, f64>,
    pub(super) n: f64,
    pub(super) step: usize,
}

impl Sums {
    fn add(&mut self, name: &'static str, v: f64) {
        *self.map.entry(name).or_default() += v / self.n;
    }

    /// Adds a loss; a non-finite one stops training.
    fn add_finite(&mut self, name: &'static str, v: f32) -> Result<()> {
        if !v.is_finite() {
            bail!("loss `{name}` is {v} at step {}; stopping without saving", self.step);
        }
        self.add(name, v as f64);
        Ok(())
    }
}

impl Trainer {
    /// Forward, losses and backward of one micro-batch (losses divided by the number of
    /// micro-batches): the generator's gradients, and once adversarial the discriminator's.
    pub(super) fn backward(
        &mut self,
        batch: &Batch,
        adversarial: bool,
        sums: &mut Sums,
    ) -> Result<(GradientsParams, Option<GradientsParams>)> {
        let (img, aux) = self.forward(batch)?;
        let gen = self.generator_terms(&img, aux, batch, adversarial)?;
        if let Some(w) = gen.d_weight {
            sums.add("d_weight", w);
        }
        for t in &gen.terms {
            sums.add_finite(t.name, crate::io::readback::scalar(t.value.clone()))?;
        }
        let total = weighted_sum(&gen.terms).expect("at least the reconstruction loss") / sums.n;
        let grads_g = GradientsParams::from_grads(total.backward(), &self.tok);
        if !adversarial {
            return Ok((grads_g, None));
        }
        let d = discriminator_loss(&self.disc, &mut self.lecam, &self.cfg.loss, img.x, img.rec);
        if let Some(lc) = d.lecam {
            sums.add("lecam", crate::io::readback::scalar(lc) as f64);
        }
        sums.add_finite("disc", crate::io::readback::scalar(d.total.clone()))?;
        let grads_d = GradientsParams::from_grads((d.total / sums.n).backward(), &self.disc);
        Ok((grads_g, Some(grads_d)))
    }

    /// The tokenizer on one micro-batch: encoder, LFQ, (learned) source recovery and decoder,
    /// and the [CLS] head on the strong views when it is aligned.
    fn forward(&self, batch: &Batch) -> Result<(Decoded, Aux)> {
        let res = self.cfg.tokenizer.ddconfig.resolution;
        let b = batch.size;
        let x = self.tensor(batch.images.clone(), [b, 3, res, res]);
        let enc = self.tok.encoder.forward(x.clone(), &self.keep)?;
        let lfq = self.tok.lfq();
        let q = lfq.quantize(enc.z.clone());
        let lf = lfq.losses(enc.z);
        let group = enc.track.image_groups(true);
        // With the learned source recovery, its predicted S is trained against the encoder's
        // S (BCE) and the decoder sees the tokens placed by the encoder's groups.
        let source = self.tok.recovery.as_ref().map(|r| {
            let pred = r.forward(map_to_tokens(q.quantized.clone())).source;
            let [b, k, l] = pred.dims();
            let target = Tensor::<3>::from_data(TensorData::new(source_matrix(&group, k), [b, k, l]), &self.device);
            (pred, target)
        });
        let last_in = self.tok.decoder.last_input(tokens_to_map(token_unmerge(map_to_tokens(q.quantized), &group)));
        let rec = self.tok.decoder.conv_out.forward(last_in.clone());
        let head = if self.cfg.loss.cls_weight > 0.0 && self.tok.encoder.dist_head.is_some() {
            let views = self.tensor(batch.views.clone(), [b, 3, res, res]);
            Some(self.tok.encoder.head(views, &self.keep)?)
        } else {
            None
        };
        Ok((Decoded { x, rec, last_in }, Aux { lf, source, head }))
    }

    /// The generator's named terms of one micro-batch (image, codebook, source recovery,
    /// alignment), and the adaptive weight when it was computed.
    fn generator_terms(&self, img: &Decoded, aux: Aux, batch: &Batch, adversarial: bool) -> Result<ImageTerms> {
        let l = &self.cfg.loss;
        let gen = GeneratorLoss { cfg: l, lpips: self.lpips.as_ref(), disc: &self.disc };
        let mut out = gen.image_terms(img, &self.tok.decoder.conv_out, adversarial);
        out.terms.extend(codebook_terms(l, aux.lf, self.step));
        if let Some((pred, target)) = aux.source {
            out.terms.push(Term::new("source_bce", source_bce(pred, target), l.source_weight));
        }
        if let Some(head) = aux.head {
            let cls = alignment(head, self.teacher.as_ref(), &batch.indices, &batch.labels, l.label_smoothing)?;
            out.terms.push(Term::new("cls", cls, l.cls_weight));
        }
        Ok(out)
    }
}
