//! One module per command group; each subcommand is a `clap::Args` struct with a `run` method.
pub mod bench;
pub mod demo;
pub mod eval;
pub mod generate;
pub mod large;
pub mod parity;
pub mod tokenize;
pub mod tokens;
pub mod train;
