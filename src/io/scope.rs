//! A view of [`Weights`] under a dotted name prefix, as candle's `VarBuilder::pp`: a loader
//! takes the scope of its module and names its own tensors by their leaf names, so that
//! `scope.pp("attn").pp("qkv").param("weight", …)` reads the state-dict entry `attn.qkv.weight`.
use crate::io::weights::{HostTensor, Init, Weights};
use anyhow::Result;
use burn::module::Param;
use burn::prelude::*;

#[derive(Clone)]
pub struct Scope<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The scope of top-level names (an empty prefix).
    pub(super) fn root(weights: &'a Weights) -> Self {
        Self { weights, prefix: String::new() }
    }

    /// The scope of a submodule: `name` is appended to the prefix with a dot.
    pub fn pp(&self, name: impl AsRef<str>) -> Scope<'a> {
        Scope { weights: self.weights, prefix: self.name(name.as_ref()) }
    }

    /// The full state-dict name of `leaf` in this scope.
    pub fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }

    /// Takes the parameter `leaf` of this scope with the given shape (see [`Weights::param`]).
    pub fn param<const D: usize>(&self, leaf: &str, shape: [usize; D], init: Init) -> Result<Param<Tensor<D>>> {
        self.weights.param(&self.name(leaf), shape, init)
    }

    /// Takes the buffer `leaf` of this scope as a host tensor (see [`Weights::host`]).
    pub fn host(&self, leaf: &str, shape: &[usize], init: Init) -> Result<HostTensor> {
        self.weights.host(&self.name(leaf), shape, init)
    }

    pub fn device(&self) -> &'a Device {
        &self.weights.device
    }
}
