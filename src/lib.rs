//! MergeVQ: token merging + lookup-free quantization for visual tokenization (arXiv 2504.00999).
pub mod ar;
pub mod eval;
pub mod io;
pub mod loss;
pub mod nn;
pub mod parity;
pub mod tokenizer;
pub mod train;

use burn::prelude::Device;

/// The compute device: Vulkan when built with `--features vulkan`, CUDA with `cuda`, else the
/// Flex CPU backend.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    return Device::cuda(0);
    #[cfg(all(feature = "vulkan", not(feature = "cuda")))]
    return Device::vulkan(Default::default());
    #[cfg(not(any(feature = "vulkan", feature = "cuda")))]
    Device::flex()
}
