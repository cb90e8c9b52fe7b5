//! Training losses: PatchGAN (+LeCam), LPIPS, and the [CLS] alignment.
pub mod align;
pub mod gan;
pub mod lpips;
