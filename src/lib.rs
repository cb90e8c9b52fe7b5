//! MergeVQ: token merging + lookup-free quantization for visual tokenization (arXiv 2504.00999).
pub mod align;
pub mod config;
pub mod data;
pub mod decoder;
pub mod encoder;
pub mod eval;
pub mod fused;
pub mod gan;
pub mod gpt;
pub mod image_io;
pub mod inception;
pub mod lfq;
pub mod lpips;
pub mod mergear;
pub mod metrics;
pub mod nn;
pub mod parity;
pub mod plot;
pub mod probe;
pub mod recovery;
pub mod sample;
pub mod resblock;
pub mod tokenizer;
pub mod tokens_file;
pub mod tome;
pub mod train;
pub mod vit;
pub mod weights;

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
