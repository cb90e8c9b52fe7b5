//! Training losses: the tokenizer's generator terms (with the adaptive weight) and
//! discriminator loss, PatchGAN (+LeCam), LPIPS, and the [CLS] alignment.
pub mod adaptive;
pub mod align;
pub mod discriminator;
pub mod gan;
pub mod generator;
pub mod lpips;
