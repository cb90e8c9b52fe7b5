//! 3×3 max and average pooling (InceptionV3's) for inference on the host: separable, a pass
//! along the rows and then one along the columns, one plane per task. Burn's pooling visits the
//! 9 taps of every output through a generic 3-D loop; tracked tensors and GPU builds keep it.
use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Max,
    /// The mean of the taps inside the input (count_include_pad = False).
    Avg,
}

/// 3×3 pooling of x [B, C, H, W] with `stride` and `pad` on both axes (padding never wins a max
/// and never counts in a mean).
pub fn pool3(x: Tensor<4>, kind: Pool, stride: usize, pad: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if !super::fused::enabled(&x)
        || x.dtype() != burn::tensor::DType::F32
        || stride == 0
        || pad > 1
        || h + 2 * pad < 3
        || w + 2 * pad < 3
    {
        return generic(x, kind, stride, pad);
    }
    let (oh, ow) = ((h + 2 * pad - 3) / stride + 1, (w + 2 * pad - 3) / stride + 1);
    let (dims, device, v) = super::fused::host(x);
    let span = |o: usize, n: usize| ((o * stride).saturating_sub(pad), (o * stride + 3 - pad).min(n));
    let cols: Vec<(usize, usize)> = (0..ow).map(|o| span(o, w)).collect();
    let reduce = |a: f32, b: f32| if kind == Pool::Max { a.max(b) } else { a + b };
    let mut out = vec![0.0f32; dims[0] * dims[1] * oh * ow];
    out.par_chunks_mut(oh * ow).zip(v.par_chunks(h * w)).for_each(|(dst, plane)| {
        let mut rows = vec![0.0f32; h * ow];
        for (src, r) in plane.chunks_exact(w).zip(rows.chunks_exact_mut(ow)) {
            for (v, &(a, e)) in r.iter_mut().zip(&cols) {
                *v = src[a + 1..e].iter().fold(src[a], |m, &x| reduce(m, x));
            }
        }
        for (oy, d) in dst.chunks_exact_mut(ow).enumerate() {
            let (a, e) = span(oy, h);
            d.copy_from_slice(&rows[a * ow..][..ow]);
            for r in rows[(a + 1) * ow..e * ow].chunks_exact(ow) {
                d.iter_mut().zip(r).for_each(|(v, &x)| *v = reduce(*v, x));
            }
            if kind == Pool::Avg {
                d.iter_mut().zip(&cols).for_each(|(v, &(c0, c1))| *v /= ((e - a) * (c1 - c0)) as f32);
            }
        }
    });
    Tensor::from_data(TensorData::new(out, [dims[0], dims[1], oh, ow]), &device)
}

fn generic(x: Tensor<4>, kind: Pool, stride: usize, pad: usize) -> Tensor<4> {
    match kind {
        Pool::Max => {
            let mut o = MaxPoolOptions::new([3, 3]);
            o.stride = [stride, stride];
            o.padding = [(pad, pad), (pad, pad)];
            max_pool2d(x, o)
        }
        Pool::Avg => avg_pool2d(
            x,
            AvgPoolOptions {
                kernel_size: [3, 3],
                stride: [stride, stride],
                padding: [(pad, pad), (pad, pad)],
                count_include_pad: false,
                ceil_mode: false,
            },
        ),
    }
}
