//! MergeVQDecoder: conv_in, a ViT with conv positional embedding and MixFFN, then per level
//! (coarse to fine) an adaptive GroupNorm conditioned on the quantized map, ResBlocks and a
//! depth-to-space up-sampler; GroupNorm → SiLU → conv_out.
use crate::io::scope::Scope;
use crate::nn::{Conv2d, ConvSpec, GroupNorm, Linear};
use crate::tokenizer::config::TokenizerConfig;
use crate::tokenizer::resblock::ResBlock;
use crate::tokenizer::vit::ConvPosTransformer;
use anyhow::{bail, Result};
use burn::prelude::*;

/// AdaGN: GN(x)·γ(std_hw(z)) + β(mean_hw(z)); the std uses torch.var's unbiased (N−1) estimate.
#[derive(Module, Debug)]
pub struct AdaptiveGroupNorm {
    pub gn: GroupNorm,
    pub gamma: Linear,
    pub beta: Linear,
}

impl AdaptiveGroupNorm {
    fn load(w: Scope, z_channels: usize, c: usize) -> Result<Self> {
        Ok(Self {
            gn: GroupNorm::plain(32, 1e-6),
            gamma: Linear::torch(w.pp("gamma"), z_channels, c, true)?,
            beta: Linear::torch(w.pp("beta"), z_channels, c, true)?,
        })
    }

    pub fn forward(&self, x: Tensor<4>, quant: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let [_, zc, h, w] = quant.dims();
        let q = quant.reshape([b, zc, h * w]);
        let (var, mean) = q.var_mean(2);
        let scale = self.gamma.forward((var + 1e-6).sqrt().reshape([b, zc])).reshape([b, c, 1, 1]);
        let bias = self.beta.forward(mean.reshape([b, zc])).reshape([b, c, 1, 1]);
        self.gn.forward(x) * scale + bias
    }
}

/// conv3×3 (C → 4C) then depth-to-space (DCR): out[c, 2h+i, 2w+j] = in[(2i+j)·C + c, h, w].
#[derive(Module, Debug)]
pub struct Upsampler {
    pub conv1: Conv2d,
}

impl Upsampler {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv1.forward(x);
        let [b, c4, h, w] = y.dims();
        let c = c4 / 4;
        y.reshape([b, 2, 2, c, h, w]).permute([0, 3, 4, 1, 5, 2]).reshape([b, c, 2 * h, 2 * w])
    }
}

#[derive(Module, Debug)]
pub struct UpLevel {
    pub block: Vec<ResBlock>,
    pub upsample: Option<Upsampler>,
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub attn: ConvPosTransformer,
    pub adaptive: Vec<AdaptiveGroupNorm>,
    pub up: Vec<UpLevel>,
    pub norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    pub fn load(w: Scope, cfg: &TokenizerConfig) -> Result<Self> {
        let d = &cfg.ddconfig;
        let n = d.ch_mult.len();
        let mut block_in = d.ch * d.ch_mult[n - 1];
        let heads = cfg.heads_for(block_in);
        if !block_in.is_multiple_of(heads) {
            bail!("decoder width {block_in} is not divisible by {heads} heads");
        }
        let conv_in = Conv2d::load(w.pp("conv_in"), ConvSpec::same(d.z_channels, block_in, 3, true), None)?;
        let attn = ConvPosTransformer::load(w.pp("attn"), block_in, d.num_att_blocks, heads)?;
        let mut adaptive = Vec::new();
        let mut up = Vec::new();
        for i in (0..n).rev() {
            let block_out = d.ch * d.ch_mult[i];
            adaptive.push(AdaptiveGroupNorm::load(w.pp(format!("adaptive.{i}")), d.z_channels, block_in)?);
            let count = if i == 0 { d.num_res_blocks } else { d.num_res_blocks + d.num_res_extra };
            let mut block = Vec::new();
            for j in 0..count {
                block.push(ResBlock::load(w.pp(format!("up.{i}.block.{j}")), block_in, block_out)?);
                block_in = block_out;
            }
            let upsample = if i > 0 {
                let s = ConvSpec::same(block_in, 4 * block_in, 3, true);
                Some(Upsampler { conv1: Conv2d::load(w.pp(format!("up.{i}.upsample.conv1")), s, None)? })
            } else {
                None
            };
            up.push(UpLevel { block, upsample });
        }
        adaptive.reverse();
        up.reverse();
        Ok(Self {
            conv_in,
            attn,
            adaptive,
            up,
            norm_out: GroupNorm::load(w.pp("norm_out"), 32, block_in, 1e-6)?,
            conv_out: Conv2d::load(w.pp("conv_out"), ConvSpec::same(block_in, d.out_ch, 3, true), None)?,
        })
    }

    /// Quantized map [B, d, h, w] (full token grid) → image [B, 3, H, W].
    pub fn forward(&self, quant: Tensor<4>) -> Tensor<4> {
        let h = self.last_input(quant);
        self.conv_out.forward(h)
    }

    /// Everything before the last layer (conv_out): its input.
    pub fn last_input(&self, quant: Tensor<4>) -> Tensor<4> {
        let mut z = self.attn.forward(self.conv_in.forward(quant.clone()));
        for i in (0..self.up.len()).rev() {
            z = self.adaptive[i].forward(z, quant.clone());
            for blk in &self.up[i].block {
                z = blk.forward(z);
            }
            if let Some(u) = &self.up[i].upsample {
                z = u.forward(z);
            }
        }
        self.norm_out.forward_silu(z)
    }
}
