//! Input and output: weights and checkpoints, images, token files, data sets.
pub mod data;
pub mod fs;
pub mod image;
pub mod tokens;
pub mod weights;
