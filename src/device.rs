//! The compute device, chosen at run time: `cpu` (burn's Flex backend, in every build), `cuda[:N]`
//! and `vulkan` (in builds with those features, `scripts/build-gpu.sh`), and its float precision.
//! Opening a GPU device checks its driver and runtime libraries and runs one small kernel, so
//! that a missing piece is one clear error line instead of a panic deep inside a backend.
use crate::io::guard::catch_panic;
use anyhow::{anyhow, bail, Result};
use burn::backend::DispatchDevice;
use burn::prelude::*;
use burn::tensor::FloatDType;
use std::sync::OnceLock;

static DEFAULT: OnceLock<Device> = OnceLock::new();

/// The names `--device` takes.
pub const NAMES: &str = "cpu, cuda, cuda:N or vulkan";

/// The backends this build has, for messages ("cpu, cuda, vulkan").
pub fn built() -> String {
    let all = [(cfg!(feature = "flex"), "cpu"), (cfg!(feature = "cuda"), "cuda"), (cfg!(feature = "vulkan"), "vulkan")];
    all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
}

/// The device every command uses: the one [`set_default`] chose, else the CPU.
pub fn device() -> Device {
    DEFAULT.get().cloned().unwrap_or_else(cpu)
}

/// Makes `device` what [`device`] returns from now on (once per process; later calls keep the first).
pub fn set_default(device: Device) {
    let _ = DEFAULT.set(device);
}

fn cpu() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(not(feature = "flex"))]
    panic!("this build has no CPU backend: enable the `flex` feature")
}

/// Whether tensors on `device` run on the Flex CPU backend (and so may take the CPU kernels).
pub fn is_cpu(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    return matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_));
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// The float type of every tensor on a device: `f32`; `tf32` (GPUs: f32 storage, matmuls and
/// convolutions on tensor cores at TF32, burn's `flex32`); `bf16` (storage and arithmetic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    Tf32,
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "tf32" => Ok(Self::Tf32),
            "bf16" => Ok(Self::Bf16),
            _ => Err(format!("precision must be f32, tf32 or bf16, got \"{s}\"")),
        }
    }
}

/// Opens the device called `name` (one of [`NAMES`]) at `precision`, checking that it works.
pub fn open(name: &str, precision: Precision) -> Result<Device> {
    let (kind, index) = match name.split_once(':') {
        Some((k, i)) => {
            let i = i
                .parse::<usize>()
                .map_err(|_| anyhow!("device must be one of {NAMES}, got \"{name}\": the index is not a number"))?;
            (k, i)
        }
        None => (name, 0),
    };
    let device = match kind {
        "cpu" if index == 0 => cpu(),
        "cuda" => cuda(name, index)?,
        "vulkan" if index == 0 => vulkan(name)?,
        _ => bail!("device must be one of {NAMES}, got \"{name}\""),
    };
    let want = match precision {
        Precision::F32 => FloatDType::F32,
        Precision::Tf32 if kind == "cpu" => {
            bail!("precision tf32 is for GPUs (tensor cores); on the CPU use f32 or bf16")
        }
        Precision::Tf32 => FloatDType::Flex32,
        Precision::Bf16 => FloatDType::BF16,
    };
    // A device's float type is fixed once it has computed: never hand out one at another precision.
    let mut device = device;
    let now = device.settings().float_dtype;
    if now != want {
        let label = format!("{precision:?}").to_lowercase();
        device.configure(want).map_err(|e| match e {
            burn::tensor::DeviceError::AlreadyInitialized { .. } => {
                anyhow!("device \"{name}\" already computes in {now:?} in this process; its precision is fixed at first use")
            }
            e => anyhow!("device \"{name}\": precision {label} is not available: {e}"),
        })?;
    }
    probe(name, &device)?;
    Ok(device)
}

#[cfg(not(all(feature = "cuda", feature = "vulkan")))]
fn missing_backend(name: &str, feature: &str) -> anyhow::Error {
    anyhow!(
        "device \"{name}\": this build has no {feature} backend (it has: {}); build with the `{feature}` feature \
         (scripts/build-gpu.sh)",
        built()
    )
}

/// GPU kernels are compiled at their first use (NVRTC for CUDA), which takes longer than running
/// them: keep the compiled kernels on disk beside the autotune results (cubecl's environment,
/// `target/environment` in a Cargo project, else the user cache folder), so that a later process
/// loads them. Everything else stays as cubecl.toml and the CUBECL_* variables set it.
#[cfg(any(feature = "cuda", feature = "vulkan"))]
fn cache_kernels() {
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.compilation.cache = true;
    // Refused only when cubecl has read its configuration already: then it is in use as it is.
    let _ = CubeClRuntimeConfig::try_set(config);
}

#[cfg(feature = "cuda")]
fn cuda(name: &str, index: usize) -> Result<Device> {
    loadable(&["libcuda.so.1", "libcuda.so"])
        .map_err(|e| anyhow!("device \"{name}\": no NVIDIA driver on this machine (libcuda: {e})"))?;
    loadable(&["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"]).map_err(|e| {
        anyhow!(
            "device \"{name}\": NVRTC not found (libnvrtc: {e}); scripts/build-gpu.sh --runtime installs it from PyPI"
        )
    })?;
    cuda_headers().ok_or_else(|| {
        anyhow!(
            "device \"{name}\": the CUDA headers (include/cuda_fp16.h) are not under $CUDA_PATH or /usr/local/cuda; \
             scripts/build-gpu.sh --runtime installs them from PyPI"
        )
    })?;
    cache_kernels();
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(name: &str, _: usize) -> Result<Device> {
    Err(missing_backend(name, "cuda"))
}

/// The CUDA folder whose `include/` holds the headers NVRTC needs, where cubecl looks for it.
#[cfg(feature = "cuda")]
fn cuda_headers() -> Option<std::path::PathBuf> {
    let candidates = std::env::var_os("CUDA_PATH")
        .into_iter()
        .map(Into::into)
        .chain(["/usr/local/cuda", "/opt/cuda"].into_iter().map(std::path::PathBuf::from));
    candidates.into_iter().find(|p: &std::path::PathBuf| p.join("include/cuda_fp16.h").is_file())
}

#[cfg(feature = "vulkan")]
fn vulkan(name: &str) -> Result<Device> {
    loadable(&["libvulkan.so.1", "libvulkan.so"])
        .map_err(|e| anyhow!("device \"{name}\": no Vulkan loader on this machine (libvulkan: {e})"))?;
    cache_kernels();
    Ok(Device::vulkan(Default::default()))
}

#[cfg(not(feature = "vulkan"))]
fn vulkan(name: &str) -> Result<Device> {
    Err(missing_backend(name, "vulkan"))
}

/// Whether one of `libs` can be loaded (the first that can stays loaded), else the loader's reason.
#[cfg(any(feature = "cuda", feature = "vulkan"))]
fn loadable(libs: &[&str]) -> Result<(), String> {
    let mut reason = String::new();
    for lib in libs {
        let c = std::ffi::CString::new(*lib).expect("no NUL");
        // SAFETY: dlopen with a valid C string; a handle that loads is kept for the backend.
        if !unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY) }.is_null() {
            return Ok(());
        }
        // SAFETY: dlerror returns a C string owned by the loader, or null.
        let e = unsafe { libc::dlerror() };
        if !e.is_null() && reason.is_empty() {
            reason = unsafe { std::ffi::CStr::from_ptr(e) }.to_string_lossy().into_owned();
        }
    }
    Err(reason)
}

/// Runs 1 + 2 on `device`; a backend that panics or computes something else is an error.
fn probe(name: &str, device: &Device) -> Result<()> {
    let d = device.clone();
    let sum = catch_panic(move || crate::io::readback::scalar(Tensor::<1>::from_floats([1.0, 2.0], &d).sum()))
        .map_err(|e| anyhow!("device \"{name}\": the device does not work: {}", e.lines().next().unwrap_or("")))?;
    if sum != 3.0 {
        bail!("device \"{name}\": the device computed 1 + 2 = {sum}");
    }
    Ok(())
}
