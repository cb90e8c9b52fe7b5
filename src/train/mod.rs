//! Training: optimizers and schedules, checkpoints, the shared run loop, and the tokenizer
//! and AR trainers.
pub mod ar;
pub mod checkpoint;
pub mod config;
pub mod curves;
pub mod interrupt;
pub mod optim;
pub mod run_dir;
pub mod run_loop;
pub mod tokenizer;
mod validate;
