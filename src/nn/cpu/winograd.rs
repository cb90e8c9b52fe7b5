//! Winograd F(m×m, 3×3) for stride-1, pad-1 3×3 convolutions (Lavin & Gray): each m×m output tile
//! comes from an (m+2)² input patch through (m+2)² channel products instead of 9·m² — 2.25× fewer
//! multiply-adds for F(2×2), 4× for F(4×4). A block of whole tile rows of one image is transformed
//! into (m+2)² matrices V[C, tiles] (Bᵀ·d·B), multiplied by the transformed weights U[O, C]
//! (G·g·Gᵀ; one matrix product each) and transformed back (Aᵀ·M·A) with the bias fused into the
//! store. The transforms run along rows split into m column phases, so every inner loop is a
//! contiguous one the compiler vectorises.
use super::conv::{with_col, SendPtr};
use super::gemm::{matmul, Mat};
use super::im2col::Geom;
use rayon::prelude::*;

/// Target matrix elements per block: V and M of a block stay near 1 MiB.
const BLOCK_ELEMS: usize = 1 << 18;

/// Whether these kernels compute the geometry (any size, with partial tiles at the edges).
pub fn computes(g: &Geom) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == 1
        && g.ph == 1
        && g.pw == 1
        && g.c_in >= 1
        && g.c_out >= 1
        && g.h >= 1
        && g.w >= 1
}

/// Whether Winograd is the faster kernel for the geometry: channels to fill the matrix products,
/// and enough 2×2 tiles per call to amortise the weight transform (16·O·C values): twice the
/// channels, or 128 tiles (measured at 512 channels: a tie at 64 tiles, 1.3× faster at 128, 1.6×
/// at 256 and more).
pub fn applies(g: &Geom) -> bool {
    let tiles = g.batch * g.h.div_ceil(2) * g.w.div_ceil(2);
    computes(g) && g.c_in >= 8 && g.c_out >= 8 && tiles >= (2 * g.c_in.max(g.c_out)).min(128)
}

/// `MERGEVQ_WINOGRAD=0` keeps these convolutions on the im2col kernel (tests compare both).
pub fn disabled() -> bool {
    std::env::var("MERGEVQ_WINOGRAD").is_ok_and(|v| v == "0")
}

/// y = conv3×3(x, w) + bias, stride 1, pad 1: F(4×4) on maps of at least 128² with at most 64
/// channels (where it measured faster: its 36·O·C weights and longer transforms pay off on long
/// tile rows of narrow maps), else F(2×2). `MERGEVQ_WINOGRAD=2` keeps F(2×2) at every size.
pub fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let f2_only = std::env::var("MERGEVQ_WINOGRAD").is_ok_and(|v| v == "2");
    if !f2_only && g.h >= 128 && g.w >= 128 && g.c_in.max(g.c_out) <= 64 {
        forward_tile::<F4>(g, x, w, bias)
    } else {
        forward_tile::<F2>(g, x, w, bias)
    }
}

/// `at(xi)`: the values of M[xi] for one tile row.
pub type TileRow<'a, 'm> = &'a dyn Fn(usize) -> &'m [f32];
/// Receives one finished output row: (row within the tile, its values).
pub type Emit<'a> = &'a mut dyn FnMut(usize, &[f32]);

/// One Winograd variant: its output tile M, its patch A = M + 2, and its three transforms.
pub trait Tile {
    const M: usize;
    const A: usize;
    /// Scratch floats `input_row` and `output_rows` need for `tw` tiles per row: A rows of M
    /// column phases, twice.
    fn scratch(tw: usize) -> usize {
        2 * Self::A * Self::M * (tw + 1)
    }
    /// U = G·g·Gᵀ of one 3×3 kernel `k`: A² values, row-major.
    fn weights(k: &[f32]) -> [f32; 36];
    /// Bᵀ·d·B of every tile in one tile row of one channel plane, d the A input rows from `y0`
    /// (rows off the image are zero): writes V[xi][tx] at `v[xi * stride + tx]`.
    fn input_row(g: &Geom, plane: &[f32], y0: isize, scratch: &mut [f32], v: &mut [f32], stride: usize);
    /// Aᵀ·M·A + bias of one tile row (`at(xi)` the tw values of M[xi]): hands each of the M output
    /// rows, interleaved back into columns (M·tw values), to `emit(row, values)`.
    fn output_rows<'m>(at: TileRow<'_, 'm>, bias: f32, scratch: &mut [f32], emit: Emit<'_>);
}

/// F(2×2, 3×3): transforms of ±1 and ½ only (exact up to rounding); rows split into even and odd
/// columns.
pub struct F2;

impl Tile for F2 {
    const M: usize = 2;
    const A: usize = 4;

    fn weights(k: &[f32]) -> [f32; 36] {
        let mut t = [[0.0f32; 3]; 4];
        for j in 0..3 {
            let (a, b, c) = (k[j], k[3 + j], k[6 + j]);
            t[0][j] = a;
            t[1][j] = 0.5 * (a + b + c);
            t[2][j] = 0.5 * (a - b + c);
            t[3][j] = c;
        }
        let mut u = [0.0f32; 36];
        for (i, r) in t.iter().enumerate() {
            let row = [r[0], 0.5 * (r[0] + r[1] + r[2]), 0.5 * (r[0] - r[1] + r[2]), r[2]];
            u[i * 4..i * 4 + 4].copy_from_slice(&row);
        }
        u
    }

    fn input_row(g: &Geom, plane: &[f32], y0: isize, scratch: &mut [f32], v: &mut [f32], stride: usize) {
        let (h, w, tw) = (g.h, g.w, g.w.div_ceil(2));
        let n = tw + 1;
        let (e, o) = scratch[..8 * n].split_at_mut(4 * n);
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
            let [r0, r1, r2, r3] = strided_mut(s, n, n);
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
            let [v0, v1, v2, v3] = strided_mut(&mut v[(i * 4) * stride..], stride, tw);
            for tx in 0..tw {
                let (a, b, c, d) = (ei[tx], oi[tx], ei[tx + 1], oi[tx + 1]);
                v0[tx] = a - c;
                v1[tx] = b + c;
                v2[tx] = c - b;
                v3[tx] = b - d;
            }
        }
    }

    fn output_rows<'m>(at: TileRow<'_, 'm>, bias: f32, scratch: &mut [f32], emit: Emit<'_>) {
        let tw = at(0).len();
        let (ev, rest) = scratch.split_at_mut(tw);
        let (od, row) = rest.split_at_mut(tw);
        // Output row 0 combines M rows 0 + 1 + 2, row 1 combines 1 − 2 − 3; then even columns
        // s0 + s1 + s2, odd columns s1 − s2 − s3.
        for (rr, (ia, ib, ic, sign)) in [(0usize, (0usize, 1usize, 2usize, 1.0f32)), (1, (1, 2, 3, -1.0))] {
            let (a0, a1, a2, a3) = (at(ia * 4), at(ia * 4 + 1), at(ia * 4 + 2), at(ia * 4 + 3));
            let (b0, b1, b2, b3) = (at(ib * 4), at(ib * 4 + 1), at(ib * 4 + 2), at(ib * 4 + 3));
            let (c0, c1, c2, c3) = (at(ic * 4), at(ic * 4 + 1), at(ic * 4 + 2), at(ic * 4 + 3));
            for tx in 0..tw {
                let s0 = a0[tx] + sign * (b0[tx] + c0[tx]);
                let s1 = a1[tx] + sign * (b1[tx] + c1[tx]);
                let s2 = a2[tx] + sign * (b2[tx] + c2[tx]);
                let s3 = a3[tx] + sign * (b3[tx] + c3[tx]);
                ev[tx] = s0 + s1 + s2 + bias;
                od[tx] = s1 - s2 - s3 + bias;
            }
            let row = &mut row[..2 * tw];
            for (pair, (&a, &c)) in row.chunks_exact_mut(2).zip(ev.iter().zip(od.iter())) {
                pair[0] = a;
                pair[1] = c;
            }
            emit(rr, row);
        }
    }
}

/// F(4×4, 3×3) on the points 0, ±1, ±2 and ∞ (coefficients up to 8: rounding grows ~10× over
/// F(2×2), still far inside f32 for these depths); rows split into 4 column phases.
pub struct F4;

/// The six outputs of Bᵀ (rows 4 0 −5 0 1 0 / 0 −4 −4 1 1 0 / 0 4 −4 −1 1 0 / 0 −2 −1 2 1 0 /
/// 0 2 −1 −2 1 0 / 0 4 0 −5 0 1) applied to d.
#[inline(always)]
fn bt6(d: [f32; 6]) -> [f32; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    [
        4.0 * d0 - 5.0 * d2 + d4,
        d3 + d4 - 4.0 * (d1 + d2),
        d4 - d3 + 4.0 * (d1 - d2),
        d4 - d2 + 2.0 * (d3 - d1),
        d4 - d2 + 2.0 * (d1 - d3),
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// The four outputs of Aᵀ (rows 1 1 1 1 1 0 / 0 1 −1 2 −2 0 / 0 1 1 4 4 0 / 0 1 −1 8 −8 1).
#[inline(always)]
fn at6(m: [f32; 6]) -> [f32; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (p, q, r, s) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [m0 + p + r, q + 2.0 * s, p + 4.0 * r, q + 8.0 * s + m5]
}

impl Tile for F4 {
    const M: usize = 4;
    const A: usize = 6;

    fn weights(k: &[f32]) -> [f32; 36] {
        // G rows: ¼ 0 0 / −⅙ −⅙ −⅙ / −⅙ ⅙ −⅙ / 1⁄24 1⁄12 ⅙ / 1⁄24 −1⁄12 ⅙ / 0 0 1.
        let g = |a: f32, b: f32, c: f32| {
            [
                a / 4.0,
                -(a + b + c) / 6.0,
                -(a - b + c) / 6.0,
                a / 24.0 + b / 12.0 + c / 6.0,
                a / 24.0 - b / 12.0 + c / 6.0,
                c,
            ]
        };
        let cols: [[f32; 6]; 3] = std::array::from_fn(|j| g(k[j], k[3 + j], k[6 + j]));
        let mut u = [0.0f32; 36];
        for i in 0..6 {
            u[i * 6..i * 6 + 6].copy_from_slice(&g(cols[0][i], cols[1][i], cols[2][i]));
        }
        u
    }

    fn input_row(g: &Geom, plane: &[f32], y0: isize, scratch: &mut [f32], v: &mut [f32], stride: usize) {
        let (h, w, tw) = (g.h, g.w, g.w.div_ceil(4));
        let n = tw + 1;
        let (d, t) = scratch[..48 * n].split_at_mut(24 * n);
        // Row i, phase q at d[(i·4 + q)·n + k] = p[4k + q] = x[4k + q − 1] (padded row).
        for i in 0..6 {
            let row = &mut d[i * 4 * n..][..4 * n];
            row.fill(0.0);
            let y = y0 + i as isize;
            if y < 0 || y >= h as isize {
                continue;
            }
            let src = &plane[y as usize * w..][..w];
            for (x, &val) in src.iter().enumerate() {
                row[((x + 1) % 4) * n + (x + 1) / 4] = val;
            }
        }
        // Bᵀ along the rows, every phase at once.
        {
            let dr: [&[f32]; 6] = std::array::from_fn(|i| &d[i * 4 * n..][..4 * n]);
            let [t0, t1, t2, t3, t4, t5] = strided_mut(t, 4 * n, 4 * n);
            for k in 0..4 * n {
                let o = bt6([dr[0][k], dr[1][k], dr[2][k], dr[3][k], dr[4][k], dr[5][k]]);
                (t0[k], t1[k], t2[k], t3[k], t4[k], t5[k]) = (o[0], o[1], o[2], o[3], o[4], o[5]);
            }
        }
        // B along the columns: tile tx sees phases 0‥3 at tx, then phases 0 and 1 at tx + 1.
        for i in 0..6 {
            let ti = &t[i * 4 * n..][..4 * n];
            let (c0, c1, c2, c3) = (&ti[..tw], &ti[n..n + tw], &ti[2 * n..2 * n + tw], &ti[3 * n..3 * n + tw]);
            let (c4, c5) = (&ti[1..=tw], &ti[n + 1..n + 1 + tw]);
            let [v0, v1, v2, v3, v4, v5] = strided_mut(&mut v[i * 6 * stride..], stride, tw);
            for tx in 0..tw {
                let o = bt6([c0[tx], c1[tx], c2[tx], c3[tx], c4[tx], c5[tx]]);
                (v0[tx], v1[tx], v2[tx], v3[tx], v4[tx], v5[tx]) = (o[0], o[1], o[2], o[3], o[4], o[5]);
            }
        }
    }

    fn output_rows<'m>(at: TileRow<'_, 'm>, bias: f32, scratch: &mut [f32], emit: Emit<'_>) {
        let tw = at(0).len();
        let (s, row) = scratch.split_at_mut(24 * tw);
        // Aᵀ down the rows: s[rr·6 + j] = output row rr's combination of column j.
        for j in 0..6 {
            let (m0, m1, m2, m3, m4, m5) = (at(j), at(6 + j), at(12 + j), at(18 + j), at(24 + j), at(30 + j));
            let [s0, s1, s2, s3] = strided_mut(&mut s[j * tw..], 6 * tw, tw);
            for tx in 0..tw {
                let o = at6([m0[tx], m1[tx], m2[tx], m3[tx], m4[tx], m5[tx]]);
                (s0[tx], s1[tx], s2[tx], s3[tx]) = (o[0], o[1], o[2], o[3]);
            }
        }
        // Then across the columns, interleaved back into the output row.
        for rr in 0..4 {
            let sr: [&[f32]; 6] = std::array::from_fn(|j| &s[(rr * 6 + j) * tw..][..tw]);
            let row = &mut row[..4 * tw];
            for (tx, quad) in row.chunks_exact_mut(4).enumerate() {
                let o = at6([sr[0][tx], sr[1][tx], sr[2][tx], sr[3][tx], sr[4][tx], sr[5][tx]]);
                quad.copy_from_slice(&[o[0] + bias, o[1] + bias, o[2] + bias, o[3] + bias]);
            }
            emit(rr, row);
        }
    }
}

/// N disjoint `len`-long slices of `buf`, `stride` apart.
fn strided_mut<const N: usize>(buf: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; N] {
    let mut rest = buf;
    std::array::from_fn(|i| {
        let r = std::mem::take(&mut rest);
        let (head, tail) = r.split_at_mut(if i + 1 < N { stride } else { r.len() });
        rest = tail;
        &mut head[..len]
    })
}

/// U = G·g·Gᵀ for every (o, c), stored as A² matrices [O, C]. The transform is linear, so each
/// of the A² planes is a fixed combination of the 9 taps (read off `T::weights` of unit kernels):
/// runs of kernels are split into 9 tap rows and every plane is summed over them in contiguous,
/// vectorised loops, the runs spread over the cores.
fn transform_weights<T: Tile>(g: &Geom, w: &[f32]) -> Vec<f32> {
    const RUN: usize = 512;
    let n = g.c_out * g.c_in;
    let a2 = T::A * T::A;
    // coef[xi][t]: plane xi's weight on tap t.
    let units: Vec<[f32; 36]> = (0..9)
        .map(|t| {
            let mut e = [0.0f32; 9];
            e[t] = 1.0;
            T::weights(&e)
        })
        .collect();
    let coef: Vec<[f32; 9]> = (0..a2).map(|xi| std::array::from_fn(|t| units[t][xi])).collect();
    let mut u = vec![0.0f32; a2 * n];
    let up = SendPtr(u.as_mut_ptr());
    w[..9 * n].par_chunks(9 * RUN).enumerate().for_each(|(i, ks)| {
        let len = ks.len() / 9;
        let mut taps = [[0.0f32; RUN]; 9];
        for (j, k) in ks.chunks_exact(9).enumerate() {
            (0..9).for_each(|t| taps[t][j] = k[t]);
        }
        for (xi, cs) in coef.iter().enumerate() {
            // SAFETY: run i writes its own columns [i·RUN, i·RUN + len) of every A² plane.
            let dst = unsafe { std::slice::from_raw_parts_mut(up.get().add(xi * n + i * RUN), len) };
            for (&c, row) in cs.iter().zip(&taps) {
                if c != 0.0 {
                    dst.iter_mut().zip(&row[..len]).for_each(|(d, &v)| *d += c * v);
                }
            }
        }
    });
    u
}

/// y = conv3×3(x, w) + bias, stride 1, pad 1, through the Winograd variant `T`.
pub fn forward_tile<T: Tile>(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (co, ci, h, wd) = (g.c_out, g.c_in, g.h, g.w);
    let a2 = T::A * T::A;
    let (th, tw) = (h.div_ceil(T::M), wd.div_ceil(T::M));
    let rows_per_block = (BLOCK_ELEMS / (a2 * (ci + co) * tw)).max(32usize.div_ceil(tw)).clamp(1, th);
    let u = transform_weights::<T>(g, w);
    let mut y = Vec::<f32>::with_capacity(g.batch * co * h * wd);
    let yp = SendPtr(y.as_mut_ptr());
    let blocks: Vec<(usize, usize)> =
        (0..g.batch).flat_map(|b| (0..th).step_by(rows_per_block).map(move |r| (b, r))).collect();
    let inner = if blocks.len() >= 2 * rayon::current_num_threads() { 1 } else { rayon::current_num_threads() };
    blocks.par_iter().for_each(|&(b, ty0)| {
        let rows = rows_per_block.min(th - ty0);
        let n = rows * tw;
        let need = a2 * (ci + co) * n + T::scratch(tw);
        let run = |buf: &mut [f32]| {
            let (v, rest) = buf.split_at_mut(a2 * ci * n);
            let (m, scratch) = rest.split_at_mut(a2 * co * n);
            // V[xi][c][tile]: the row of channel c for tile row r starts at xi·C·n + c·n + r·tw.
            for c in 0..ci {
                let plane = &x[(b * ci + c) * h * wd..][..h * wd];
                for r in 0..rows {
                    let y0 = (T::M * (ty0 + r)) as isize - 1;
                    T::input_row(g, plane, y0, scratch, &mut v[c * n + r * tw..], ci * n);
                }
            }
            for xi in 0..a2 {
                let lhs = Mat { ptr: u[xi * co * ci..].as_ptr(), cs: 1, rs: ci as isize };
                let rhs = Mat { ptr: v[xi * ci * n..].as_ptr(), cs: 1, rs: n as isize };
                // SAFETY: the operands are sized above; m is this block's own buffer.
                unsafe { matmul(co, n, ci, m[xi * co * n..].as_mut_ptr(), n as isize, false, lhs, rhs, inner) };
            }
            for oc in 0..co {
                let bv = bias.map_or(0.0, |b| b[oc]);
                for r in 0..rows {
                    let at = |xi: usize| &m[(xi * co + oc) * n + r * tw..][..tw];
                    T::output_rows(&at, bv, scratch, &mut |rr, values| {
                        let oy = T::M * (ty0 + r) + rr;
                        if oy < h {
                            // SAFETY: each block owns the output rows of its tile rows.
                            unsafe {
                                let dst = yp.get().add(((b * co + oc) * h + oy) * wd);
                                std::ptr::copy_nonoverlapping(values[..wd].as_ptr(), dst, wd);
                            }
                        }
                    });
                }
            }
        };
        with_col(need, run);
    });
    // SAFETY: every output row of every channel and image is written above, every column.
    unsafe { y.set_len(g.batch * co * h * wd) };
    y
}
