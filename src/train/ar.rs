//! The AR trainer (stage 2): plain raster AR or MergeAR over token sets from `extract-tokens`.
//! AdamW, warm-up + cosine (or step) schedule, clipping, label dropout for CFG, EMA,
//! atomic checkpoints with resume — the same pieces as the tokenizer trainer.
use super::checkpoint::Checkpoint;
use super::config::{OptimConfig, Optimizer, RunConfig};
use super::optim::{clip_scale, flat_inner, global_norm, Adam, Ema};
use super::run_dir::{RunDir, Start};
use super::run_loop::{Losses, RunState, Summary, Trainable};
use crate::ar::gpt::{Gpt, GptConfig};
use crate::ar::mergear::{first_of_group, mergear_bias};
use crate::io::output::Outputs;
use crate::io::safetensors::{write_safetensors, WEIGHTS};
use crate::io::tokens::TokenSet;
use crate::io::weights::{export, Weights};
use anyhow::{bail, Context, Result};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArConfig {
    pub gpt: GptConfig,
    pub mode: ArMode,
    /// MergeAR recent window w.
    #[serde(default = "two")]
    pub window: usize,
    pub tokens: PathBuf,
    /// Fraction of the token set held out for validation.
    #[serde(default = "val_fraction")]
    pub val_fraction: f64,
    pub batch_size: usize,
    #[serde(default)]
    pub optim: OptimConfig,
    pub run: RunConfig,
}

/// What the GPT learns to generate.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArMode {
    /// Causal attention over the L raster tokens.
    Plain,
    /// MergeAR (MergeVQ §4.1): the sparse mask over merged groups, conditioned on the kept count.
    MergeAr,
}

fn two() -> usize {
    2
}
fn val_fraction() -> f64 {
    0.05
}

impl ArConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| crate::validate::toml_error(path, &text, &e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.tokens.is_relative() && !cfg.tokens.exists() && base.join(&cfg.tokens).exists() {
            cfg.tokens = base.join(&cfg.tokens);
        }
        cfg.validate().with_context(|| format!("bad config {}", path.display()))?;
        Ok(cfg)
    }
}

pub struct ArTrainer {
    pub cfg: ArConfig,
    device: Device,
    pub gpt: Gpt,
    names: std::collections::HashMap<burn::module::ParamId, String>,
    opt: Adam,
    ema: Ema,
    pub step: usize,
    data: TokenSet,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    /// The locked run folder (`run.out_dir`).
    pub run: RunDir,
}

impl ArTrainer {
    /// A fresh run, or (`Start::Resume`) the state of the last checkpoint in `run.out_dir`.
    pub fn new(cfg: ArConfig, start: Start) -> Result<Self> {
        let device = crate::device().autodiff();
        let data = TokenSet::load(&cfg.tokens)?;
        if data.is_empty() {
            bail!("token set {} is empty", cfg.tokens.display());
        }
        let g = &cfg.gpt;
        if data.bits != g.bits() {
            bail!(
                "token set has {}-bit codes, gpt.factorized_bits {:?} make {} bits (tokens from another tokenizer?)",
                data.bits,
                g.factorized_bits,
                g.bits()
            );
        }
        if data.codes[0].len() != g.block_size {
            bail!("token set has L={} tokens per image, gpt.block_size is {}", data.codes[0].len(), g.block_size);
        }
        if data.classes > g.class_num {
            bail!("token set has {} classes, gpt.class_num is {}", data.classes, g.class_num);
        }
        if cfg.mode == ArMode::MergeAr && data.candidates.len() != g.merge_tokens {
            bail!(
                "token set has {} kept-count candidates {:?}, gpt.merge_tokens is {}",
                data.candidates.len(),
                data.candidates,
                g.merge_tokens
            );
        }
        let mut idx: Vec<usize> = (0..data.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(1234));
        let n_val = ((data.len() as f64 * cfg.val_fraction).round() as usize).min(data.len() - 1);
        let val_idx = idx[..n_val].to_vec();
        let train_idx = idx[n_val..].to_vec();
        let run = RunDir::open(&cfg.run, start, Outputs::new([&cfg.tokens]), "gpt_ema.safetensors")?;
        let ckpt = Checkpoint::resume(&cfg.run, start == Start::Resume)?;
        let w = match &ckpt {
            Some(c) => Weights::from_map(c.groups.get("model").cloned().unwrap_or_default(), &device),
            None => Weights::random(cfg.run.seed, &device),
        };
        let gpt = Gpt::load(w.root(), &cfg.gpt)?;
        w.finish(&[])?;
        let o = &cfg.optim;
        let mut me = Self {
            names: w.names(),
            opt: Adam::new((o.betas[0], o.betas[1]), o.weight_decay, o.optimizer == Optimizer::AdamW),
            ema: Ema::new(o.ema),
            step: 0,
            device,
            gpt,
            data,
            train_idx,
            val_idx,
            run,
            cfg,
        };
        if let Some(c) = ckpt {
            me.step = c.meta["step"].as_u64().unwrap_or(0) as usize;
            me.opt.t = c.meta["opt_t"].as_u64().unwrap_or(0);
            me.ema.updates = c.meta["ema_updates"].as_u64().unwrap_or(0);
            for (id, name) in &me.names {
                if let Some(t) = c.groups.get("ema").and_then(|g| g.get(name)) {
                    me.ema.shadow.insert(*id, flat_inner(t, &me.device));
                }
            }
            if let (Some(m), Some(v)) = (c.groups.get("opt.m"), c.groups.get("opt.v")) {
                me.opt.import_state(&me.names, m, v, &me.device);
            }
        }
        Ok(me)
    }

    /// Mean cross-entropy of the pre and post factors for the images `items`, with the mode's
    /// attention mask; with `rng`, label dropout (training).
    pub fn loss(&self, gpt: &Gpt, items: &[usize], rng: Option<&mut StdRng>) -> Result<Tensor<1>> {
        let g = &self.cfg.gpt;
        let a = g.factorized_bits[0];
        let b = items.len();
        let l = g.block_size;
        let mut labels: Vec<i64> = items.iter().map(|&i| self.data.labels[i] as i64).collect();
        if let Some(rng) = rng {
            for lab in labels.iter_mut() {
                if rng.random::<f64>() < g.class_dropout {
                    *lab = g.class_num as i64;
                }
            }
        }
        let codes: Vec<i64> = items.iter().flat_map(|&i| self.data.codes[i].iter().copied()).collect();
        let pre: Vec<i64> = codes.iter().map(|c| c & ((1 << a) - 1)).collect();
        let post: Vec<i64> = codes.iter().map(|c| c >> a).collect();
        let device = gpt.pre_emb.val().device();
        let (merge, bias) = if self.cfg.mode == ArMode::MergeAr {
            let m: Vec<i64> = items.iter().map(|&i| self.data.merge_index(i) as i64).collect();
            let n = g.prefix() + l - 1;
            let masks: Vec<Tensor<4>> = items
                .iter()
                .map(|&i| mergear_bias(g.prefix(), &first_of_group(&self.data.group[i]), self.cfg.window, n, &device))
                .collect();
            (Some(m), Some(Tensor::cat(masks, 0)))
        } else {
            (None, None)
        };
        let out = gpt.forward(&pre, &post, &labels, merge.as_deref(), bias)?;
        let ce = |logits: Tensor<3>, target: &[i64], classes: usize| -> Tensor<1> {
            let t: Vec<usize> = target.iter().map(|&t| t as usize).collect();
            let onehot = crate::nn::one_hot(&t, classes, &device);
            (log_softmax(logits.reshape([b * l, classes]), 1) * onehot).sum().neg() / (b * l) as f64
        };
        Ok((ce(out.pre, &pre, 1 << a) + ce(out.post, &post, 1 << g.factorized_bits[1])) * 0.5)
    }

    /// Validation loss of the EMA weights.
    pub fn validate(&self) -> Result<f64> {
        let model = self.ema.apply(self.gpt.clone()).valid();
        let (mut sum, mut n) = (0.0, 0);
        for chunk in self.val_idx.chunks(self.cfg.batch_size) {
            let v = crate::io::readback::scalar(self.loss(&model, chunk, None)?);
            sum += v as f64 * chunk.len() as f64;
            n += chunk.len();
        }
        Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
    }

    pub fn save_checkpoint(&self) -> Result<()> {
        let mut groups = BTreeMap::new();
        groups.insert("model".to_string(), export(&self.gpt, &self.names));
        groups.insert("ema".to_string(), export(&self.ema.apply(self.gpt.clone()), &self.names));
        let (m, v) = self.opt.export_state(&self.names);
        groups.insert("opt.m".to_string(), m);
        groups.insert("opt.v".to_string(), v);
        let meta = serde_json::json!({"step": self.step, "opt_t": self.opt.t, "ema_updates": self.ema.updates});
        Checkpoint { groups, meta }.save(&Checkpoint::path(&self.cfg.run), &self.run.outputs)
    }

    /// One optimizer step on the images `items`; returns its "ce", "lr" and "grad_norm".
    pub fn train_step(&mut self, items: &[usize]) -> Result<Losses> {
        let step = self.step;
        let mut rng = StdRng::seed_from_u64(self.cfg.run.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let loss = self.loss(&self.gpt, items, Some(&mut rng))?;
        let v = crate::io::readback::scalar(loss.clone());
        if !v.is_finite() {
            bail!("loss `ce` is {v} at step {step}; stopping without saving");
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &self.gpt);
        let norm = global_norm(&self.gpt, &grads);
        let o = &self.cfg.optim;
        let lr = o.schedule.lr(o.lr, step, self.cfg.run.steps);
        self.gpt = self.opt.step(self.gpt.clone(), &mut grads, lr, clip_scale(o.clip, norm));
        self.ema.update(&self.gpt);
        self.step += 1;
        Ok(vec![("ce", v as f64), ("lr", lr), ("grad_norm", norm)])
    }

    /// Trains to run.steps (or run.max_minutes); the summary has the final validation loss
    /// and the exported EMA weights.
    pub fn run(&mut self) -> Result<Summary> {
        super::run_loop::run(self)
    }
}

/// The images of step `step`: `batch` indices from the epoch's shuffle of `train_idx`.
fn step_items(train_idx: &[usize], batch: usize, seed: u64, step: usize) -> Vec<usize> {
    let per_epoch = (train_idx.len() / batch).max(1);
    let (epoch, k) = (step / per_epoch, step % per_epoch);
    let mut order = train_idx.to_vec();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ epoch as u64));
    (0..batch).map(|j| order[(k * batch + j) % order.len()]).collect()
}

impl Trainable for ArTrainer {
    type Input = Vec<usize>;
    const CURVE: &'static str = "ce";
    const VAL: &'static str = "val_ce";

    fn state(&self) -> RunState<'_> {
        RunState { cfg: &self.cfg.run, dir: &self.run, step: self.step }
    }

    /// The images of each step.
    fn start(&mut self) -> Result<Box<dyn Iterator<Item = Result<Vec<usize>>>>> {
        let (train_idx, batch, seed) = (self.train_idx.clone(), self.cfg.batch_size, self.cfg.run.seed);
        Ok(Box::new((self.step..).map(move |step| Ok(step_items(&train_idx, batch, seed, step)))))
    }

    fn step(&mut self, items: &Vec<usize>) -> Result<Losses> {
        self.train_step(items)
    }

    fn progress(&self, losses: &Losses, _: Option<f64>) -> String {
        let ce = losses.iter().find(|(k, _)| *k == "ce").map_or(0.0, |(_, v)| *v);
        format!("ce {ce:.4}")
    }

    fn validation(&self) -> Result<Losses> {
        Ok(vec![(Self::VAL, self.validate()?)])
    }

    fn save_checkpoint(&self) -> Result<()> {
        ArTrainer::save_checkpoint(self)
    }

    fn export(&self, out: &Path) -> Result<PathBuf> {
        let path = out.join("gpt_ema.safetensors");
        let weights = export(&self.ema.apply(self.gpt.clone()), &self.names);
        write_safetensors(&path, &weights, WEIGHTS, &self.run.outputs)?;
        Ok(path)
    }
}
