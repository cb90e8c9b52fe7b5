//! Adam / AdamW with per-parameter state, global-norm gradient clipping, gradient
//! accumulation, the EMA of weights and learning-rate schedules.
use crate::io::weights::HostTensor;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A saved tensor as a flat tensor outside the autodiff graph (optimizer and EMA state).
pub fn flat_inner(t: &HostTensor, device: &Device) -> Tensor<1> {
    Tensor::<1>::from_data(TensorData::new(t.data.clone(), [t.data.len()]), device).inner()
}

/// Adam (Kingma & Ba): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − lr·m̂/(√v̂ + ε).
/// `decoupled` gives AdamW's weight decay θ ← θ(1 − lr·λ); otherwise λθ is added to g.
pub struct Adam {
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
    /// Steps taken (for bias correction).
    pub t: u64,
    pub state: HashMap<ParamId, (Tensor<1>, Tensor<1>)>,
}

impl Adam {
    pub fn new(betas: (f64, f64), weight_decay: f64, decoupled: bool) -> Self {
        Self { betas, eps: 1e-8, weight_decay, decoupled, t: 0, state: HashMap::new() }
    }

    /// The moments under parameter names: (m, v), for checkpoints.
    pub fn export_state(
        &self,
        names: &HashMap<ParamId, String>,
    ) -> (BTreeMap<String, HostTensor>, BTreeMap<String, HostTensor>) {
        let host = |t: &Tensor<1>| {
            let data: Vec<f32> = crate::io::readback::floats(t.clone());
            HostTensor { shape: vec![data.len()], data }
        };
        let (mut m, mut v) = (BTreeMap::new(), BTreeMap::new());
        for (id, (tm, tv)) in &self.state {
            if let Some(name) = names.get(id) {
                m.insert(name.clone(), host(tm));
                v.insert(name.clone(), host(tv));
            }
        }
        (m, v)
    }

    /// Restores moments saved by `export_state` onto the parameters `names` refers to.
    pub fn import_state(
        &mut self,
        names: &HashMap<ParamId, String>,
        m: &BTreeMap<String, HostTensor>,
        v: &BTreeMap<String, HostTensor>,
        device: &Device,
    ) {
        for (id, name) in names {
            if let (Some(tm), Some(tv)) = (m.get(name), v.get(name)) {
                self.state.insert(*id, (flat_inner(tm, device), flat_inner(tv, device)));
            }
        }
    }

    /// One update of every parameter of `module` that has a gradient in `grads`; gradients are
    /// multiplied by `grad_scale` first (clipping, accumulation averaging).
    pub fn step<M: Module>(&mut self, module: M, grads: &mut GradientsParams, lr: f64, grad_scale: f64) -> M {
        self.t += 1;
        let mut m = Step { adam: self, grads, lr, grad_scale };
        module.map(&mut m)
    }
}

struct Step<'a> {
    adam: &'a mut Adam,
    grads: &'a mut GradientsParams,
    lr: f64,
    grad_scale: f64,
}

impl ModuleMapper for Step<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(g) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let x = tensor.inner();
        let shape = x.dims();
        let n: usize = shape.iter().product();
        let a = &mut *self.adam;
        let (b1, b2) = a.betas;
        let xf = x.reshape([n]);
        let mut g = g.reshape([n]) * self.grad_scale;
        if a.weight_decay > 0.0 && !a.decoupled {
            g = g + xf.clone() * a.weight_decay;
        }
        let (m, v) = match a.state.remove(&id) {
            Some((m, v)) => (m * b1 + g.clone() * (1.0 - b1), v * b2 + g.powi_scalar(2) * (1.0 - b2)),
            None => (g.clone() * (1.0 - b1), g.powi_scalar(2) * (1.0 - b2)),
        };
        let c1 = 1.0 - b1.powi(a.t as i32);
        let c2 = 1.0 - b2.powi(a.t as i32);
        let update = (m.clone() / c1) / ((v.clone() / c2).sqrt() + a.eps) * self.lr;
        let mut xf = xf;
        if a.weight_decay > 0.0 && a.decoupled {
            xf = xf * (1.0 - self.lr * a.weight_decay);
        }
        a.state.insert(id, (m, v));
        let mut t = Tensor::from_inner((xf - update).reshape(shape));
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// √(Σ‖g‖²) over all gradients of `module`.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = crate::io::readback::scalar(g.powi_scalar(2).sum());
                self.sum += s as f64;
            }
        }
    }
    let mut v = Norm { grads, sum: 0.0 };
    module.visit(&mut v);
    v.sum.sqrt()
}

/// The gradient scale of global-norm clipping at `clip`: c / (‖g‖ + 1e-6) when ‖g‖ > c, else 1.
pub fn clip_scale(clip: Option<f64>, norm: f64) -> f64 {
    clip.map(|c| if norm > c { c / (norm + 1e-6) } else { 1.0 }).unwrap_or(1.0)
}

/// Adds `more` into `acc` (gradient accumulation).
pub fn accumulate<M: Module>(module: &M, acc: &mut GradientsParams, mut more: GradientsParams) {
    struct Add<'a> {
        acc: &'a mut GradientsParams,
        more: &'a mut GradientsParams,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.more.remove::<D>(param.id) {
                let sum = match self.acc.remove::<D>(param.id) {
                    Some(a) => a + g,
                    None => g,
                };
                self.acc.register(param.id, sum);
            }
        }
    }
    module.visit(&mut Add { acc, more: &mut more });
}

/// Exponential moving average of the weights, as LitEma: decay min(d, (1+n)/(10+n)).
pub struct Ema {
    pub decay: f64,
    pub updates: u64,
    pub shadow: HashMap<ParamId, Tensor<1>>,
}

impl Ema {
    pub fn new(decay: f64) -> Self {
        Self { decay, updates: 0, shadow: HashMap::new() }
    }

    pub fn update<M: Module>(&mut self, module: &M) {
        self.updates += 1;
        let n = self.updates as f64;
        let d = self.decay.min((1.0 + n) / (10.0 + n));
        struct Upd<'a> {
            ema: &'a mut HashMap<ParamId, Tensor<1>>,
            d: f64,
        }
        impl ModuleVisitor for Upd<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let x = param.val().inner();
                let n: usize = x.dims().iter().product();
                let x = x.reshape([n]);
                let s = match self.ema.remove(&param.id) {
                    Some(s) => s * self.d + x * (1.0 - self.d),
                    None => x,
                };
                self.ema.insert(param.id, s);
            }
        }
        module.visit(&mut Upd { ema: &mut self.shadow, d });
    }

    /// A copy of `module` holding the averaged weights.
    pub fn apply<M: Module>(&self, module: M) -> M {
        struct Swap<'a> {
            ema: &'a HashMap<ParamId, Tensor<1>>,
        }
        impl ModuleMapper for Swap<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let (id, tensor, mapper) = param.consume();
                let Some(s) = self.ema.get(&id) else { return Param::from_mapped_value(id, tensor, mapper) };
                let shape = tensor.dims();
                let require_grad = tensor.is_require_grad();
                let mut t = Tensor::from_inner(s.clone().reshape(shape));
                if require_grad {
                    t = t.require_grad();
                }
                Param::from_mapped_value(id, t, mapper)
            }
        }
        module.map(&mut Swap { ema: &self.shadow })
    }
}

/// Learning-rate schedules (per optimizer step).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// Constant learning rate.
    None,
    /// Linear warm-up from 0 over `warmup` steps, then constant.
    Warmup { warmup: usize },
    /// Linear warm-up, then cosine decay to `min_lr` at the last step.
    WarmupCosine { warmup: usize, min_lr: f64 },
    /// Multiply by `rate` at each of the given steps (the reference's lr_drop_epoch).
    Step { drops: Vec<usize>, rate: f64 },
}

impl Schedule {
    pub fn lr(&self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            Schedule::None => base,
            Schedule::Warmup { warmup } => base * ((step + 1) as f64 / (*warmup).max(1) as f64).min(1.0),
            Schedule::WarmupCosine { warmup, min_lr } => {
                if step < *warmup {
                    base * (step + 1) as f64 / *warmup as f64
                } else {
                    let p = (step - warmup) as f64 / (total.saturating_sub(*warmup)).max(1) as f64;
                    min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos())
                }
            }
            Schedule::Step { drops, rate } => base * rate.powi(drops.iter().filter(|&&d| step >= d).count() as i32),
        }
    }
}
