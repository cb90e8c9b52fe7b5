//! The few layers the models are made of, holding weights in PyTorch layout so that
//! state-dict names and shapes map one to one.
#[cfg(feature = "flex")]
pub mod cpu;
pub mod fused;
pub mod pool;

use crate::io::{scope::Scope, weights::Init};
use anyhow::Result;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

/// nn.Linear: y = x Wᵀ + b, W is [out, in].
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    pub fn load(w: Scope, d_in: usize, d_out: usize, bias: bool, init: Init) -> Result<Self> {
        let bias_init = match init {
            Init::FanIn(_) => Init::FanIn(d_in),
            _ => Init::Const(0.0),
        };
        Ok(Self {
            weight: w.param("weight", [d_out, d_in], init)?,
            bias: if bias { Some(w.param("bias", [d_out], bias_init)?) } else { None },
        })
    }

    /// PyTorch's default initialisation.
    pub fn torch(w: Scope, d_in: usize, d_out: usize, bias: bool) -> Result<Self> {
        Self::load(w, d_in, d_out, bias, Init::FanIn(d_in))
    }

    /// Leading dims fold into rows, one [rows, in]·Wᵀ product against the transposed view of W
    /// (never a transposed copy of the weight).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims.iter().product::<usize>() / d_in;
        let w = self.weight.val();
        dims[D - 1] = w.dims()[0];
        // One row goes through the multi-row kernel too: the single-row (gemv) kernel sums in
        // another order, and a row's result must not depend on how many rows run with it.
        let x = x.reshape([rows, d_in]);
        let y = if rows == 1 {
            Tensor::cat(vec![x.clone(), x], 0).matmul(w.transpose()).narrow(0, 0, 1)
        } else {
            x.matmul(w.transpose())
        };
        let y = match &self.bias {
            Some(b) => y + b.val().unsqueeze::<2>(),
            None => y,
        };
        y.reshape(dims)
    }
}

/// nn.Conv2d with square kernel, symmetric padding.
#[derive(Module, Debug)]
pub struct Conv2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    stride: usize,
    #[module(skip)]
    padding: usize,
    #[module(skip)]
    groups: usize,
}

pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A stride-1 conv with "same" padding.
    pub fn same(c_in: usize, c_out: usize, kernel: usize, bias: bool) -> Self {
        Self { c_in, c_out, kernel, stride: 1, padding: kernel / 2, groups: 1, bias }
    }
}

impl Conv2d {
    pub fn load(w: Scope, s: ConvSpec, init: Option<Init>) -> Result<Self> {
        let fan_in = s.c_in / s.groups * s.kernel * s.kernel;
        let init = init.unwrap_or(Init::FanIn(fan_in));
        let bias_init = match init {
            Init::FanIn(_) => Init::FanIn(fan_in),
            _ => Init::Const(0.0),
        };
        Ok(Self {
            weight: w.param("weight", [s.c_out, s.c_in / s.groups, s.kernel, s.kernel], init)?,
            bias: if s.bias { Some(w.param("bias", [s.c_out], bias_init)?) } else { None },
            stride: s.stride,
            padding: s.padding,
            groups: s.groups,
        })
    }

    fn options(&self) -> ConvOptions<2> {
        let p = self.padding;
        ConvOptions::new([self.stride; 2], [p, p], [1, 1], self.groups)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()), self.options())
    }

    /// ∂L/∂weight for input `x` and ∂L/∂output `out_grad` (no graph is recorded).
    pub fn weight_grad(&self, x: Tensor<4>, out_grad: Tensor<4>) -> Tensor<4> {
        burn::tensor::module::conv2d_weight_backward(x, self.weight.val().inner(), out_grad, self.options())
    }
}

/// nn.LayerNorm over the last dimension (eps 1e-5, PyTorch's default).
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

impl LayerNorm {
    pub fn load(w: Scope, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: w.param("weight", [dim], Init::Const(1.0))?,
            bias: w.param("bias", [dim], Init::Const(0.0))?,
        })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        burn::tensor::module::layer_norm(x, self.weight.val(), Some(self.bias.val()), 1e-5)
    }
}

/// nn.GroupNorm over [B, C, H, W], with or without the per-channel affine.
#[derive(Module, Debug)]
pub struct GroupNorm {
    pub weight: Option<Param<Tensor<1>>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    groups: usize,
    #[module(skip)]
    eps: f64,
}

impl GroupNorm {
    pub fn load(w: Scope, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: Some(w.param("weight", [channels], Init::Const(1.0))?),
            bias: Some(w.param("bias", [channels], Init::Const(0.0))?),
            groups,
            eps,
        })
    }

    pub fn plain(groups: usize, eps: f64) -> Self {
        Self { weight: None, bias: None, groups, eps }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.apply(x, false)
    }

    /// SiLU(GroupNorm(x)), the pair every ResBlock and conv head uses.
    pub fn forward_silu(&self, x: Tensor<4>) -> Tensor<4> {
        self.apply(x, true)
    }

    fn apply(&self, x: Tensor<4>, act: bool) -> Tensor<4> {
        if crate::nn::fused::enabled(&x) {
            let affine = self.weight.as_ref().zip(self.bias.as_ref()).map(|(w, b)| (w.val(), b.val()));
            return crate::nn::fused::group_norm(x, self.groups, self.eps, affine, act);
        }
        let x = self.norm(x);
        if act {
            silu(x)
        } else {
            x
        }
    }

    fn norm(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, wd] = x.dims();
        let g = x.reshape([b, self.groups, (c / self.groups) * h * wd]);
        let (var, mean) = g.clone().var_mean_bias(2);
        let g = (g - mean) / (var + self.eps).sqrt();
        let x = g.reshape([b, c, h, wd]);
        match (&self.weight, &self.bias) {
            (Some(wt), Some(bs)) => x * wt.val().reshape([1, c, 1, 1]) + bs.val().reshape([1, c, 1, 1]),
            _ => x,
        }
    }
}

/// [B, N, C] tokens of a square grid → [B, C, s, s].
pub fn tokens_to_map(x: Tensor<3>) -> Tensor<4> {
    let [b, n, c] = x.dims();
    let s = (n as f64).sqrt() as usize;
    x.swap_dims(1, 2).reshape([b, c, s, s])
}

/// [B, C, H, W] → [B, H·W, C] tokens in row-major order.
pub fn map_to_tokens(x: Tensor<4>) -> Tensor<3> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).swap_dims(1, 2)
}

/// conv2d through the CPU kernel where it applies (CPU f32, one group, no dilation, one stride for
/// both axes, the same padding on both sides of each axis), else Burn's.
pub fn conv(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    {
        let ([s0, s1], [(ph, ph1), (pw, pw1)]) = (options.stride, options.padding);
        let plain = options.groups == 1 && options.dilation == [1, 1] && s0 == s1 && ph == ph1 && pw == pw1;
        if plain && cpu::enabled(&x) {
            return cpu::conv2d(x, weight, bias, s0, [ph, pw]);
        }
    }
    conv2d(x, weight, bias, options)
}

/// Scaled dot-product attention softmax(q·kᵀ/√hd + bias)·v over [B, H, n, hd] heads, through
/// the backend's fused kernel (no transposed copy of k), or on the CPU for long query blocks the
/// host kernel of two matrix products; `bias` broadcasts to [B, H, nq, nk].
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Option<Tensor<4>>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if cpu::attention::applies(&q, &k, &v, bias.as_ref()) {
        return cpu::attention::attention(q, k, v, bias);
    }
    burn::tensor::module::attention(q, k, v, None, bias, Default::default())
}

pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if crate::nn::fused::enabled(&x) {
        return crate::nn::fused::silu(x);
    }
    burn::tensor::activation::silu(x)
}

pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if crate::nn::fused::enabled(&x) && x.dtype() == burn::tensor::DType::F32 {
        return crate::nn::fused::gelu(x);
    }
    burn::tensor::activation::gelu(x)
}

/// One-hot rows [N, classes] for class indices.
pub fn one_hot(targets: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    let idx: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(idx, [targets.len()]), device).one_hot::<2>(classes).float()
}
