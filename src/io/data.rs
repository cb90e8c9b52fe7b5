//! Training data: image folders (one sub-folder per class) and Fashion-MNIST idx files,
//! deterministic augmentation, and a prefetching loader that decodes batches in parallel.
use crate::io::preprocess::{pad_centre, resize_shorter, Preprocess};
use anyhow::{bail, Context, Result};
use image::{imageops::FilterType, RgbImage};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Something that yields labelled images by index.
pub trait Source: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn get(&self, i: usize) -> Result<(RgbImage, usize)>;
    fn classes(&self) -> usize;
    /// A name for messages (file path or dataset/index).
    fn name(&self, i: usize) -> String;
}

/// Fashion-MNIST from its gzip'd idx files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`).
pub struct FashionMnist {
    images: Vec<u8>,
    labels: Vec<u8>,
    split: String,
}

pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

impl FashionMnist {
    /// `split` is "train" (60 000 images) or "test" (10 000).
    pub fn open(dir: &Path, split: &str) -> Result<Self> {
        let prefix = match split {
            "train" => "train",
            "test" => "t10k",
            other => bail!("Fashion-MNIST split must be train or test, got `{other}`"),
        };
        let read = |kind: &str| -> Result<Vec<u8>> {
            let path = dir.join(format!("{prefix}-{kind}-ubyte.gz"));
            let f = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {} (apt-get install dataset-fashion-mnist)", path.display()))?;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(f)
                .read_to_end(&mut out)
                .with_context(|| format!("{} is not a valid gzip file", path.display()))?;
            Ok(out)
        };
        let images = read("images-idx3")?;
        let labels = read("labels-idx1")?;
        let be = |b: &[u8], o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
        if images.len() < 16 || be(&images, 0) != 2051 || labels.len() < 8 || be(&labels, 0) != 2049 {
            bail!("Fashion-MNIST files in {} have bad idx headers", dir.display());
        }
        let n = be(&images, 4);
        let (h, w) = (be(&images, 8), be(&images, 12));
        if (h, w) != (28, 28) || images.len() != 16 + n * 784 || labels.len() != 8 + n || be(&labels, 4) != n {
            bail!("Fashion-MNIST files in {} are truncated or inconsistent", dir.display());
        }
        Ok(Self { images: images[16..].to_vec(), labels: labels[8..].to_vec(), split: split.to_string() })
    }
}

impl Source for FashionMnist {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn get(&self, i: usize) -> Result<(RgbImage, usize)> {
        let px = &self.images[i * 784..(i + 1) * 784];
        let img = RgbImage::from_fn(28, 28, |x, y| {
            let v = px[(y * 28 + x) as usize];
            image::Rgb([v, v, v])
        });
        Ok((img, self.labels[i] as usize))
    }
    fn classes(&self) -> usize {
        10
    }
    fn name(&self, i: usize) -> String {
        format!("fashion-mnist/{}/{i}", self.split)
    }
}

/// Opens a data set named on the command line: `fashion-mnist[:train|test]` (the training split
/// by default) from [`FASHION_MNIST_DIR`], or else an image folder (see [`ImageFolder`]).
pub fn open(spec: &str) -> Result<Arc<dyn Source>> {
    Ok(match spec.split_once(':').unwrap_or((spec, "train")) {
        ("fashion-mnist", split) => Arc::new(FashionMnist::open(Path::new(FASHION_MNIST_DIR), split)?),
        _ => Arc::new(ImageFolder::open(Path::new(spec))?),
    })
}

/// An ImageNet-style folder: `root/<class>/*.{png,jpg,jpeg}`, labels from the sorted class
/// names; or a flat folder of images (one class). A folder with images both at its top level and
/// in class sub-folders is refused (the top-level ones would have no class), as is one with none.
pub struct ImageFolder {
    files: Vec<(PathBuf, usize)>,
    classes: Vec<String>,
}

impl ImageFolder {
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(crate::io::missing::Missing(format!("data folder {} does not exist", root.display())).into());
        }
        let mut dirs: Vec<PathBuf> = crate::io::fs::list_dir(root)?.into_iter().filter(|p| p.is_dir()).collect();
        dirs.sort();
        let (mut files, mut classes) = (Vec::new(), Vec::new());
        for d in &dirs {
            let imgs = images_in(d)?;
            if !imgs.is_empty() {
                let label = classes.len();
                classes.push(d.file_name().unwrap_or_default().to_string_lossy().to_string());
                files.extend(imgs.into_iter().map(|p| (p, label)));
            }
        }
        let top = images_in(root)?;
        if let (Some(img), false) = (top.first(), files.is_empty()) {
            bail!(
                "data folder {} has images at its top level ({}) and in class sub-folders: move them into a class folder",
                root.display(),
                img.display()
            );
        }
        if files.is_empty() {
            classes.push(root.file_name().unwrap_or_default().to_string_lossy().to_string());
            files.extend(top.into_iter().map(|p| (p, 0)));
        }
        if files.is_empty() {
            bail!("data folder {} holds no PNG/JPEG images", root.display());
        }
        Ok(Self { files, classes })
    }
}

/// The PNG/JPEG files directly in folder `d`, sorted.
fn images_in(d: &Path) -> Result<Vec<PathBuf>> {
    let is_image = |p: &Path| {
        matches!(
            p.extension().and_then(|e| e.to_str()).map(|e| e.to_lowercase()).as_deref(),
            Some("png" | "jpg" | "jpeg")
        )
    };
    let mut v: Vec<PathBuf> = crate::io::fs::list_dir(d)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect();
    v.sort();
    Ok(v)
}

impl Source for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn get(&self, i: usize) -> Result<(RgbImage, usize)> {
        let (path, label) = &self.files[i];
        Ok((crate::io::image::decode_image(path)?, *label))
    }
    fn classes(&self) -> usize {
        self.classes.len()
    }
    fn name(&self, i: usize) -> String {
        self.files[i].0.display().to_string()
    }
}

/// How an image becomes a `resolution`² training input.
#[derive(Clone, Debug)]
pub struct Augment {
    pub resolution: u32,
    /// Random crop (else centre crop) after resizing the shorter side.
    pub random_crop: bool,
    /// Random-resized crops instead: a square of a random share of the image's area drawn from
    /// [lo, hi] (of the shorter side's square), at a random position, resized to the resolution.
    pub crop_scale: Option<[f64; 2]>,
    pub flip: bool,
    /// Padding or resizing of images of another size (the tokenizer config's `preprocess`).
    pub preprocess: Preprocess,
}

impl Augment {
    pub fn apply(&self, img: &RgbImage, rng: &mut StdRng) -> RgbImage {
        let r = self.resolution;
        let (w, h) = img.dimensions();
        let mut out = if let Some([lo, hi]) = self.crop_scale {
            let short = w.min(h) as f64;
            let side = ((rng.random_range(lo..=hi).sqrt() * short).round() as u32).clamp(1, w.min(h));
            let (x0, y0) = (rng.random_range(0..=w - side), rng.random_range(0..=h - side));
            let crop = image::imageops::crop_imm(img, x0, y0, side, side).to_image();
            image::imageops::resize(&crop, r, r, FilterType::Triangle)
        } else if self.preprocess.pads(w, h, r) {
            pad_centre(img, r)
        } else {
            let resized = resize_shorter(img, r, FilterType::Triangle);
            let (nw, nh) = resized.dimensions();
            let (x0, y0) = if self.random_crop {
                (rng.random_range(0..=nw - r), rng.random_range(0..=nh - r))
            } else {
                ((nw - r) / 2, (nh - r) / 2)
            };
            image::imageops::crop_imm(&resized, x0, y0, r, r).to_image()
        };
        if self.flip && rng.random_bool(0.5) {
            out = image::imageops::flip_horizontal(&out);
        }
        out
    }
}

/// One batch: images and an augmented second view in [-1, 1], [B, 3, R, R] row-major.
#[derive(Clone, Debug)]
pub struct Batch {
    pub images: Vec<f32>,
    pub views: Vec<f32>,
    pub labels: Vec<usize>,
    /// Data-set index of every item (for per-item teacher features).
    pub indices: Vec<usize>,
    pub size: usize,
}

fn pixels(img: &RgbImage, out: &mut [f32]) {
    let (w, h) = img.dimensions();
    let hw = (w * h) as usize;
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            out[c * hw + (y * w + x) as usize] = p[c] as f32 / 127.5 - 1.0;
        }
    }
}

/// Deterministic batches: epoch e visits a seeded permutation; step s takes positions
/// s·B … s·B+B−1 of the stream of epochs. Unreadable items are skipped (with a warning naming
/// them) and replaced by the next readable one.
pub struct Loader {
    pub source: Arc<dyn Source>,
    pub augment: Augment,
    pub strong: Augment,
    pub batch: usize,
    pub seed: u64,
    pub skipped: Arc<AtomicUsize>,
}

impl Loader {
    /// Whole images of `source` in order, padded or resized to `resolution` without augmentation,
    /// `batch` at a time (`batch_in_order`): what evaluation and tokenizing read.
    pub fn in_order(source: Arc<dyn Source>, resolution: u32, preprocess: Preprocess, batch: usize) -> Self {
        let augment = Augment { resolution, random_crop: false, crop_scale: None, flip: false, preprocess };
        Self { source, augment: augment.clone(), strong: augment, batch, seed: 0, skipped: Default::default() }
    }

    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.source.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        idx
    }

    pub fn steps_per_epoch(&self) -> usize {
        (self.source.len() / self.batch).max(1)
    }

    /// The batch of training step `step` (independent of what came before); unreadable images
    /// are skipped with a warning, an error when none can be read.
    pub fn batch_at(&self, step: usize) -> Result<Batch> {
        let per = self.steps_per_epoch();
        let (epoch, k) = (step / per, step % per);
        let order = self.order(epoch);
        let r = self.augment.resolution as usize;
        let n = self.source.len();
        let items: Vec<(Vec<f32>, Vec<f32>, usize, usize)> = (0..self.batch)
            .into_par_iter()
            .map(|j| {
                let mut pos = (k * self.batch + j) % n;
                let mut rng = StdRng::seed_from_u64(
                    self.seed.wrapping_add(((step * self.batch + j) as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)),
                );
                for _ in 0..n {
                    let i = order[pos];
                    match self.source.get(i) {
                        Ok((img, label)) => {
                            let (mut a, mut b) = (vec![0f32; 3 * r * r], vec![0f32; 3 * r * r]);
                            pixels(&self.augment.apply(&img, &mut rng), &mut a);
                            pixels(&self.strong.apply(&img, &mut rng), &mut b);
                            return Ok((a, b, label, i));
                        }
                        Err(e) => {
                            self.skipped.fetch_add(1, Ordering::Relaxed);
                            eprintln!("warning: skipping unreadable image {}: {e:#}", self.source.name(i));
                            pos = (pos + 1) % n;
                        }
                    }
                }
                bail!("none of the {n} images of the data set can be read")
            })
            .collect::<Result<_>>()?;
        let mut batch = Batch {
            images: Vec::with_capacity(self.batch * 3 * r * r),
            views: Vec::new(),
            labels: Vec::new(),
            indices: Vec::new(),
            size: self.batch,
        };
        for (a, b, l, i) in items {
            batch.images.extend(a);
            batch.views.extend(b);
            batch.labels.push(l);
            batch.indices.push(i);
        }
        Ok(batch)
    }

    /// The `k`-th batch of the source in its own order (no shuffling; for evaluation). The
    /// last batch may be smaller.
    pub fn batch_in_order(&self, k: usize) -> Batch {
        let r = self.augment.resolution as usize;
        let n = self.source.len();
        let (lo, hi) = ((k * self.batch).min(n), ((k + 1) * self.batch).min(n));
        let mut batch =
            Batch { images: Vec::new(), views: Vec::new(), labels: Vec::new(), indices: Vec::new(), size: 0 };
        let mut rng = StdRng::seed_from_u64(self.seed);
        for i in lo..hi {
            match self.source.get(i) {
                Ok((img, label)) => {
                    let mut a = vec![0f32; 3 * r * r];
                    pixels(&self.augment.apply(&img, &mut rng), &mut a);
                    batch.images.extend(a);
                    batch.labels.push(label);
                    batch.indices.push(i);
                    batch.size += 1;
                }
                Err(e) => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    eprintln!("warning: skipping unreadable image {}: {e:#}", self.source.name(i));
                }
            }
        }
        batch
    }

    /// Batches for steps `start..end` produced ahead of use on a background thread (which stops
    /// after an error).
    pub fn prefetch(self: &Arc<Self>, start: usize, end: usize, depth: usize) -> Receiver<(usize, Result<Batch>)> {
        let (tx, rx) = sync_channel(depth.max(1));
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for step in start..end {
                let batch = me.batch_at(step);
                let failed = batch.is_err();
                if tx.send((step, batch)).is_err() || failed {
                    break;
                }
            }
        });
        rx
    }
}

/// Checks a source can be read at all (at least one readable image among the first few).
pub fn check_readable(source: &dyn Source) -> Result<()> {
    let n = source.len().min(16);
    let mut last = None;
    for i in 0..n {
        match source.get(i) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(format!("{}: {e:#}", source.name(i))),
        }
    }
    bail!("none of the first {n} images can be read ({})", last.unwrap_or_default())
}
