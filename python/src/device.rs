//! The `device=` argument: "cpu", "cuda" or "vulkan", each available when the wheel was built
//! with its feature (`flex`, the default; `cuda`; `vulkan`).
use anyhow::{bail, Result};
use burn::prelude::Device;

/// The features this wheel was built with, for messages.
fn built() -> String {
    let all = [(cfg!(feature = "flex"), "cpu"), (cfg!(feature = "cuda"), "cuda"), (cfg!(feature = "vulkan"), "vulkan")];
    all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
}

/// The device called `name`.
pub fn parse(name: &str) -> Result<Device> {
    match name {
        #[cfg(feature = "flex")]
        "cpu" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(Default::default())),
        "cpu" | "cuda" | "vulkan" => bail!(
            "device \"{name}\" needs a mergevq wheel built with the `{}` feature \
             (maturin build --release --features {0}); this one has: {}",
            if name == "cpu" { "flex" } else { name },
            built()
        ),
        _ => bail!("device must be \"cpu\", \"cuda\" or \"vulkan\", got \"{name}\""),
    }
}
