//! The adversarial part of the tokenizer loss: the PatchGAN discriminator (pix2pix
//! NLayerDiscriminator), hinge / non-saturating losses and LeCam regularisation.
use crate::io::scope::Scope;
use crate::io::weights::{HostTensor, Init};
use crate::nn::{Conv2d, ConvSpec};
use anyhow::Result;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu, softplus};
use std::collections::BTreeMap;

/// BatchNorm2d: batch statistics while training, running statistics in evaluation.
#[derive(Module, Debug)]
pub struct BatchNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    /// Running statistics (not trained; updated with momentum 0.1 when training).
    #[module(skip)]
    pub running: std::sync::Arc<std::sync::Mutex<RunningStats>>,
}

/// BatchNorm running mean and variance per channel, and the number of batches seen.
pub type RunningStats = (Vec<f32>, Vec<f32>, i64);

impl BatchNorm {
    fn load(w: Scope, c: usize) -> Result<Self> {
        let mean = w.host("running_mean", &[c], Init::Const(0.0))?.data;
        let var = w.host("running_var", &[c], Init::Const(1.0))?.data;
        let n = w.host("num_batches_tracked", &[], Init::Const(0.0))?.data[0] as i64;
        Ok(Self {
            weight: w.param("weight", [c], Init::Const(1.0))?,
            bias: w.param("bias", [c], Init::Const(0.0))?,
            running: std::sync::Arc::new(std::sync::Mutex::new((mean, var, n))),
        })
    }

    fn forward(&self, x: Tensor<4>, train: bool) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let device = x.device();
        let (mean, var) = if train {
            let flat = x.clone().swap_dims(0, 1).reshape([c, b * h * w]);
            let (var, mean) = flat.var_mean_bias(1);
            let n = (b * h * w) as f32;
            let (m, v): (Vec<f32>, Vec<f32>) = (host(mean.clone()), host(var.clone()));
            let mut r = self.running.lock().expect("running stats");
            for i in 0..c {
                r.0[i] = 0.9 * r.0[i] + 0.1 * m[i];
                r.1[i] = 0.9 * r.1[i] + 0.1 * v[i] * n / (n - 1.0).max(1.0);
            }
            r.2 += 1;
            (mean.reshape([1, c, 1, 1]), var.reshape([1, c, 1, 1]))
        } else {
            let r = self.running.lock().expect("running stats");
            let t = |v: &Vec<f32>| Tensor::<4>::from_data(TensorData::new(v.clone(), [1, c, 1, 1]), &device);
            (t(&r.0), t(&r.1))
        };
        (x - mean) / (var + 1e-5).sqrt() * self.weight.val().reshape([1, c, 1, 1])
            + self.bias.val().reshape([1, c, 1, 1])
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    crate::io::readback::floats(t)
}

/// NLayerDiscriminator: conv4×4/2 → LeakyReLU, (conv4×4/2 → BN → LeakyReLU)×(n−1),
/// conv4×4/1 → BN → LeakyReLU, conv4×4/1 → 1 logit per patch. Names `main.{i}.*`.
#[derive(Module, Debug)]
pub struct Discriminator {
    pub convs: Vec<Conv2d>,
    pub norms: Vec<BatchNorm>,
}

impl Discriminator {
    pub fn load(w: Scope, in_ch: usize, ndf: usize, n_layers: usize) -> Result<Self> {
        let init = Some(Init::Normal(0.02));
        let conv = |i: usize, c_in: usize, c_out: usize, stride: usize, bias: bool| {
            Conv2d::load(
                w.pp(format!("main.{i}")),
                ConvSpec { stride, padding: 1, ..ConvSpec::same(c_in, c_out, 4, bias) },
                init,
            )
        };
        let mut convs = vec![conv(0, in_ch, ndf, 2, true)?];
        let mut norms = Vec::new();
        let mut idx = 2;
        let mut mult = 1;
        for n in 1..=n_layers {
            let prev = mult;
            mult = (1 << n).min(8);
            let stride = if n < n_layers { 2 } else { 1 };
            convs.push(conv(idx, ndf * prev, ndf * mult, stride, false)?);
            let bn = BatchNorm::load(w.pp(format!("main.{}", idx + 1)), ndf * mult)?;
            norms.push(bn);
            idx += 3;
        }
        convs.push(conv(idx, ndf * mult, 1, 1, true)?);
        // weights_init: BatchNorm weight ~ N(1, 0.02) is approximated by 1 for random init.
        Ok(Self { convs, norms })
    }

    /// Patch logits [B, 1, h, w]. `train` selects batch statistics in BatchNorm.
    pub fn forward(&self, x: Tensor<4>, train: bool) -> Tensor<4> {
        let mut h = leaky_relu(self.convs[0].forward(x), 0.2);
        for (conv, bn) in self.convs[1..self.convs.len() - 1].iter().zip(&self.norms) {
            h = leaky_relu(bn.forward(conv.forward(h), train), 0.2);
        }
        self.convs[self.convs.len() - 1].forward(h)
    }

    /// The BatchNorm buffers under their state-dict names (for saving; the discriminator's
    /// names are top-level).
    pub fn buffers(&self) -> BTreeMap<String, HostTensor> {
        let mut out = BTreeMap::new();
        for (k, bn) in self.norms.iter().enumerate() {
            let r = bn.running.lock().expect("running stats");
            let name = |s: &str| format!("main.{}.{s}", 3 + 3 * k);
            let c = r.0.len();
            out.insert(name("running_mean"), HostTensor { shape: vec![c], data: r.0.clone() });
            out.insert(name("running_var"), HostTensor { shape: vec![c], data: r.1.clone() });
            out.insert(name("num_batches_tracked"), HostTensor { shape: vec![], data: vec![r.2 as f32] });
        }
        out
    }
}

/// Discriminator hinge loss: ½(mean relu(1 − D(x)) + mean relu(1 + D(x̂))).
pub fn hinge_d_loss(real: Tensor<4>, fake: Tensor<4>) -> Tensor<1> {
    (relu(real.neg() + 1.0).mean() + relu(fake + 1.0).mean()) * 0.5
}

/// Discriminator vanilla (non-saturating) loss: ½(mean softplus(−D(x)) + mean softplus(D(x̂))).
pub fn vanilla_d_loss(real: Tensor<4>, fake: Tensor<4>) -> Tensor<1> {
    (softplus(real.neg(), 1.0).mean() + softplus(fake, 1.0).mean()) * 0.5
}

/// Generator non-saturating loss on per-image mean logits: mean softplus(−mean D(x̂)).
pub fn non_saturating_g_loss(fake: Tensor<4>) -> Tensor<1> {
    let [b, _, _, _] = fake.dims();
    softplus(fake.reshape([b as i64, -1]).mean_dim(1).neg(), 1.0).mean()
}

/// Generator hinge loss: −mean D(x̂).
pub fn hinge_g_loss(fake: Tensor<4>) -> Tensor<1> {
    fake.mean().neg()
}

/// LeCam regularisation (Tseng et al. 2021) with EMAs (decay 0.999) of the mean logits:
/// mean relu(D(x) − ema_fake)² + mean relu(ema_real − D(x̂))².
#[derive(Clone, Debug, Default)]
pub struct LeCam {
    pub ema_real: f64,
    pub ema_fake: f64,
}

impl LeCam {
    pub fn update_and_loss(&mut self, real: Tensor<4>, fake: Tensor<4>) -> Tensor<1> {
        let decay = 0.999;
        let mr = crate::io::readback::scalar(real.clone().mean());
        let mf = crate::io::readback::scalar(fake.clone().mean());
        self.ema_real = self.ema_real * decay + mr as f64 * (1.0 - decay);
        self.ema_fake = self.ema_fake * decay + mf as f64 * (1.0 - decay);
        relu(real - self.ema_fake).powi_scalar(2).mean() + relu(fake.neg() + self.ema_real).powi_scalar(2).mean()
    }
}
