//! ToMe's merge on the CPU: one pass per sequence over x that accumulates size-weighted rows
//! into their output rows, with no index tensors; sequences in parallel.
use super::merge::Merge;
use crate::io::readback;
use burn::prelude::*;
use rayon::prelude::*;

/// merge_wavg (ToMe eq. 1): Σ sᵢ·xᵢ / Σ sᵢ over the rows merged into each output row.
pub fn merge_wavg(m: &Merge, x: Tensor<3>, size: Tensor<3>) -> Tensor<3> {
    let [b, t, c] = x.dims();
    let device = x.device();
    let (xs, sizes, map) = (readback::floats(x), readback::floats(size), m.host_map());
    let mut out = vec![0f32; b * m.rows_out * c];
    out.par_chunks_mut(m.rows_out * c).enumerate().for_each(|(bi, out)| {
        let mut total = vec![0f32; m.rows_out];
        for (i, &dst) in map[bi].iter().enumerate() {
            let s = sizes[bi * t + i];
            total[dst] += s;
            let src = &xs[(bi * t + i) * c..][..c];
            out[dst * c..][..c].iter_mut().zip(src).for_each(|(acc, &v)| *acc += v * s);
        }
        for (row, &s) in out.chunks_mut(c).zip(&total) {
            row.iter_mut().for_each(|acc| *acc /= s);
        }
    });
    Tensor::from_data(TensorData::new(out, [b, m.rows_out, c]), &device)
}
