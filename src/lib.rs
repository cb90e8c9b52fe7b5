//! MergeVQ: token merging + lookup-free quantization for visual tokenization (arXiv 2504.00999).
//!
//! An image becomes K ≪ L lookup-free-quantized codes plus a source map (which of the L grid
//! positions each code covers); the decoder puts the codes back on the grid. K is chosen per call:
//!
//! ```
//! use mergevq::io::image::{load_image, tensor_to_rgb};
//! use mergevq::tokenizer::{config::TokenizerConfig, Tokenizer};
//! use std::path::Path;
//!
//! let device = mergevq::device();
//! let cfg = TokenizerConfig::load(Path::new("assets/demo/tokenizer.toml"))?;
//! let tok = Tokenizer::open(&cfg, Path::new("assets/demo/tokenizer.safetensors"), false, &device)?;
//! let (image, _note) = load_image(Path::new("assets/demo/images/0_00019.png"), 32, cfg.preprocess, &device)?;
//! let plan = tok.keep(16)?; // keep K = 16 of the L = 64 tokens
//! let tokens = tok.encode(image, &plan)?;
//! assert_eq!((tokens.indices.len(), tokens.group[0].len()), (16, 64));
//! let rebuilt = tok.decode_indices(&tokens.indices, &tokens.group, &device)?; // [1, 3, 32, 32]
//! let rgb = tensor_to_rgb(rebuilt.reshape([3, 32, 32]));
//! assert_eq!(rgb.dimensions(), (32, 32));
//! # anyhow::Ok(())
//! ```
//!
//! Modules by stage: [`tokenizer`] (ToMe, LFQ, ViT, encoder, decoder, source recovery), [`ar`]
//! (GPT, MergeAR, sampling), [`loss`], [`eval`], [`io`], [`train`]; [`parity`] runs golden cases.
pub mod ar;
pub mod device;
pub mod eval;
pub mod io;
pub mod loss;
pub mod memory;
pub mod nn;
pub mod parity;
pub mod tokenizer;
pub mod train;
pub mod validate;

pub use device::device;
