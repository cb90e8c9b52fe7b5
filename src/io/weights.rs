//! Named weights with PyTorch state-dict names: read from safetensors or Lightning `.ckpt`
//! files, created at random for `init`, checked for missing / extra / wrongly shaped tensors,
//! and written back atomically.
use anyhow::{anyhow, bail, Context, Result};
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
    Random(RefCell<StdRng>),
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
        Self::with_source(Source::Random(RefCell::new(StdRng::seed_from_u64(seed))), device)
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

fn is_safetensors(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open weights {}", path.display()))?;
    let mut head = [0u8; 9];
    let n = f.read(&mut head).with_context(|| format!("cannot read {}", path.display()))?;
    // A zip (PyTorch >= 1.6) starts with "PK"; a legacy pickle with 0x80; safetensors with a u64 length then '{'.
    Ok(n == 9 && head[8] == b'{')
}

/// Reads every tensor of a safetensors file as f32 (integers are converted).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    Ok(read_safetensors_typed(path)?.into_iter().map(|(k, v)| (k, v.to_f32())).collect())
}

/// A tensor read from a file, keeping integer tensors exact.
#[derive(Clone, Debug)]
pub enum TypedTensor {
    F32(HostTensor),
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl TypedTensor {
    pub fn to_f32(self) -> HostTensor {
        match self {
            TypedTensor::F32(t) => t,
            TypedTensor::I64 { shape, data } => {
                HostTensor { shape, data: data.into_iter().map(|v| v as f32).collect() }
            }
        }
    }
}

pub fn read_safetensors_typed(path: &Path) -> Result<BTreeMap<String, TypedTensor>> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{} is not a valid safetensors file: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let b = view.data();
        let t = match view.dtype() {
            Dtype::F32 => TypedTensor::F32(HostTensor {
                shape,
                data: b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            }),
            Dtype::F64 => TypedTensor::F32(HostTensor {
                shape,
                data: b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            }),
            Dtype::I64 => TypedTensor::I64 {
                shape,
                data: b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
            },
            Dtype::I32 => TypedTensor::I64 {
                shape,
                data: b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
            },
            other => bail!("tensor `{name}` in {} has unsupported dtype {other:?}", path.display()),
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// Reads the `state_dict` of a PyTorch / Lightning checkpoint without executing its pickle.
/// With `ema`, `model_ema.<name without dots>` buffers replace the regular parameters.
fn read_checkpoint(path: &Path, ema: bool) -> Result<BTreeMap<String, HostTensor>> {
    use burn::store::pytorch_reader::{DType, PytorchReader};
    let reader = PytorchReader::with_top_level_key(path, "state_dict")
        .or_else(|_| PytorchReader::new(path))
        .map_err(|e| anyhow!("{} is not a readable PyTorch checkpoint: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for (name, t) in reader.into_tensors() {
        let shape = t.shape().to_vec();
        let dtype = t.dtype();
        let bytes = t.read().map_err(|e| anyhow!("cannot read tensor `{name}` from {}: {e}", path.display()))?;
        let data: Vec<f32> = match dtype {
            DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().unwrap())).collect(),
            DType::F64 => bytes.chunks_exact(8).map(|c| f64::from_ne_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::F16 => bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_ne_bytes([c[0], c[1]]))).collect(),
            DType::BF16 => {
                bytes.chunks_exact(2).map(|c| f32::from_bits((u16::from_ne_bytes([c[0], c[1]]) as u32) << 16)).collect()
            }
            DType::I64 => bytes.chunks_exact(8).map(|c| i64::from_ne_bytes(c.try_into().unwrap()) as f32).collect(),
            _ => continue,
        };
        map.insert(name, HostTensor { shape, data });
    }
    if ema {
        let ema_keys: HashMap<String, String> = map
            .keys()
            .filter(|k| !k.starts_with("model_ema."))
            .map(|k| (format!("model_ema.{}", k.replace('.', "")), k.clone()))
            .collect();
        let mut swapped = 0;
        for (ema_key, key) in &ema_keys {
            if let Some(t) = map.get(ema_key).cloned() {
                map.insert(key.clone(), t);
                swapped += 1;
            }
        }
        if swapped == 0 {
            bail!("{} has no `model_ema.*` weights (trained without use_ema?)", path.display());
        }
    }
    map.retain(|k, _| !k.starts_with("model_ema."));
    Ok(map)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Writes named f32 tensors as safetensors, atomically (temp file + rename).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<()> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| Ok((k.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let data = safetensors::serialize(views, None)?;
    atomic_write(path, &data)
}

/// Writes `data` to a temporary file next to `path`, syncs it, then renames it over `path`:
/// a crash never leaves a half-written file under the real name.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp =
        dir.join(format!(".{}.tmp{}", path.file_name().and_then(|s| s.to_str()).unwrap_or("out"), std::process::id()));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(data).and_then(|_| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    fault_before_rename(path);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

/// Fault injection for tests: `MERGEVQ_FAULT_ABORT_BEFORE_RENAME=<file name>:<n>` kills the
/// process (as a crash would) on the n-th write of that file, after the temporary file is
/// written and before it replaces the real one.
fn fault_before_rename(path: &Path) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let Ok(spec) = std::env::var("MERGEVQ_FAULT_ABORT_BEFORE_RENAME") else { return };
    let Some((name, n)) = spec.rsplit_once(':') else { return };
    if path.file_name().and_then(|f| f.to_str()) == Some(name)
        && WRITES.fetch_add(1, Ordering::SeqCst) + 1 == n.parse().unwrap_or(0)
    {
        std::process::abort();
    }
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
                let data = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data");
                self.out.insert(name.clone(), HostTensor { shape, data });
            }
        }
    }
    let mut c = Collect { names, out: BTreeMap::new() };
    module.visit(&mut c);
    c.out
}
