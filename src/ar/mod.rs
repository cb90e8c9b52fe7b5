//! Stage 2: the class-conditional GPT (LlamaGen / Open-MAGVIT2), MergeAR's sparse mask and sampling.
pub mod generator;
pub mod gpt;
pub mod gpt_config;
pub mod kv_cache;
pub mod mergear;
pub mod sample;
