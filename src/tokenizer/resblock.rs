//! The CNN residual block shared by encoder and decoder: GN → SiLU → conv3×3 → GN → SiLU →
//! conv3×3, plus a 1×1 shortcut when the width changes.
use crate::io::scope::Scope;
use crate::nn::{Conv2d, ConvSpec, GroupNorm};
use anyhow::Result;
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct ResBlock {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub nin_shortcut: Option<Conv2d>,
}

impl ResBlock {
    pub fn load(w: Scope, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            norm1: GroupNorm::load(w.pp("norm1"), 32, c_in, 1e-6)?,
            conv1: Conv2d::load(w.pp("conv1"), ConvSpec::same(c_in, c_out, 3, false), None)?,
            norm2: GroupNorm::load(w.pp("norm2"), 32, c_out, 1e-6)?,
            conv2: Conv2d::load(w.pp("conv2"), ConvSpec::same(c_out, c_out, 3, false), None)?,
            nin_shortcut: if c_in != c_out {
                Some(Conv2d::load(w.pp("nin_shortcut"), ConvSpec::same(c_in, c_out, 1, false), None)?)
            } else {
                None
            },
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(self.norm1.forward_silu(x.clone()));
        let h = self.conv2.forward(self.norm2.forward_silu(h));
        let residual = match &self.nin_shortcut {
            Some(s) => s.forward(x),
            None => x,
        };
        h + residual
    }
}
