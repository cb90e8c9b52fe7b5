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
    let feature = match name {
        "cpu" => "flex",
        "cuda" | "vulkan" => name,
        _ => bail!("device must be \"cpu\", \"cuda\" or \"vulkan\", got \"{name}\""),
    };
    #[cfg(feature = "flex")]
    if name == "cpu" {
        return Ok(Device::flex());
    }
    #[cfg(feature = "cuda")]
    if name == "cuda" {
        return Ok(Device::cuda(0));
    }
    #[cfg(feature = "vulkan")]
    if name == "vulkan" {
        return Ok(Device::vulkan(Default::default()));
    }
    bail!(
        "device \"{name}\" needs a mergevq wheel built with the `{feature}` feature \
         (maturin build --release --features {feature}); this one has: {}",
        built()
    )
}
