//! The tokenizer trainer in the shared run loop: prefetched micro-batches, the sample grids,
//! validation PSNR and the exported EMA weights.
use super::Trainer;
use crate::io::data::Batch;
use crate::io::image::{merge_map, save_image, tensor_to_rgb};
use crate::train::run_loop::{self, Losses, RunState, Summary, Trainable};
use anyhow::{anyhow, Result};
use burn::prelude::*;
use std::path::{Path, PathBuf};

impl Trainer {
    /// Trains until `run.steps` (or `run.max_minutes`), logging, sampling and checkpointing.
    pub fn run(&mut self) -> Result<Summary> {
        let summary = run_loop::run(self)?;
        let skipped = self.train.skipped.load(std::sync::atomic::Ordering::Relaxed);
        if skipped > 0 {
            eprintln!("warning: {skipped} unreadable images were skipped");
        }
        Ok(summary)
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
        save_image(&grid, path, &self.run.outputs)
    }
}

impl Trainable for Trainer {
    type Input = Vec<Batch>;
    const CURVE: &'static str = "rec";
    const VAL: &'static str = "val_psnr";

    fn state(&self) -> RunState<'_> {
        RunState { cfg: &self.cfg.run, dir: &self.run, step: self.step }
    }

    /// `run.out_dir/samples`, and `optim.accumulate` prefetched micro-batches per step.
    fn start(&mut self) -> Result<Box<dyn Iterator<Item = Result<Vec<Batch>>>>> {
        self.run.outputs.dir(&self.run.dir.join("samples"))?;
        let accum = self.cfg.optim.accumulate;
        let rx = self.train.prefetch(self.step * accum, self.cfg.run.steps * accum, 4);
        Ok(Box::new(std::iter::repeat_with(move || {
            (0..accum).map(|_| rx.recv().map_err(|_| anyhow!("data loader stopped"))?.1).collect()
        })))
    }

    fn step(&mut self, batches: &Vec<Batch>) -> Result<Losses> {
        self.train_step(batches)
    }

    fn images(&self, batches: &Vec<Batch>) -> Option<usize> {
        Some(batches.iter().map(|b| b.size).sum())
    }

    fn progress(&self, losses: &Losses, images_per_s: Option<f64>) -> String {
        let get = |k: &str| losses.iter().find(|(n, _)| *n == k).map_or(0.0, |(_, v)| *v);
        format!("rec {:.4} K {} {:.1} img/s", get("rec"), get("K"), images_per_s.unwrap_or(0.0))
    }

    /// The sample grid of the step's first micro-batch every `run.sample_every` steps.
    fn after_step(&self, batches: &Vec<Batch>, step: usize) -> Result<()> {
        let run = &self.cfg.run;
        if run.sample_every > 0 && (step.is_multiple_of(run.sample_every) || step == run.steps) {
            self.write_samples(&batches[0], &run.out_dir.join("samples").join(format!("step_{step:07}.png")))?;
        }
        Ok(())
    }

    /// PSNR of the EMA weights on `run.val_images` validation images.
    fn validation(&self) -> Result<Losses> {
        let (psnr, lpips) = self.validate(self.cfg.run.val_images, None)?;
        Ok([(Self::VAL, Some(psnr)), ("val_lpips", lpips)].into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }

    fn save_checkpoint(&self) -> Result<()> {
        Trainer::save_checkpoint(self)
    }

    fn export(&self, out: &Path) -> Result<PathBuf> {
        let path = out.join("tokenizer_ema.safetensors");
        self.export_ema(&path)?;
        Ok(path)
    }
}
