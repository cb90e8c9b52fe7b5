//! LPIPS perceptual distance (Zhang et al. 2018) with VGG16 features: scale the input, take
//! relu1_2 … relu5_3, unit-normalise channels, square the difference, weight channels with
//! the linear heads, average over space and sum over the 5 layers.
use crate::io::{scope::Scope, weights::Init};
use crate::nn::{Conv2d, ConvSpec};
use anyhow::Result;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

/// VGG16 `features` indices of the convs in each of the 5 slices.
const SLICES: [&[usize]; 5] = [&[0, 2], &[5, 7], &[10, 12, 14], &[17, 19, 21], &[24, 26, 28]];
const CHANNELS: [usize; 5] = [64, 128, 256, 512, 512];

#[derive(Module, Debug)]
pub struct Lpips {
    pub shift: Param<Tensor<4>>,
    pub scale: Param<Tensor<4>>,
    pub convs: Vec<Vec<Conv2d>>,
    pub lins: Vec<Conv2d>,
}

impl Lpips {
    /// Names as taming's LPIPS state dict: `scaling_layer.*`, `net.slice{1..5}.{idx}.*`,
    /// `lin{0..4}.model.1.weight`.
    pub fn load(w: Scope) -> Result<Self> {
        let mut convs = Vec::new();
        let mut c_in = 3;
        for (s, idx) in SLICES.iter().enumerate() {
            let mut slice = Vec::new();
            for &i in idx.iter() {
                let c_out = CHANNELS[s];
                slice.push(Conv2d::load(
                    w.pp(format!("net.slice{}.{i}", s + 1)),
                    ConvSpec::same(c_in, c_out, 3, true),
                    None,
                )?);
                c_in = c_out;
            }
            convs.push(slice);
        }
        let lins = (0..5)
            .map(|k| {
                Conv2d::load(
                    w.pp(format!("lin{k}.model.1")),
                    ConvSpec::same(CHANNELS[k], 1, 1, false),
                    Some(Init::Const(1.0 / CHANNELS[k] as f32)),
                )
            })
            .collect::<Result<_>>()?;
        let buffer = |name: &str, v: &'static [f32]| -> Result<Param<Tensor<4>>> {
            let h = w.pp("scaling_layer").host(name, &[1, 3, 1, 1], Init::List(v))?;
            Ok(Param::from_data(TensorData::new(h.data, [1, 3, 1, 1]), w.device()).set_require_grad(false))
        };
        Ok(Self {
            shift: buffer("shift", &[-0.030, -0.088, -0.188])?,
            scale: buffer("scale", &[0.458, 0.448, 0.450])?,
            convs,
            lins,
        })
    }

    fn features(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut h = (x - self.shift.val()) / self.scale.val();
        let mut out = Vec::new();
        for (s, slice) in self.convs.iter().enumerate() {
            if s > 0 {
                h = max_pool2d(h, MaxPoolOptions::new([2, 2]));
            }
            for conv in slice {
                h = relu(conv.forward(h));
            }
            out.push(h.clone());
        }
        out
    }

    /// Distance per image, [B, 1, 1, 1]; inputs in [-1, 1].
    pub fn forward(&self, input: Tensor<4>, target: Tensor<4>) -> Tensor<4> {
        let (f0, f1) = (self.features(input), self.features(target));
        let mut total: Option<Tensor<4>> = None;
        for (k, (a, b)) in f0.into_iter().zip(f1).enumerate() {
            let d = (unit(a) - unit(b)).powi_scalar(2);
            let v = self.lins[k].forward(d).mean_dim(2).mean_dim(3);
            total = Some(match total {
                Some(t) => t + v,
                None => v,
            });
        }
        total.expect("5 layers")
    }
}

/// x / (‖x‖₂ over channels + 1e-10)
fn unit(x: Tensor<4>) -> Tensor<4> {
    let n = x.clone().powi_scalar(2).sum_dim(1).sqrt() + 1e-10;
    x / n
}
