//! Device → host reads, counted per thread. On a GPU each read waits for the device's queue to
//! drain, so the encoder makes none before its final output; `tests/readback.rs` counts them.
//! Every read of tensor values in the library goes through here. A rank-0 tensor is read as
//! rank 1: CUDA's runtime refuses to read rank 0.
use burn::prelude::*;
use std::cell::Cell;

thread_local! {
    static READS: Cell<usize> = const { Cell::new(0) };
}

/// How many reads this thread has made so far.
pub fn count() -> usize {
    READS.with(Cell::get)
}

fn counted<T>(read: impl FnOnce() -> T) -> T {
    READS.with(|r| r.set(r.get() + 1));
    read()
}

/// The values of a float tensor, row-major, as f32.
pub fn floats<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    if D == 0 {
        return floats(x.reshape([1]));
    }
    counted(|| x.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data"))
}

/// The values of an integer tensor, row-major, as i64.
pub fn ints<const D: usize>(x: Tensor<D, Int>) -> Vec<i64> {
    if D == 0 {
        return ints(x.reshape([1]));
    }
    counted(|| x.into_data().convert::<i64>().try_into_vec::<i64>().expect("i64 data"))
}

/// The one value of a single-element float tensor.
pub fn scalar<const D: usize>(x: Tensor<D>) -> f32 {
    if D == 0 {
        return scalar(x.reshape([1]));
    }
    counted(|| x.into_scalar::<f32>())
}
