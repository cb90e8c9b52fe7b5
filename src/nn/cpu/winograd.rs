//! Winograd F(2×2, 3×3) for stride-1, pad-1 3×3 convolutions: each 2×2 output tile comes from a
//! 4×4 input patch through 16 channel products instead of 36 (2.25× fewer multiply-adds). A block
//! of whole tile rows of one image is transformed into 16 matrices V[C, tiles], multiplied by the
//! 16 transformed weight matrices U[O, C] (one matrix product each) and transformed back with the
//! bias fused into the store. The transforms run along rows split into even and odd columns, so
//! every inner loop is a contiguous one the compiler vectorises. Exact up to rounding: the
//! transforms use only ±1 and ½.
use super::conv::SendPtr;
use super::gemm::{matmul, Mat};
use super::im2col::Geom;
use rayon::prelude::*;
use std::cell::RefCell;

/// Target tiles per block: V and M of a block stay near 1 MiB.
const BLOCK_ELEMS: usize = 1 << 18;

thread_local! {
    static BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this kernel computes the geometry (any size, with half tiles at the edges).
pub fn computes(g: &Geom) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1 && g.c_in >= 1 && g.c_out >= 1 && g.h >= 1 && g.w >= 1
}

/// Whether it is the faster kernel for the geometry: enough tiles per call to amortise the weight
/// transform (16·O·C values) and channels to fill the matrix products.
pub fn applies(g: &Geom) -> bool {
    let tiles = g.batch * g.h.div_ceil(2) * g.w.div_ceil(2);
    computes(g) && g.c_in >= 8 && g.c_out >= 8 && tiles >= 2 * g.c_in.max(g.c_out)
}

/// `MERGEVQ_WINOGRAD=0` keeps these convolutions on the im2col kernel (tests compare both).
pub fn disabled() -> bool {
    std::env::var("MERGEVQ_WINOGRAD").is_ok_and(|v| v == "0")
}

/// U = G·g·Gᵀ for every (o, c), stored as 16 matrices [O, C].
fn transform_weights(g: &Geom, w: &[f32]) -> Vec<f32> {
    let n = g.c_out * g.c_in;
    let mut u = vec![0.0f32; 16 * n];
    let mut planes: Vec<&mut [f32]> = u.chunks_exact_mut(n).collect();
    for (oc, k) in w.chunks_exact(9).take(n).enumerate() {
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
                planes[i * 4 + j][oc] = v;
            }
        }
    }
    u
}

/// Bᵀ·d·B of every tile in one tile row of one channel, d the 4 input rows from `y0` (rows off the
/// image are zero): writes V[xi][tx] at `v[xi * stride + tx]`. `e`/`o` are scratch of 4·(tw+1).
fn transform_row(g: &Geom, plane: &[f32], y0: isize, (e, o): (&mut [f32], &mut [f32]), v: &mut [f32], stride: usize) {
    let (h, w, tw) = (g.h, g.w, g.w.div_ceil(2));
    let n = tw + 1;
    // Padded row p[u] = x[u - 1]: even columns E[k] = p[2k] = x[2k - 1], odd O[k] = p[2k + 1] = x[2k].
    for i in 0..4 {
        let (ei, oi) = (&mut e[i * n..][..n], &mut o[i * n..][..n]);
        ei.fill(0.0);
        oi.fill(0.0);
        let y = y0 + i as isize;
        if y < 0 || y >= h as isize {
            continue;
        }
        let src = &plane[y as usize * w..][..w];
        let pairs = src.chunks_exact(2);
        if let [last] = pairs.remainder() {
            oi[w / 2] = *last;
        }
        for (k, p) in pairs.enumerate() {
            oi[k] = p[0];
            ei[k + 1] = p[1];
        }
    }
    // Bᵀ along the rows (in place: row i becomes t_i), for both column parities.
    for s in [&mut *e, &mut *o] {
        let (r0, rest) = s.split_at_mut(n);
        let (r1, rest) = rest.split_at_mut(n);
        let (r2, r3) = rest.split_at_mut(n);
        for k in 0..n {
            let (d0, d1, d2, d3) = (r0[k], r1[k], r2[k], r3[k]);
            r0[k] = d0 - d2;
            r1[k] = d1 + d2;
            r2[k] = d2 - d1;
            r3[k] = d1 - d3;
        }
    }
    // B along the columns: tile tx sees E[tx], O[tx], E[tx+1], O[tx+1].
    for i in 0..4 {
        let (ei, oi) = (&e[i * n..][..n], &o[i * n..][..n]);
        let (v0, rest) = v[(i * 4) * stride..].split_at_mut(stride);
        let (v1, rest) = rest.split_at_mut(stride);
        let (v2, v3) = rest.split_at_mut(stride);
        for tx in 0..tw {
            let (a, b, c, d) = (ei[tx], oi[tx], ei[tx + 1], oi[tx + 1]);
            v0[tx] = a - c;
            v1[tx] = b + c;
            v2[tx] = c - b;
            v3[tx] = b - d;
        }
    }
}

/// y = conv3×3(x, w) + bias, stride 1, pad 1.
pub fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (co, ci, h, wd) = (g.c_out, g.c_in, g.h, g.w);
    let (th, tw) = (h.div_ceil(2), wd.div_ceil(2));
    let rows_per_block = (BLOCK_ELEMS / (16 * (ci + co) * tw)).clamp(1, th).max(64usize.div_ceil(tw)).min(th);
    let u = transform_weights(g, w);
    let mut y = Vec::<f32>::with_capacity(g.batch * co * h * wd);
    let yp = SendPtr(y.as_mut_ptr());
    let blocks: Vec<(usize, usize)> =
        (0..g.batch).flat_map(|b| (0..th).step_by(rows_per_block).map(move |r| (b, r))).collect();
    let inner = if blocks.len() >= 2 * rayon::current_num_threads() { 1 } else { rayon::current_num_threads() };
    blocks.par_iter().for_each(|&(b, ty0)| {
        let rows = rows_per_block.min(th - ty0);
        let n = rows * tw;
        let need = 16 * (ci + co) * n + 8 * (tw + 1);
        let run = |buf: &mut [f32]| {
            let (v, rest) = buf.split_at_mut(16 * ci * n);
            let (m, rest) = rest.split_at_mut(16 * co * n);
            let (e, o) = rest.split_at_mut(4 * (tw + 1));
            // V[xi][c][tile]: the row of channel c for tile row r starts at xi·C·n + c·n + r·tw.
            for c in 0..ci {
                let plane = &x[(b * ci + c) * h * wd..][..h * wd];
                for r in 0..rows {
                    let y0 = 2 * (ty0 + r) as isize - 1;
                    transform_row(g, plane, y0, (&mut *e, &mut *o), &mut v[c * n + r * tw..], ci * n);
                }
            }
            for xi in 0..16 {
                let lhs = Mat { ptr: u[xi * co * ci..].as_ptr(), cs: 1, rs: ci as isize };
                let rhs = Mat { ptr: v[xi * ci * n..].as_ptr(), cs: 1, rs: n as isize };
                // SAFETY: the operands are sized above; m is this block's own buffer.
                unsafe { matmul(co, n, ci, m[xi * co * n..].as_mut_ptr(), n as isize, false, lhs, rhs, inner) };
            }
            // Aᵀ·M·A per tile, bias added: output row 0 combines M rows 0 + 1 + 2, row 1 combines
            // 1 − 2 − 3; then even columns s0 + s1 + s2, odd columns s1 − s2 − s3.
            let (ev, od) = e.split_at_mut(tw + 1);
            for oc in 0..co {
                let bv = bias.map_or(0.0, |b| b[oc]);
                for r in 0..rows {
                    let at = |xi: usize| &m[(xi * co + oc) * n + r * tw..][..tw];
                    for (rr, (ia, ib, ic, sign)) in [(0usize, (0usize, 1usize, 2usize, 1.0f32)), (1, (1, 2, 3, -1.0))] {
                        let oy = 2 * (ty0 + r) + rr;
                        if oy >= h {
                            continue;
                        }
                        let (a0, a1, a2, a3) = (at(ia * 4), at(ia * 4 + 1), at(ia * 4 + 2), at(ia * 4 + 3));
                        let (b0, b1, b2, b3) = (at(ib * 4), at(ib * 4 + 1), at(ib * 4 + 2), at(ib * 4 + 3));
                        let (c0, c1, c2, c3) = (at(ic * 4), at(ic * 4 + 1), at(ic * 4 + 2), at(ic * 4 + 3));
                        let (ev, od) = (&mut ev[..tw], &mut od[..tw]);
                        for tx in 0..tw {
                            let s0 = a0[tx] + sign * (b0[tx] + c0[tx]);
                            let s1 = a1[tx] + sign * (b1[tx] + c1[tx]);
                            let s2 = a2[tx] + sign * (b2[tx] + c2[tx]);
                            let s3 = a3[tx] + sign * (b3[tx] + c3[tx]);
                            ev[tx] = s0 + s1 + s2 + bv;
                            od[tx] = s1 - s2 - s3 + bv;
                        }
                        // SAFETY: each block owns the output rows of its tile rows.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(yp.get().add(((b * co + oc) * h + oy) * wd), wd) };
                        for (pair, (&a, &c)) in dst.chunks_mut(2).zip(ev.iter().zip(od.iter())) {
                            pair[0] = a;
                            if let Some(q) = pair.get_mut(1) {
                                *q = c;
                            }
                        }
                    }
                }
            }
        };
        BUF.with(|buf| match buf.try_borrow_mut() {
            Ok(mut held) => {
                if held.len() < need {
                    held.resize(need, 0.0);
                }
                run(&mut held[..need]);
            }
            Err(_) => run(&mut vec![0.0; need]),
        });
    });
    // SAFETY: every output row of every channel and image is written above, both column parities.
    unsafe { y.set_len(g.batch * co * h * wd) };
    y
}
