//! Convolution forward and both backward passes on f32 NCHW slices, as tiles of output positions:
//! each tile builds its patch matrix once (into a per-thread buffer that is reused, never zeroed)
//! and runs one matrix product that writes straight into the NCHW output, bias pre-filled so it is
//! fused into the store. A 1×1 conv multiplies the input plane in place (no patch matrix); the
//! input gradient of a stride-1 "same" conv is the forward kernel on flipped, transposed weights.
use super::gemm::{matmul, Mat};
use super::im2col::{col2im, im2col, Geom};
use rayon::prelude::*;
use std::cell::RefCell;

/// Patch-matrix elements per tile (~1 MiB of f32, the size of a Zen 4 L2).
const TILE_ELEMS: usize = 1 << 18;

thread_local! {
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a per-thread scratch buffer of at least `len` elements (the patch matrices here,
/// Winograd's blocks). A thread that steals another tile while its own product waits (nested
/// rayon) finds the buffer taken and uses a fresh one.
pub(super) fn with_col<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COL.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => {
            if c.len() < len {
                c.resize(len, 0.0);
            }
            f(&mut c[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// A raw pointer handed to worker threads that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Output-position tiles: (image, first, last) covering every image.
fn tiles(g: &Geom, rows: usize) -> Vec<(usize, usize, usize)> {
    let n = g.n_out();
    let nt = (TILE_ELEMS / rows.max(1)).clamp(64, 4096).min(n.max(1));
    // Whole output rows when a row fits (the patch matrix then fills a row per copy).
    let nt = if g.ow <= nt { nt / g.ow * g.ow } else { nt };
    (0..g.batch).flat_map(|b| (0..n).step_by(nt).map(move |p| (b, p, (p + nt).min(n)))).collect()
}

/// Threads each matrix product may use: all of them when there are too few tiles to share out.
fn inner_threads(tiles: usize) -> usize {
    let t = rayon::current_num_threads();
    if tiles >= 2 * t {
        1
    } else {
        t
    }
}

/// y = conv(x, w) + bias, y freshly allocated [B, O, oh, ow]: Winograd where it applies, else
/// im2col.
pub fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if super::winograd::applies(g) && !super::winograd::disabled() {
        return super::winograd::forward(g, x, w, bias);
    }
    im2col_forward(g, x, w, bias)
}

/// y = conv(x, w) + bias through patch matrices (any geometry).
pub fn im2col_forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (n_out, n_in, rows) = (g.n_out(), g.n_in(), g.rows());
    let mut y = Vec::<f32>::with_capacity(g.batch * g.c_out * n_out);
    let work = tiles(g, rows);
    let inner = inner_threads(work.len());
    let yp = SendPtr(y.as_mut_ptr());
    let lhs = Mat { ptr: w.as_ptr(), cs: 1, rs: rows as isize };
    work.par_iter().for_each(|&(b, p0, p1)| {
        let nt = p1 - p0;
        // SAFETY: each tile writes the columns [p0, p1) of its own image only.
        let dst = unsafe { yp.get().add(b * g.c_out * n_out + p0) };
        if let Some(bias) = bias {
            for (o, &bv) in bias.iter().enumerate().take(g.c_out) {
                (0..nt).for_each(|j| unsafe { dst.add(o * n_out + j).write(bv) });
            }
        }
        let xb = &x[b * g.c_in * n_in..][..g.c_in * n_in];
        let run = |rhs: Mat| unsafe { matmul(g.c_out, nt, rows, dst, n_out as isize, bias.is_some(), lhs, rhs, inner) };
        if g.pointwise() {
            run(Mat { ptr: xb[p0..].as_ptr(), cs: 1, rs: n_in as isize });
        } else {
            with_col(rows * nt, |col| {
                im2col(g, xb, p0, p1, col);
                run(Mat { ptr: col.as_ptr(), cs: 1, rs: nt as isize });
            });
        }
    });
    // SAFETY: the tiles cover every output element once (bias fill or matmul store).
    unsafe { y.set_len(g.batch * g.c_out * n_out) };
    y
}

/// ∂L/∂x for ∂L/∂y `dy` ([B, O, oh, ow]), x of geometry `g`.
pub fn input_grad(g: &Geom, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let (t, co, ci) = (g.taps(), g.c_out, g.c_in);
    if g.same() {
        // dx = conv(dy, w'), w'[i, o, a, b] = w[o, i, kh-1-a, kw-1-b], same padding.
        let mut wt = vec![0.0f32; w.len()];
        for o in 0..co {
            for i in 0..ci {
                for j in 0..t {
                    wt[(i * co + o) * t + (t - 1 - j)] = w[(o * ci + i) * t + j];
                }
            }
        }
        let gt = Geom { c_in: co, c_out: ci, h: g.oh, w: g.ow, oh: g.h, ow: g.w, ..*g };
        return forward(&gt, dy, &wt, None);
    }
    let (n_in, n_out, rows) = (g.n_in(), g.n_out(), g.rows());
    let mut dx = vec![0.0f32; g.batch * ci * n_in];
    let inner = inner_threads(g.batch);
    let nt = (TILE_ELEMS / rows.max(1)).clamp(64, 4096).min(n_out.max(1));
    // colᵀ-product: col[rows, nt] = wᵀ[rows, O]·dy[O, nt], then added back onto the grid.
    let lhs = Mat { ptr: w.as_ptr(), cs: rows as isize, rs: 1 };
    dx.par_chunks_mut(ci * n_in).enumerate().for_each(|(b, dxb)| {
        let dyb = &dy[b * co * n_out..][..co * n_out];
        for p0 in (0..n_out).step_by(nt) {
            let p1 = (p0 + nt).min(n_out);
            with_col(rows * (p1 - p0), |col| {
                let rhs = Mat { ptr: dyb[p0..].as_ptr(), cs: 1, rs: n_out as isize };
                unsafe { matmul(rows, p1 - p0, co, col.as_mut_ptr(), (p1 - p0) as isize, false, lhs, rhs, inner) };
                col2im(g, col, p0, p1, dxb);
            });
        }
    });
    dx
}

/// ∂L/∂w ([O, C, kh, kw]) for input `x` and ∂L/∂y `dy`.
pub fn weight_grad(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (n_out, n_in, rows, co) = (g.n_out(), g.n_in(), g.rows(), g.c_out);
    let work = tiles(g, rows);
    let inner = inner_threads(work.len());
    let tile = |acc: &mut Vec<f32>, &(b, p0, p1): &(usize, usize, usize)| {
        let nt = p1 - p0;
        let lhs = Mat { ptr: dy[b * co * n_out + p0..].as_ptr(), cs: 1, rs: n_out as isize };
        let xb = &x[b * g.c_in * n_in..][..g.c_in * n_in];
        let run = |rhs: Mat, acc: &mut Vec<f32>| unsafe {
            matmul(co, rows, nt, acc.as_mut_ptr(), rows as isize, true, lhs, rhs, inner)
        };
        if g.pointwise() {
            run(Mat { ptr: xb[p0..].as_ptr(), cs: n_in as isize, rs: 1 }, acc);
        } else {
            with_col(rows * nt, |col| {
                im2col(g, xb, p0, p1, col);
                run(Mat { ptr: col.as_ptr(), cs: nt as isize, rs: 1 }, acc);
            });
        }
    };
    let zero = || vec![0.0f32; co * rows];
    if inner > 1 {
        let mut acc = zero();
        work.iter().for_each(|t| tile(&mut acc, t));
        return acc;
    }
    work.par_iter()
        .fold(zero, |mut acc, t| {
            tile(&mut acc, t);
            acc
        })
        .reduce(zero, |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        })
}

/// ∂L/∂bias: the sum of `dy` over images and positions, per output channel.
pub fn bias_grad(g: &Geom, dy: &[f32]) -> Vec<f32> {
    let n_out = g.n_out();
    let mut db = vec![0.0f32; g.c_out];
    for plane in dy.chunks_exact(n_out.max(1)).take(g.batch * g.c_out).enumerate() {
        let (i, plane) = plane;
        db[i % g.c_out] += plane.iter().map(|&v| v as f64).sum::<f64>() as f32;
    }
    db
}
