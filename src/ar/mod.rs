//! Stage 2: the class-conditional GPT (LlamaGen / Open-MAGVIT2), MergeAR's sparse mask and sampling.
pub mod batched;
pub mod generator;
pub mod gpt;
pub mod gpt_config;
#[cfg(feature = "flex")]
pub mod host_step;
pub mod kv_cache;
pub mod mergear;
pub mod ragged_attention;
pub mod ragged_cache;
pub mod sample;
pub mod slot_cache;
