//! Named weights with PyTorch state-dict names: read from safetensors or Lightning `.ckpt`
//! files or created at random for `init`, checked for missing / extra / wrongly shaped
//! tensors, and exported back under the same names.
use crate::io::ckpt::read_checkpoint;
use crate::io::safetensors::{is_safetensors, read_safetensors};
use crate::io::scope::Scope;
use anyhow::{anyhow, bail, Result};
use burn::module::{Param, ParamId};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// A tensor held on the host: row-major f32 values and a shape.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// How `init` fills a parameter when no file provides it.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// PyTorch's default for Linear/Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    FanIn(usize),
    /// Truncated normal (±2 std), as timm's `trunc_normal_`.
    TruncNormal(f32),
    Normal(f32),
    Const(f32),
    /// Fixed values, element by element (buffers such as LPIPS's scaling layer).
    List(&'static [f32]),
}

enum Source {
    File(BTreeMap<String, HostTensor>),
    Random(Box<RefCell<StdRng>>),
}

/// A source of named parameters. Every parameter a model takes is recorded with its name so
/// the model can be written back under the same names.
pub struct Weights {
    source: Source,
    used: RefCell<BTreeSet<String>>,
    names: RefCell<Vec<(ParamId, String)>>,
    pub device: Device,
}

impl Weights {
    pub fn random(seed: u64, device: &Device) -> Self {
        Self::with_source(Source::Random(Box::new(RefCell::new(StdRng::seed_from_u64(seed)))), device)
    }

    pub fn from_map(map: BTreeMap<String, HostTensor>, device: &Device) -> Self {
        Self::with_source(Source::File(map), device)
    }

    fn with_source(source: Source, device: &Device) -> Self {
        Self { source, used: RefCell::default(), names: RefCell::default(), device: device.clone() }
    }

    /// Loads a `.safetensors` file or a PyTorch / Lightning checkpoint (`.ckpt`, `.pt`, `.pth`).
    /// `ema` swaps in the `model_ema.*` copies of a Lightning checkpoint.
    pub fn open(path: &Path, ema: bool, device: &Device) -> Result<Self> {
        let map = if is_safetensors(path)? {
            if ema {
                bail!("--ema applies to Lightning checkpoints; {} is a safetensors file", path.display());
            }
            read_safetensors(path)?
        } else {
            read_checkpoint(path, ema)?
        };
        Ok(Self::from_map(map, device))
    }

    /// The scope of top-level names, from which loaders descend with [`Scope::pp`].
    pub fn root(&self) -> Scope<'_> {
        Scope::root(self)
    }

    /// Takes the parameter `name` with the given shape.
    pub fn param<const D: usize>(&self, name: &str, shape: [usize; D], init: Init) -> Result<Param<Tensor<D>>> {
        let host = self.host(name, &shape, init)?;
        let param = Param::from_data(TensorData::new(host.data, shape), &self.device);
        self.names.borrow_mut().push((param.id, name.to_string()));
        Ok(param)
    }

    /// Takes a tensor that is not trained (a buffer) as a plain tensor.
    pub fn host(&self, name: &str, shape: &[usize], init: Init) -> Result<HostTensor> {
        match &self.source {
            Source::File(map) => {
                let t = map.get(name).ok_or_else(|| anyhow!("missing tensor `{name}` (expected shape {shape:?})"))?;
                if t.shape != shape {
                    bail!("tensor `{name}` has shape {:?}, the model expects {:?}", t.shape, shape);
                }
                if let Some(v) = t.data.iter().find(|v| !v.is_finite()) {
                    bail!("tensor `{name}` holds a non-finite value ({v})");
                }
                self.used.borrow_mut().insert(name.to_string());
                Ok(t.clone())
            }
            Source::Random(rng) => {
                let n: usize = shape.iter().product();
                let mut rng = rng.borrow_mut();
                let data = match init {
                    Init::List(v) => v.iter().cycle().take(n).copied().collect(),
                    _ => (0..n).map(|_| sample(&mut rng, init)).collect(),
                };
                Ok(HostTensor { shape: shape.to_vec(), data })
            }
        }
    }

    /// Fails if the file holds tensors the model did not take, ignoring names that start
    /// with one of `ignored` (e.g. the loss networks of a Lightning checkpoint).
    pub fn finish(&self, ignored: &[&str]) -> Result<()> {
        if let Source::File(map) = &self.source {
            let used = self.used.borrow();
            let extra: Vec<&String> =
                map.keys().filter(|k| !used.contains(*k) && !ignored.iter().any(|p| k.starts_with(p))).collect();
            if let Some(first) = extra.first() {
                bail!("unexpected tensor `{first}` in weights ({} unexpected in all)", extra.len());
            }
        }
        Ok(())
    }

    /// The names of the parameters taken so far, by parameter id.
    pub fn names(&self) -> HashMap<ParamId, String> {
        self.names.borrow().iter().cloned().collect()
    }
}

fn sample(rng: &mut StdRng, init: Init) -> f32 {
    match init {
        Init::FanIn(fan_in) => {
            let b = 1.0 / (fan_in.max(1) as f32).sqrt();
            rng.random_range(-b..b)
        }
        Init::TruncNormal(std) => loop {
            let v = normal(rng);
            if v.abs() <= 2.0 {
                break v * std;
            }
        },
        Init::Normal(std) => normal(rng) * std,
        Init::Const(c) => c,
        Init::List(v) => v[0],
    }
}

fn normal(rng: &mut StdRng) -> f32 {
    // Box-Muller
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// Collects a module's float parameters under the names they were loaded with.
pub fn export<M: Module>(module: &M, names: &HashMap<ParamId, String>) -> BTreeMap<String, HostTensor> {
    struct Collect<'a> {
        names: &'a HashMap<ParamId, String>,
        out: BTreeMap<String, HostTensor>,
    }
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(name) = self.names.get(&param.id) {
                let t = param.val();
                let shape = t.dims().to_vec();
                let data = crate::io::readback::floats(t);
                self.out.insert(name.clone(), HostTensor { shape, data });
            }
        }
    }
    let mut c = Collect { names, out: BTreeMap::new() };
    module.visit(&mut c);
    c.out
}
