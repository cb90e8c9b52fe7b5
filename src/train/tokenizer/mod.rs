//! The tokenizer trainer (taming/models/lfqgan_rep.py training_step): per step a kept count K
//! drawn from the candidates, reconstruction + LPIPS + adversarial + LFQ + alignment losses for
//! the generator, hinge + LeCam for the discriminator, EMA, checkpoints and resume.
mod run;
mod step;

use super::checkpoint::Checkpoint;
use super::config::{DataSource, Optimizer, TrainConfig};
use super::optim::{accumulate, clip_scale, flat_inner, global_norm, Adam, Ema};
use super::run_dir::{RunDir, Start};
use super::run_loop::Losses;
use crate::io::data::{check_readable, Augment, Batch, FashionMnist, ImageFolder, Loader, Source, FASHION_MNIST_DIR};
use crate::io::output::Outputs;
use crate::io::weights::{export, HostTensor, Weights};
use crate::loss::align::Teacher;
use crate::loss::gan::{Discriminator, LeCam};
use crate::loss::lpips::Lpips;
use crate::tokenizer::tome::KeepPlan;
use crate::tokenizer::Tokenizer;
use anyhow::{anyhow, bail, Context, Result};
use burn::module::{Module, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use step::Sums;

pub struct Trainer {
    pub cfg: TrainConfig,
    device: Device,
    pub tok: Tokenizer,
    /// The merge schedule in force: K drawn per step from the candidates (kept across resume).
    pub keep: KeepPlan,
    disc: Discriminator,
    disc_names: HashMap<ParamId, String>,
    lpips: Option<Lpips>,
    opt_g: Adam,
    opt_d: Adam,
    ema: Ema,
    lecam: LeCam,
    /// The next step to run.
    pub step: usize,
    train: Arc<Loader>,
    val: Arc<dyn Source>,
    teacher: Option<Teacher>,
    /// The locked run folder (`run.out_dir`).
    pub run: RunDir,
}

fn open_source(cfg: &TrainConfig, val: bool) -> Result<Arc<dyn Source>> {
    let d = &cfg.data;
    Ok(match d.source {
        DataSource::FashionMnist => {
            let dir = d.path.clone().unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR));
            Arc::new(FashionMnist::open(&dir, if val { "test" } else { "train" })?)
        }
        DataSource::Folder => {
            let p = if val { d.val_path.clone().or_else(|| d.path.clone()) } else { d.path.clone() };
            Arc::new(ImageFolder::open(&p.ok_or_else(|| anyhow!("data.path is required"))?)?)
        }
    })
}

/// The files and folders a run reads (its outputs may not replace or land in them).
fn input_paths(cfg: &TrainConfig) -> Vec<PathBuf> {
    let (d, l) = (&cfg.data, &cfg.loss);
    [&d.path, &d.val_path, &l.lpips_weights, &l.teacher_features].into_iter().flatten().cloned().collect()
}

impl Trainer {
    /// A fresh run, or (`Start::Resume`) the state of the last checkpoint in `run.out_dir`.
    pub fn new(cfg: TrainConfig, start: Start) -> Result<Self> {
        let device = crate::device().autodiff();
        let source = open_source(&cfg, false)?;
        check_readable(source.as_ref())?;
        let val = open_source(&cfg, true)?;
        let res = cfg.tokenizer.ddconfig.resolution as u32;
        let augment = Augment {
            resolution: res,
            random_crop: cfg.data.random_crop,
            crop_scale: cfg.data.crop_scale,
            flip: cfg.data.flip,
            preprocess: cfg.tokenizer.preprocess,
        };
        let strong = Augment { random_crop: true, flip: true, ..augment.clone() };
        let train = Arc::new(Loader {
            source,
            augment,
            strong,
            batch: cfg.data.batch_size,
            seed: cfg.run.seed,
            skipped: Arc::new(AtomicUsize::new(0)),
        });

        let run = RunDir::open(&cfg.run, start, Outputs::new(input_paths(&cfg)), "tokenizer_ema.safetensors")?;
        let ckpt = Checkpoint::resume(&cfg.run, start == Start::Resume)?;
        let group = |name: &str| -> BTreeMap<String, HostTensor> {
            ckpt.as_ref().and_then(|c| c.groups.get(name).cloned()).unwrap_or_default()
        };
        let (tw, dw) = match &ckpt {
            Some(_) => (Weights::from_map(group("model"), &device), Weights::from_map(group("disc"), &device)),
            None => (Weights::random(cfg.run.seed, &device), Weights::random(cfg.run.seed ^ 0xD15C, &device)),
        };
        let tok = Tokenizer::load(&tw, &cfg.tokenizer).context("checkpoint does not match the tokenizer config")?;
        let l = &cfg.loss;
        let disc = Discriminator::load(dw.root(), 3, l.disc_ndf, l.disc_layers)
            .context("checkpoint does not match the discriminator config")?;
        dw.finish(&[])?;
        let disc_names = dw.names();
        let lpips = match (&l.lpips_weights, l.perceptual_weight > 0.0) {
            (Some(p), true) => {
                let w = Weights::open(p, false, &device)
                    .with_context(|| format!("LPIPS weights {} (run scripts/fetch-weights.sh)", p.display()))?;
                let net = Lpips::load(w.root())?.no_grad();
                w.finish(&[])?;
                Some(net)
            }
            _ => None,
        };
        let teacher = l.teacher_features.as_ref().map(|p| Teacher::load(p, train.source.len())).transpose()?;
        let o = &cfg.optim;
        let adamw = o.optimizer == Optimizer::AdamW;
        let mut me = Self {
            device,
            disc,
            disc_names,
            lpips,
            opt_g: Adam::new((o.betas[0], o.betas[1]), o.weight_decay, adamw),
            opt_d: Adam::new((o.betas[0], o.betas[1]), o.weight_decay, adamw),
            ema: Ema::new(o.ema),
            lecam: LeCam::default(),
            step: 0,
            train,
            val,
            teacher,
            run,
            keep: tok.plan.clone(),
            tok,
            cfg,
        };
        if let Some(c) = ckpt {
            me.restore(&c)?;
        }
        Ok(me)
    }

    /// The training images.
    pub fn train_source(&self) -> Arc<dyn Source> {
        self.train.source.clone()
    }

    fn tensor(&self, data: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(data, shape), &self.device)
    }

    /// Runs one training step (all micro-batches) and returns its losses: forward, losses
    /// and backward per micro-batch, then the generator's and discriminator's optimizer steps.
    pub fn train_step(&mut self, batches: &[Batch]) -> Result<Losses> {
        let step = self.step;
        let cfg = self.cfg.clone();
        let (l, o) = (&cfg.loss, &cfg.optim);
        let mut rng = StdRng::seed_from_u64(cfg.run.seed ^ (step as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        if self.keep.candidates.is_some() {
            self.keep.sample(rng.random::<f64>());
        }
        let adversarial = step >= l.disc_start;
        let lr = o.schedule.lr(o.lr, step, cfg.run.steps);
        let mut sums = Sums { map: BTreeMap::new(), n: batches.len() as f64, step };
        let (mut grads_g, mut grads_d) = (GradientsParams::new(), GradientsParams::new());
        for batch in batches {
            let (g, d) = self.backward(batch, adversarial, &mut sums)?;
            accumulate(&self.tok, &mut grads_g, g);
            if let Some(d) = d {
                accumulate(&self.disc, &mut grads_d, d);
            }
        }
        let norm_g = global_norm(&self.tok, &grads_g);
        if !norm_g.is_finite() {
            bail!("generator gradient norm is {norm_g} at step {step}; stopping without saving");
        }
        self.tok = self.opt_g.step(self.tok.clone(), &mut grads_g, lr, clip_scale(o.clip, norm_g));
        if adversarial {
            let norm_d = global_norm(&self.disc, &grads_d);
            let disc = self.disc.clone();
            self.disc = self.opt_d.step(disc, &mut grads_d, lr, clip_scale(o.clip, norm_d));
        }
        self.ema.update(&self.tok);
        self.step += 1;
        let mut out: Losses = vec![("lr", lr), ("grad_norm", norm_g), ("K", self.keep.kept()? as f64)];
        out.extend(sums.map);
        Ok(out)
    }

    /// Mean PSNR (dB, 0–255 scale) and, with the perceptual loss's network, LPIPS of the EMA
    /// model on the first `n` validation images at the kept count `keep` (default: the config's).
    pub fn validate(&self, n: usize, keep: Option<usize>) -> Result<(f64, Option<f64>)> {
        let model = self.ema_model();
        let d = &self.cfg.tokenizer.ddconfig;
        let plan = match keep {
            Some(k) => model.keep(k)?,
            None => KeepPlan::new(self.cfg.tokenizer.embed_res(), d.num_att_blocks, d.merge_num, d.merge_ratio, None)?,
        };
        let batch = self.cfg.data.batch_size.min(n.max(1));
        let loader = Loader::in_order(self.val.clone(), d.resolution as u32, self.cfg.tokenizer.preprocess, batch);
        let lpips = self.lpips.clone().map(|l| l.valid());
        let n = n.min(self.val.len());
        crate::eval::mean_psnr_lpips(&model, &plan, |i| loader.batch_in_order(i), n, lpips.as_ref(), &model.device())
    }

    /// The tokenizer with the EMA weights, without gradient tracking.
    pub fn ema_model(&self) -> Tokenizer {
        self.ema.apply(self.tok.clone()).valid()
    }

    /// Writes the EMA weights as a plain safetensors file that `reconstruct` loads.
    pub fn export_ema(&self, path: &Path) -> Result<()> {
        self.ema_model().save(path, &self.run.outputs)
    }

    pub fn save_checkpoint(&self) -> Result<()> {
        let mut groups = BTreeMap::new();
        groups.insert("model".to_string(), export(&self.tok, &self.tok.names));
        groups.insert("ema".to_string(), export(&self.ema_model(), &self.tok.names));
        let mut disc = export(&self.disc, &self.disc_names);
        disc.extend(self.disc.buffers());
        groups.insert("disc".to_string(), disc);
        for (g, opt, names) in [("opt_g", &self.opt_g, &self.tok.names), ("opt_d", &self.opt_d, &self.disc_names)] {
            let (m, v) = opt.export_state(names);
            groups.insert(format!("{g}.m"), m);
            groups.insert(format!("{g}.v"), v);
        }
        let meta = serde_json::json!({
            "step": self.step, "opt_g_t": self.opt_g.t, "opt_d_t": self.opt_d.t, "ema_updates": self.ema.updates,
            "lecam_real": self.lecam.ema_real, "lecam_fake": self.lecam.ema_fake,
            "plan_r": self.keep.r, "plan_total": self.keep.total_merge, "plan_res": self.keep.merge_res,
            "config": toml::to_string(&self.cfg).unwrap_or_default(),
        });
        Checkpoint { groups, meta }.save(&Checkpoint::path(&self.cfg.run), &self.run.outputs)
    }

    fn restore(&mut self, c: &Checkpoint) -> Result<()> {
        let m = &c.meta;
        let u = |k: &str| m[k].as_u64().ok_or_else(|| anyhow!("checkpoint metadata lacks `{k}`"));
        self.step = u("step")? as usize;
        self.opt_g.t = u("opt_g_t")?;
        self.opt_d.t = u("opt_d_t")?;
        self.ema.updates = u("ema_updates")?;
        self.lecam.ema_real = m["lecam_real"].as_f64().unwrap_or(0.0);
        self.lecam.ema_fake = m["lecam_fake"].as_f64().unwrap_or(0.0);
        self.keep.r = m["plan_r"].as_i64().unwrap_or(self.keep.r);
        self.keep.total_merge = m["plan_total"].as_i64().or(self.keep.total_merge);
        self.keep.merge_res = m["plan_res"].as_i64().unwrap_or(self.keep.merge_res);
        let ema = c.groups.get("ema").ok_or_else(|| anyhow!("checkpoint has no EMA weights"))?;
        for (id, name) in &self.tok.names {
            let t = ema.get(name).ok_or_else(|| anyhow!("checkpoint EMA lacks `{name}`"))?;
            self.ema.shadow.insert(*id, flat_inner(t, &self.device));
        }
        for (g, names, opt) in
            [("opt_g", &self.tok.names, &mut self.opt_g), ("opt_d", &self.disc_names, &mut self.opt_d)]
        {
            if let (Some(m), Some(v)) = (c.groups.get(&format!("{g}.m")), c.groups.get(&format!("{g}.v"))) {
                opt.import_state(names, m, v, &self.device);
            }
        }
        Ok(())
    }
}
