//! Input and output: weights and checkpoints, images, token files, data sets.
pub mod data;
pub mod image;
pub mod preprocess;
pub mod tokens;
pub mod weights;
