//! Training: optimizers and schedules, checkpoints, and the tokenizer trainer.
pub mod ar;
pub mod checkpoint;
pub mod config;
pub mod optim;
pub mod tokenizer;
mod validate;
