//! The tokenizer trainer (taming/models/lfqgan_rep.py training_step): per step a kept count K
//! drawn from the candidates, reconstruction + LPIPS + adversarial + LFQ + alignment losses for
//! the generator, hinge + LeCam for the discriminator, EMA, checkpoints and resume.
use super::checkpoint::Checkpoint;
use super::config::TrainConfig;
use super::optim::{accumulate, flat_inner, global_norm, Adam, Ema};
use crate::io::data::{check_readable, Augment, Batch, FashionMnist, ImageFolder, Loader, Source, FASHION_MNIST_DIR};
use crate::io::image::{merge_map, save_png, tensor_to_rgb};
use crate::io::weights::{export, HostTensor, Weights};
use crate::loss::gan::{hinge_d_loss, hinge_g_loss, non_saturating_g_loss, Discriminator, LeCam};
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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

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
    teacher: Option<(Vec<f32>, usize)>,
}

/// Losses of one step, by name (generator terms, then discriminator terms).
pub type Losses = Vec<(&'static str, f64)>;

pub struct Summary {
    pub steps: usize,
    pub images_per_s: f64,
    pub val_psnr: f64,
    pub exported: PathBuf,
}

fn open_source(cfg: &TrainConfig, val: bool) -> Result<Arc<dyn Source>> {
    let d = &cfg.data;
    Ok(match d.source.as_str() {
        "fashion-mnist" => {
            let dir = d.path.clone().unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR));
            Arc::new(FashionMnist::open(&dir, if val { "test" } else { "train" })?)
        }
        _ => {
            let p = if val { d.val_path.clone().or_else(|| d.path.clone()) } else { d.path.clone() };
            Arc::new(ImageFolder::open(&p.ok_or_else(|| anyhow!("data.path is required"))?)?)
        }
    })
}

impl Trainer {
    pub fn checkpoint_path(cfg: &TrainConfig) -> PathBuf {
        cfg.run.out_dir.join("checkpoint.safetensors")
    }

    /// A fresh run, or (with `resume`) the state of the last checkpoint in `run.out_dir`.
    pub fn new(cfg: TrainConfig, resume: bool) -> Result<Self> {
        let device = crate::device().autodiff();
        let source = open_source(&cfg, false)?;
        check_readable(source.as_ref())?;
        let val = open_source(&cfg, true)?;
        let res = cfg.tokenizer.ddconfig.resolution as u32;
        let augment = Augment {
            resolution: res,
            random_crop: cfg.data.random_crop,
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

        let ckpt_path = Self::checkpoint_path(&cfg);
        let ckpt = if resume {
            if !ckpt_path.exists() {
                bail!("--resume: no checkpoint at {}", ckpt_path.display());
            }
            Some(Checkpoint::load(&ckpt_path)?)
        } else {
            None
        };
        let group = |name: &str| -> BTreeMap<String, HostTensor> {
            ckpt.as_ref().and_then(|c| c.groups.get(name).cloned()).unwrap_or_default()
        };
        let (tw, dw) = match &ckpt {
            Some(_) => (Weights::from_map(group("model"), &device), Weights::from_map(group("disc"), &device)),
            None => (Weights::random(cfg.run.seed, &device), Weights::random(cfg.run.seed ^ 0xD15C, &device)),
        };
        let tok = Tokenizer::load(&tw, &cfg.tokenizer).context("checkpoint does not match the tokenizer config")?;
        let l = &cfg.loss;
        let disc = Discriminator::load(&dw, "", 3, l.disc_ndf, l.disc_layers)
            .context("checkpoint does not match the discriminator config")?;
        dw.finish(&[])?;
        let disc_names = dw.names();
        let lpips = match (&l.lpips_weights, l.perceptual_weight > 0.0) {
            (Some(p), true) => {
                let w = Weights::open(p, false, &device)
                    .with_context(|| format!("LPIPS weights {} (run scripts/fetch-weights.sh)", p.display()))?;
                let net = Lpips::load(&w, "")?.no_grad();
                w.finish(&[])?;
                Some(net)
            }
            _ => None,
        };
        let teacher = match &l.teacher_features {
            Some(p) => {
                let m = crate::io::weights::read_safetensors(p)?;
                let f = m.get("features").ok_or_else(|| anyhow!("{} has no `features` tensor", p.display()))?;
                if f.shape.len() != 2 || f.shape[0] != train.source.len() {
                    bail!("teacher features {} must be [N={}, D], got {:?}", p.display(), train.source.len(), f.shape);
                }
                Some((f.data.clone(), f.shape[1]))
            }
            None => None,
        };
        let o = &cfg.optim;
        let adamw = o.optimizer == "adamw";
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

    /// Runs one training step (all micro-batches) and returns its losses.
    pub fn train_step(&mut self, batches: &[Batch]) -> Result<Losses> {
        let step = self.step;
        let cfg = self.cfg.clone();
        let (l, o) = (&cfg.loss, &cfg.optim);
        let res = cfg.tokenizer.ddconfig.resolution;
        let mut rng = StdRng::seed_from_u64(cfg.run.seed ^ (step as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        if self.keep.candidates.is_some() {
            self.keep.sample(rng.random::<f64>());
        }
        let adversarial = step >= l.disc_start;
        let lr = o.schedule.lr(o.lr, step, cfg.run.steps);
        let mut sums: BTreeMap<&'static str, f64> = BTreeMap::new();
        let mut grads_g = GradientsParams::new();
        let mut grads_d = GradientsParams::new();
        for batch in batches {
            let b = batch.size;
            let x = self.tensor(batch.images.clone(), [b, 3, res, res]);
            let enc = self.tok.encoder.forward(x.clone(), &self.keep)?;
            let lfq = self.tok.lfq();
            let q = lfq.quantize(enc.z.clone());
            let lf = lfq.losses(enc.z);
            let group = enc.track.image_groups(true);
            // With the learned source recovery, its predicted S is trained against the encoder's
            // S (BCE) and the decoder sees the tokens placed by the encoder's groups.
            let source_bce = self.tok.recovery.as_ref().map(|r| {
                let pred = r.forward(crate::nn::map_to_tokens(q.quantized.clone())).source.clamp(1e-6, 1.0 - 1e-6);
                let [b, k, l] = pred.dims();
                let t = Tensor::<3>::from_data(
                    TensorData::new(crate::tokenizer::tome::source_matrix(&group, k), [b, k, l]),
                    &self.device,
                );
                (t.clone() * pred.clone().log() + (t.neg() + 1.0) * (pred.neg() + 1.0).log()).mean().neg()
            });
            let last_in = self.tok.decoder.last_input(crate::nn::tokens_to_map(
                crate::tokenizer::recovery::token_unmerge(crate::nn::map_to_tokens(q.quantized), &group),
            ));
            let rec = self.tok.decoder.conv_out.forward(last_in.clone());

            // The image losses: nll = reconstruction + perceptual, g = adversarial.
            let nll_of = |r: Tensor<4>| -> Vec<(&'static str, Tensor<1>, f64)> {
                let diff = x.clone() - r.clone();
                let rec_loss = if l.reconstruction == "l2" { diff.powi_scalar(2).mean() } else { diff.abs().mean() };
                let mut t = vec![("rec", rec_loss, 1.0)];
                if let Some(net) = &self.lpips {
                    t.push(("lpips", net.forward(x.clone(), r).mean(), l.perceptual_weight));
                }
                t
            };
            let g_of = |r: Tensor<4>| -> Tensor<1> {
                let fake = self.disc.forward(r, true);
                if l.gen_adv_loss == "hinge" {
                    hinge_g_loss(fake)
                } else {
                    non_saturating_g_loss(fake)
                }
            };
            let mut terms: Vec<(&'static str, Tensor<1>, f64)> = Vec::new();
            match (adversarial, l.adaptive_disc_weight) {
                (true, Some(disc_weight)) => {
                    // ∂nll/∂x̂ and ∂g/∂x̂ on a detached copy of the reconstruction; their gradients
                    // on the last layer give the adaptive weight, and one surrogate term
                    // x̂ · (∂nll/∂x̂ + w·∂g/∂x̂) carries both into the decoder and encoder.
                    let grad_of = |loss: Tensor<1>, leaf: &Tensor<4>| {
                        leaf.grad(&loss.backward()).expect("gradient of the reconstruction")
                    };
                    let leaf = rec.clone().detach().require_grad();
                    let nll_terms = nll_of(leaf.clone());
                    let nll = nll_terms
                        .iter()
                        .map(|(_, t, w)| t.clone() * *w)
                        .reduce(|a, b| a + b)
                        .expect("reconstruction loss");
                    let d_nll = grad_of(nll, &leaf);
                    let leaf_g = rec.clone().detach().require_grad();
                    let g = g_of(leaf_g.clone());
                    let d_g = grad_of(g.clone(), &leaf_g);
                    let h = last_in.clone().inner();
                    let norm = |t: Tensor<4>| -> f64 { t.powi_scalar(2).sum().sqrt().into_scalar::<f32>() as f64 };
                    let n_nll = norm(self.tok.decoder.conv_out.weight_grad(h.clone(), d_nll.clone()));
                    let n_g = norm(self.tok.decoder.conv_out.weight_grad(h, d_g.clone()));
                    let w = (n_nll / (n_g + 1e-4)).clamp(0.0, 1e4) * disc_weight;
                    *sums.entry("d_weight").or_default() += w / batches.len() as f64;
                    // Logged only (their gradients went into the surrogate).
                    for (name, t, _) in nll_terms {
                        terms.push((name, t.detach(), 0.0));
                    }
                    terms.push(("g_adv", g.detach(), 0.0));
                    let surrogate = (rec.clone() * Tensor::from_inner(d_nll + d_g * w)).sum();
                    terms.push(("image_grad", surrogate, 1.0));
                }
                _ => {
                    terms.extend(nll_of(rec.clone()));
                    if adversarial && l.gen_loss_weight > 0.0 {
                        terms.push(("g_adv", g_of(rec.clone()), l.gen_loss_weight));
                    }
                }
            }
            let enlarge =
                l.codebook_enlarge_ratio * (1.0 - step as f64 / l.codebook_enlarge_steps.max(1) as f64).max(0.0) + 1.0;
            terms.push(("entropy", lf.entropy_aux, l.codebook_weight * enlarge));
            terms.push(("commit", lf.commitment, l.commit_weight));
            if let Some(bce) = source_bce {
                terms.push(("source_bce", bce, l.source_weight));
            }
            if l.cls_weight > 0.0 && self.tok.encoder.dist_head.is_some() {
                let views = self.tensor(batch.views.clone(), [b, 3, res, res]);
                let head = self.tok.encoder.head(views, &self.keep)?;
                terms.push(("cls", self.alignment(head, batch)?, l.cls_weight));
            }
            let mut total: Option<Tensor<1>> = None;
            for (name, t, w) in &terms {
                let v: f32 = t.clone().into_scalar();
                if !v.is_finite() {
                    bail!("loss `{name}` is {v} at step {step}; stopping without saving");
                }
                *sums.entry(name).or_default() += v as f64 / batches.len() as f64;
                let wt = t.clone() * *w;
                total = Some(match total {
                    Some(a) => a + wt,
                    None => wt,
                });
            }
            let total = total.expect("at least the reconstruction loss") / batches.len() as f64;
            let g = GradientsParams::from_grads(total.backward(), &self.tok);
            accumulate(&self.tok, &mut grads_g, g);

            if adversarial {
                let real = self.disc.forward(x.detach(), true);
                let fake = self.disc.forward(rec.detach(), true);
                let mut d = if l.disc_loss == "hinge" {
                    hinge_d_loss(real.clone(), fake.clone())
                } else {
                    (burn::tensor::activation::softplus(real.clone().neg(), 1.0).mean()
                        + burn::tensor::activation::softplus(fake.clone(), 1.0).mean())
                        * 0.5
                };
                if l.lecam_weight > 0.0 {
                    let lc = self.lecam.update_and_loss(real, fake);
                    *sums.entry("lecam").or_default() += lc.clone().into_scalar::<f32>() as f64 / batches.len() as f64;
                    d = d + lc * l.lecam_weight;
                }
                let v: f32 = d.clone().into_scalar();
                if !v.is_finite() {
                    bail!("loss `disc` is {v} at step {step}; stopping without saving");
                }
                *sums.entry("disc").or_default() += v as f64 / batches.len() as f64;
                let g = GradientsParams::from_grads((d / batches.len() as f64).backward(), &self.disc);
                accumulate(&self.disc, &mut grads_d, g);
            }
        }
        let clip = |norm: f64| o.clip.map(|c| if norm > c { c / (norm + 1e-6) } else { 1.0 }).unwrap_or(1.0);
        let norm_g = global_norm(&self.tok, &grads_g);
        if !norm_g.is_finite() {
            bail!("generator gradient norm is {norm_g} at step {step}; stopping without saving");
        }
        self.tok = self.opt_g.step(self.tok.clone(), &mut grads_g, lr, clip(norm_g));
        if adversarial {
            let norm_d = global_norm(&self.disc, &grads_d);
            let disc = self.disc.clone();
            self.disc = self.opt_d.step(disc, &mut grads_d, lr, clip(norm_d));
        }
        self.ema.update(&self.tok);
        self.step += 1;
        let mut out: Losses = vec![("lr", lr), ("grad_norm", norm_g), ("K", self.keep.kept()? as f64)];
        out.extend(sums);
        Ok(out)
    }

    /// Label-smoothed cross-entropy with the class labels, or KL (T = 4) to teacher features.
    fn alignment(&self, head: Tensor<2>, batch: &Batch) -> Result<Tensor<1>> {
        let [b, classes] = head.dims();
        match &self.teacher {
            Some((feat, dim)) => {
                if *dim != classes {
                    bail!("teacher features have {dim} dims, the [CLS] head {classes} (set num_classes)");
                }
                let t: Vec<f32> =
                    batch.indices.iter().flat_map(|&i| feat[i * dim..(i + 1) * dim].iter().copied()).collect();
                Ok(crate::loss::align::distill_kl(
                    head,
                    Tensor::<2>::from_data(TensorData::new(t, [b, classes]), &self.device),
                    4.0,
                ))
            }
            None => {
                if let Some(bad) = batch.labels.iter().find(|&&c| c >= classes) {
                    bail!("label {bad} is outside the {classes} classes of the [CLS] head (set num_classes)");
                }
                Ok(crate::loss::align::label_smoothed_ce(head, &batch.labels, self.cfg.loss.label_smoothing))
            }
        }
    }

    /// Mean PSNR (dB, 0–255 scale) of the EMA model on the first `n` validation images at the
    /// kept count `keep` (default: the config's).
    pub fn validate(&self, n: usize, keep: Option<usize>) -> Result<f64> {
        let model = self.ema_model();
        let d = &self.cfg.tokenizer.ddconfig;
        let plan = match keep {
            Some(k) => model.keep(k)?,
            None => KeepPlan::new(self.cfg.tokenizer.embed_res(), d.num_att_blocks, d.merge_num, d.merge_ratio, None)?,
        };
        let res = d.resolution as u32;
        let aug =
            Augment { resolution: res, random_crop: false, flip: false, preprocess: self.cfg.tokenizer.preprocess };
        let loader = Loader {
            source: self.val.clone(),
            augment: aug.clone(),
            strong: aug,
            batch: self.cfg.data.batch_size.min(n.max(1)),
            seed: 0,
            skipped: Arc::new(AtomicUsize::new(0)),
        };
        crate::eval::mean_psnr(&model, &plan, |i| loader.batch_in_order(i), n.min(self.val.len()), &model.device())
    }

    /// The tokenizer with the EMA weights, without gradient tracking.
    pub fn ema_model(&self) -> Tokenizer {
        self.ema.apply(self.tok.clone()).valid()
    }

    /// Writes the EMA weights as a plain safetensors file that `reconstruct` loads.
    pub fn export_ema(&self, path: &Path) -> Result<()> {
        self.ema_model().save(path)
    }

    pub fn save_checkpoint(&self) -> Result<()> {
        let mut groups = BTreeMap::new();
        groups.insert("model".to_string(), export(&self.tok, &self.tok.names));
        groups.insert("ema".to_string(), export(&self.ema_model(), &self.tok.names));
        let mut disc = export(&self.disc, &self.disc_names);
        disc.extend(self.disc.buffers(""));
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
        Checkpoint { groups, meta }.save(&Self::checkpoint_path(&self.cfg))
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

    /// Trains until `run.steps` (or `run.max_minutes`), logging, sampling and checkpointing.
    pub fn run(&mut self) -> Result<Summary> {
        let cfg = self.cfg.clone();
        let out = &cfg.run.out_dir;
        std::fs::create_dir_all(out.join("samples")).with_context(|| format!("cannot create {}", out.display()))?;
        let mut metrics = std::fs::OpenOptions::new().create(true).append(true).open(out.join("metrics.jsonl"))?;
        let accum = cfg.optim.accumulate;
        let start = self.step;
        let total = cfg.run.steps;
        let rx = self.train.prefetch(start * accum, total * accum, 4);
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_position(start as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise}<{eta_precise} {msg}")
                .unwrap(),
        );
        let t0 = Instant::now();
        let mut images = 0usize;
        let fault_exit: Option<usize> =
            std::env::var("MERGEVQ_FAULT_EXIT_AFTER_STEP").ok().and_then(|v| v.parse().ok());
        let mut curve: Vec<(f64, f64)> = Vec::new();
        while self.step < total {
            let batches: Vec<Batch> = (0..accum)
                .map(|_| rx.recv().map(|(_, b)| b).map_err(|_| anyhow!("data loader stopped")))
                .collect::<Result<_>>()?;
            images += batches.iter().map(|b| b.size).sum::<usize>();
            let ts = Instant::now();
            let losses = self.train_step(&batches)?;
            let ips = batches.iter().map(|b| b.size).sum::<usize>() as f64 / ts.elapsed().as_secs_f64();
            let step = self.step;
            let get = |k: &str| losses.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            if let Some(r) = get("rec") {
                curve.push((step as f64, r));
            }
            if step % cfg.run.log_every.max(1) == 0 || step == total {
                let mut line = serde_json::Map::new();
                line.insert("step".into(), step.into());
                for (k, v) in &losses {
                    line.insert((*k).into(), serde_json::json!(v));
                }
                line.insert("images_per_s".into(), serde_json::json!(ips));
                writeln!(metrics, "{}", serde_json::Value::Object(line))?;
                pb.set_message(format!(
                    "rec {:.4} K {} {:.1} img/s",
                    get("rec").unwrap_or(0.0),
                    get("K").unwrap_or(0.0),
                    ips
                ));
            }
            if cfg.run.sample_every > 0 && (step % cfg.run.sample_every == 0 || step == total) {
                self.write_samples(&batches[0], &out.join("samples").join(format!("step_{step:07}.png")))?;
            }
            if cfg.run.val_every > 0 && step % cfg.run.val_every == 0 {
                let p = self.validate(cfg.run.val_images, None)?;
                writeln!(metrics, "{}", serde_json::json!({"step": step, "val_psnr": p}))?;
            }
            let timed_out = cfg.run.max_minutes.is_some_and(|m| t0.elapsed().as_secs_f64() > m * 60.0);
            if step % cfg.run.checkpoint_every.max(1) == 0 || step == total || timed_out {
                self.save_checkpoint()?;
            }
            if fault_exit == Some(step) {
                std::process::exit(137);
            }
            pb.set_position(step as u64);
            if timed_out {
                pb.suspend(|| eprintln!("note: stopping at step {step}: run.max_minutes reached"));
                break;
            }
        }
        pb.finish_and_clear();
        let images_per_s = images as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        if curve.len() > 1 {
            save_png(
                &crate::eval::plot::LinePlot::new("step", "loss").with("training loss", curve).render(640, 360)?,
                &out.join("loss_curve.png"),
            )?;
        }
        let exported = out.join("tokenizer_ema.safetensors");
        self.export_ema(&exported)?;
        let val_psnr = self.validate(cfg.run.val_images, None)?;
        writeln!(metrics, "{}", serde_json::json!({"step": self.step, "val_psnr": val_psnr, "final": true}))?;
        let skipped = self.train.skipped.load(std::sync::atomic::Ordering::Relaxed);
        if skipped > 0 {
            eprintln!("warning: {skipped} unreadable images were skipped");
        }
        Ok(Summary { steps: self.step - start, images_per_s, val_psnr, exported })
    }

    /// A PNG grid: inputs, reconstructions (EMA weights) and merge maps of up to 8 images.
    fn write_samples(&self, batch: &Batch, path: &Path) -> Result<()> {
        let model = self.ema_model();
        let res = self.cfg.tokenizer.ddconfig.resolution;
        let n = batch.size.min(8);
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.images[..n * 3 * res * res].to_vec(), [n, 3, res, res]),
            &model.device(),
        );
        let t = model.encode(x.clone(), &self.keep)?;
        let rec = model.decode(t.quantized, &t.group);
        let side = self.cfg.tokenizer.embed_res();
        let r = res as u32;
        let mut grid = image::RgbImage::new(r * n as u32, r * 3);
        for i in 0..n {
            let inp = tensor_to_rgb(x.clone().narrow(0, i, 1).reshape([3, res, res]));
            let out = tensor_to_rgb(rec.clone().narrow(0, i, 1).reshape([3, res, res]));
            let mm = merge_map(&inp, &t.group[i], side);
            for (row, im) in [inp, out, mm].iter().enumerate() {
                image::imageops::overlay(&mut grid, im, (i as u32 * r) as i64, (row as u32 * r) as i64);
            }
        }
        save_png(&grid, path)
    }
}
