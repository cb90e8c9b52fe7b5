//! Scaled dot-product attention for inference on the host: per head and block of queries, the
//! scores S = q·kᵀ/√hd (+ bias) as one matrix product, a row softmax with the vectorised exp, and
//! P·v as a second product — the two products at the GEMM kernel's rate, where Burn's flash
//! attention runs a scalar loop per key. Taken for long query blocks only (the tokenizer's ViT);
//! single-token decoding keeps Burn's kernel, which reads the KV cache in place.
use super::conv::SendPtr;
use super::gemm::{matmul, Mat};
use crate::nn::fused::exp;
use burn::prelude::*;
use rayon::prelude::*;

/// Queries per block: the block's scores (QUERY_BLOCK × keys) stay in the core's cache.
const QUERY_BLOCK: usize = 64;

/// Whether the host kernel takes this attention: CPU tensors without gradients, at least one
/// block of queries, k and v of q's batch, heads and width, and a bias (if any) with a full key
/// axis and every other axis either full or 1. Anything else goes to Burn's kernel.
pub fn applies(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, bias: Option<&Tensor<4>>) -> bool {
    let untracked = !q.is_tracked() && !k.is_tracked() && !v.is_tracked() && !bias.is_some_and(|b| b.is_tracked());
    let ([b, h, nq, hd], kd) = (q.dims(), k.dims());
    let bias_fits = |t: &Tensor<4>| {
        let d = t.dims();
        d[3] == kd[2] && [b, h, nq].iter().zip(&d).all(|(&full, &n)| n == 1 || n == full) && t.dtype() == q.dtype()
    };
    nq >= QUERY_BLOCK
        && kd == [b, h, kd[2], hd]
        && kd[2] >= 1
        && v.dims() == kd
        && untracked
        && super::enabled(q)
        && bias.is_none_or(bias_fits)
}

/// softmax(q·kᵀ/√hd + bias)·v for q [B, H, nq, hd], k and v [B, H, nk, hd]; `bias` broadcasts
/// to [B, H, nq, nk] (each axis either full or 1).
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Option<Tensor<4>>) -> Tensor<4> {
    let ([b, h, nq, hd], nk, device) = (q.dims(), k.dims()[2], q.device());
    let host = crate::io::readback::floats::<4>;
    let (q, k, v) = (host(q), host(k), host(v));
    let bias = bias.map(|t| (t.dims(), host(t)));
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = Vec::<f32>::with_capacity(b * h * nq * hd);
    let op = SendPtr(out.as_mut_ptr());
    let blocks: Vec<(usize, usize)> =
        (0..b * h).flat_map(|bh| (0..nq).step_by(QUERY_BLOCK).map(move |q0| (bh, q0))).collect();
    blocks.into_par_iter().for_each(|(bh, q0)| {
        let rows = QUERY_BLOCK.min(nq - q0);
        let (qh, kh, vh) = (&q[(bh * nq + q0) * hd..], &k[bh * nk * hd..], &v[bh * nk * hd..]);
        let mut s = vec![0.0f32; rows * nk];
        let kt = Mat { ptr: kh.as_ptr(), cs: hd as isize, rs: 1 };
        // SAFETY: s is rows × nk; q rows and k are inside their head's slices.
        unsafe {
            matmul(
                rows,
                nk,
                hd,
                s.as_mut_ptr(),
                nk as isize,
                false,
                Mat { ptr: qh.as_ptr(), cs: 1, rs: hd as isize },
                kt,
                1,
            )
        };
        for (i, row) in s.chunks_exact_mut(nk).enumerate() {
            row.iter_mut().for_each(|x| *x *= scale);
            if let Some(([bb, bhh, bq, _], bv)) = &bias {
                let (bi, hi) = ((bh / h) % bb, (bh % h) % bhh);
                let off = ((bi * bhh + hi) * bq + (q0 + i) % bq) * nk;
                row.iter_mut().zip(&bv[off..off + nk]).for_each(|(x, b)| *x += b);
            }
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            row.iter_mut().for_each(|x| *x = exp(*x - max));
            let inv = 1.0 / row.iter().sum::<f32>();
            row.iter_mut().for_each(|x| *x *= inv);
        }
        // SAFETY: block (bh, q0) writes its own rows of the output.
        unsafe {
            let dst = op.get().add((bh * nq + q0) * hd);
            let p = Mat { ptr: s.as_ptr(), cs: 1, rs: nk as isize };
            matmul(rows, hd, nk, dst, hd as isize, false, p, Mat { ptr: vh.as_ptr(), cs: 1, rs: hd as isize }, 1);
        }
    });
    // SAFETY: the blocks cover every (head, query) row once.
    unsafe { out.set_len(b * h * nq * hd) };
    Tensor::from_data(TensorData::new(out, [b, h, nq, hd]), &device)
}
