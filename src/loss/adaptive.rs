//! The adaptive generator weight (taming VQLPIPSWithDiscriminator.calculate_adaptive_weight):
//! w = clamp(‖∇_W nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4) · disc_weight, W the decoder's last layer.
use super::generator::{weighted_sum, Decoded, GeneratorLoss, ImageTerms, Term};
use crate::nn::Conv2d;
use burn::prelude::*;

impl GeneratorLoss<'_> {
    /// The image terms with the adaptive weight. ∂nll/∂x̂ and ∂g/∂x̂ are taken on detached
    /// copies of x̂; their gradients on the last layer (`conv_out`, input `img.last_in`) give w,
    /// and one surrogate term "image_grad" = Σ x̂ · (∂nll/∂x̂ + w·∂g/∂x̂) carries both into the
    /// decoder and encoder. nll's terms and "g_adv" are logged only (weight 0).
    pub fn adaptive_terms(&self, img: &Decoded, conv_out: &Conv2d, disc_weight: f64) -> ImageTerms {
        let grad_of = |loss: Tensor<1>, leaf: &Tensor<4>| leaf.grad(&loss.backward()).expect("gradient of x̂");
        let leaf = img.rec.clone().detach().require_grad();
        let nll_terms = self.nll(&img.x, leaf.clone());
        let nll = weighted_sum(&nll_terms).expect("the reconstruction loss");
        let d_nll = grad_of(nll, &leaf);
        let leaf_g = img.rec.clone().detach().require_grad();
        let g = self.adversarial(leaf_g.clone());
        let d_g = grad_of(g.clone(), &leaf_g);
        let h = img.last_in.clone().inner();
        let norm = |t: Tensor<4>| -> f64 { crate::io::readback::scalar(t.powi_scalar(2).sum().sqrt()) as f64 };
        let n_nll = norm(conv_out.weight_grad(h.clone(), d_nll.clone()));
        let n_g = norm(conv_out.weight_grad(h, d_g.clone()));
        let w = (n_nll / (n_g + 1e-4)).clamp(0.0, 1e4) * disc_weight;
        let mut terms: Vec<Term> = nll_terms.into_iter().map(|t| Term::new(t.name, t.value.detach(), 0.0)).collect();
        terms.push(Term::new("g_adv", g.detach(), 0.0));
        let surrogate = (img.rec.clone() * Tensor::from_inner(d_nll + d_g * w)).sum();
        terms.push(Term::new("image_grad", surrogate, 1.0));
        ImageTerms { terms, d_weight: Some(w) }
    }
}
