//! Winograd F(2×2, 3×3) for stride-1, pad-1 3×3 convolutions: each 2×2 output tile comes from a
//! 4×4 input patch through 16 channel products instead of 36 (2.25× fewer multiply-adds). Blocks
//! of tiles are transformed into 16 matrices [C, tiles], multiplied by the 16 transformed weight
//! matrices [O, C] (one matrix product each), and transformed back with the bias fused into the
//! store. Exact up to rounding: the transforms use only ±1 and ½.
use super::conv::SendPtr;
use super::gemm::{matmul, Mat};
use super::im2col::Geom;
use rayon::prelude::*;
use std::cell::RefCell;

/// Transformed-input elements per block (4 MiB of f32).
const BLOCK_ELEMS: usize = 1 << 20;

thread_local! {
    static BUF: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Whether the geometry is the one this kernel computes.
pub fn applies(g: &Geom) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1 && g.c_in >= 8 && g.c_out >= 8 && g.h >= 4 && g.w >= 4
}

/// Off unless `MERGEVQ_WINOGRAD=1`: with scalar transforms it is still slower than the im2col
/// kernel on the model's shapes (measured on a 2-core Zen 4, AVX2), so it is opt-in until the
/// transforms are vectorised.
pub fn disabled() -> bool {
    !std::env::var("MERGEVQ_WINOGRAD").is_ok_and(|v| v == "1")
}

/// U = G·g·Gᵀ for every (o, c), stored as 16 matrices [O, C].
fn transform_weights(g: &Geom, w: &[f32]) -> Vec<f32> {
    let (co, ci) = (g.c_out, g.c_in);
    let mut u = vec![0.0f32; 16 * co * ci];
    for (oc, k) in w.chunks_exact(9).take(co * ci).enumerate() {
        let mut t = [[0.0f32; 3]; 4];
        for j in 0..3 {
            let (a, b, c) = (k[j], k[3 + j], k[6 + j]);
            t[0][j] = a;
            t[1][j] = 0.5 * (a + b + c);
            t[2][j] = 0.5 * (a - b + c);
            t[3][j] = c;
        }
        for (i, r) in t.iter().enumerate() {
            let row = [r[0], 0.5 * (r[0] + r[1] + r[2]), 0.5 * (r[0] - r[1] + r[2]), r[2]];
            for (j, v) in row.into_iter().enumerate() {
                u[(i * 4 + j) * co * ci + oc] = v;
            }
        }
    }
    u
}

/// V = Bᵀ·d·B of the 4×4 patch at tile (ty, tx) of one channel plane.
#[inline(always)]
fn transform_patch(plane: &[f32], h: usize, w: usize, ty: usize, tx: usize) -> [f32; 16] {
    let mut d = [[0.0f32; 4]; 4];
    let (y0, x0) = (2 * ty as isize - 1, 2 * tx as isize - 1);
    for (i, row) in d.iter_mut().enumerate() {
        let y = y0 + i as isize;
        if y < 0 || y >= h as isize {
            continue;
        }
        let src = &plane[y as usize * w..][..w];
        for (j, v) in row.iter_mut().enumerate() {
            let x = x0 + j as isize;
            if x >= 0 && x < w as isize {
                *v = src[x as usize];
            }
        }
    }
    let mut t = [[0.0f32; 4]; 4];
    for j in 0..4 {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
    }
    let mut v = [0.0f32; 16];
    for i in 0..4 {
        v[i * 4] = t[i][0] - t[i][2];
        v[i * 4 + 1] = t[i][1] + t[i][2];
        v[i * 4 + 2] = t[i][2] - t[i][1];
        v[i * 4 + 3] = t[i][1] - t[i][3];
    }
    v
}

/// y = conv3×3(x, w) + bias, stride 1, pad 1.
pub fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (co, ci, h, wd) = (g.c_out, g.c_in, g.h, g.w);
    let (th, tw) = (h.div_ceil(2), wd.div_ceil(2));
    let per_image = th * tw;
    let total = g.batch * per_image;
    let tb = (BLOCK_ELEMS / (16 * ci.max(co))).clamp(16, 512).min(total.max(1));
    let u = transform_weights(g, w);
    let mut y = vec![0.0f32; g.batch * co * h * wd];
    let yp = SendPtr(y.as_mut_ptr());
    let blocks: Vec<usize> = (0..total).step_by(tb).collect();
    let inner = if blocks.len() >= 2 * rayon::current_num_threads() { 1 } else { rayon::current_num_threads() };
    blocks.par_iter().for_each(|&t0| {
        let n = tb.min(total - t0);
        BUF.with(|buf| {
            // A tile stolen while this thread's product waits gets fresh buffers.
            let mut fresh = (Vec::new(), Vec::new());
            let mut held = buf.try_borrow_mut().ok();
            let (v, m) = match held.as_deref_mut() {
                Some(b) => (&mut b.0, &mut b.1),
                None => (&mut fresh.0, &mut fresh.1),
            };
            if v.len() < 16 * ci * n {
                v.resize(16 * ci * n, 0.0);
            }
            if m.len() < 16 * co * n {
                m.resize(16 * co * n, 0.0);
            }
            for c in 0..ci {
                for j in 0..n {
                    let t = t0 + j;
                    let (b, r) = (t / per_image, t % per_image);
                    let plane = &x[(b * ci + c) * h * wd..][..h * wd];
                    let p = transform_patch(plane, h, wd, r / tw, r % tw);
                    for (xi, val) in p.into_iter().enumerate() {
                        v[(xi * ci + c) * n + j] = val;
                    }
                }
            }
            for xi in 0..16 {
                let lhs = Mat { ptr: u[xi * co * ci..].as_ptr(), cs: 1, rs: ci as isize };
                let rhs = Mat { ptr: v[xi * ci * n..].as_ptr(), cs: 1, rs: n as isize };
                // SAFETY: the operands are sized above; m is this thread's own buffer.
                unsafe { matmul(co, n, ci, m[xi * co * n..].as_mut_ptr(), n as isize, false, lhs, rhs, inner) };
            }
            for o in 0..co {
                let bv = bias.map_or(0.0, |b| b[o]);
                for j in 0..n {
                    let at = |xi: usize| m[(xi * co + o) * n + j];
                    let mut t = [[0.0f32; 4]; 2];
                    let [t0r, t1r] = &mut t;
                    for (q, (a, b)) in t0r.iter_mut().zip(t1r.iter_mut()).enumerate() {
                        *a = at(q) + at(4 + q) + at(8 + q);
                        *b = at(4 + q) - at(8 + q) - at(12 + q);
                    }
                    let t_ = t0 + j;
                    let (b, r) = (t_ / per_image, t_ % per_image);
                    let (oy, ox) = (2 * (r / tw), 2 * (r % tw));
                    for (i, tr) in t.iter().enumerate() {
                        if oy + i >= h {
                            continue;
                        }
                        let out = [tr[0] + tr[1] + tr[2] + bv, tr[1] - tr[2] - tr[3] + bv];
                        for (q, val) in out.into_iter().enumerate() {
                            if ox + q < wd {
                                // SAFETY: each tile owns its 2×2 output window.
                                unsafe { *yp.get().add(((b * co + o) * h + oy + i) * wd + ox + q) = val };
                            }
                        }
                    }
                }
            }
        });
    });
    y
}
