//! Input and output: weights and checkpoints, images, token files, data sets.
pub mod array;
pub mod atomic;
pub mod ckpt;
pub mod data;
pub mod fs;
pub mod guard;
pub mod image;
pub mod marker;
pub mod missing;
pub mod output;
pub mod preprocess;
pub mod readback;
pub mod safetensors;
pub mod scope;
pub mod tokens;
pub mod weights;
