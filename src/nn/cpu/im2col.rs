//! Convolution geometry and the patch matrix: im2col gathers, for a range of output positions,
//! the input values each kernel tap sees (rows = (c_in, kh, kw), columns = positions), in the
//! PyTorch weight order, so a weight [c_out, c_in, k, k] multiplies it with no repacking; col2im
//! adds such a matrix back onto the input grid (the transpose, for input gradients).

/// A square-kernel, symmetric-padding, ungrouped 2-D convolution over NCHW tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// The geometry of x [B, C, H, W] against weight [O, C, k, k]; None when the shapes do not
    /// fit this kernel (grouped, non-square, empty output).
    pub fn new(x: [usize; 4], w: [usize; 4], stride: usize, pad: usize) -> Option<Self> {
        let [batch, c_in, h, wd] = x;
        let [c_out, wc, kh, kw] = w;
        if wc != c_in || kh != kw || kh == 0 || stride == 0 || h + 2 * pad < kh || wd + 2 * pad < kw {
            return None;
        }
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (wd + 2 * pad - kw) / stride + 1;
        Some(Self { batch, c_in, h, w: wd, c_out, k: kh, stride, pad, oh, ow })
    }

    /// Rows of the patch matrix: c_in·k².
    pub fn rows(&self) -> usize {
        self.c_in * self.k * self.k
    }

    pub fn n_in(&self) -> usize {
        self.h * self.w
    }

    pub fn n_out(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1×1, stride-1, unpadded conv: the input plane is already the patch matrix.
    pub fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Stride 1 with "same" padding: the input gradient is itself such a conv.
    pub fn same(&self) -> bool {
        self.stride == 1 && 2 * self.pad + 1 == self.k
    }

    /// The output columns [lo, hi) whose tap `kx` lands inside the input row.
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let (s, pad, w) = (self.stride, self.pad, self.w);
        let lo = if pad > kx { (pad - kx).div_ceil(s) } else { 0 };
        let hi = if w + pad > kx { ((w + pad - kx - 1) / s + 1).min(self.ow) } else { 0 };
        (lo.min(hi), hi)
    }
}

/// Fills `col` ([rows, p1 - p0], row-major) with the patches of output positions [p0, p1) of one
/// image `x` ([C, H, W]).
pub fn im2col(g: &Geom, x: &[f32], p0: usize, p1: usize, col: &mut [f32]) {
    if g.stride == 1 && p0.is_multiple_of(g.ow) && (p1 - p0).is_multiple_of(g.ow) {
        return im2col_rows(g, x, p0 / g.ow, (p1 - p0) / g.ow, col);
    }
    let nt = p1 - p0;
    let (k, s) = (g.k, g.stride);
    for (r, row) in col.chunks_exact_mut(nt).take(g.rows()).enumerate() {
        let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
        let plane = &x[ci * g.n_in()..][..g.n_in()];
        let (lo, hi) = g.valid_cols(kx);
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / g.ow, p % g.ow);
            let ox1 = g.ow.min(ox0 + (p1 - p));
            let seg = &mut row[p - p0..p - p0 + (ox1 - ox0)];
            let iy = oy * s + ky;
            if iy < g.pad || iy - g.pad >= g.h {
                seg.fill(0.0);
            } else {
                let src = &plane[(iy - g.pad) * g.w..][..g.w];
                let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1).max(lo.clamp(ox0, ox1)));
                seg[..a - ox0].fill(0.0);
                seg[b - ox0..].fill(0.0);
                let dst = &mut seg[a - ox0..b - ox0];
                if a < b {
                    let ix0 = a * s + kx - g.pad;
                    if s == 1 {
                        dst.copy_from_slice(&src[ix0..ix0 + (b - a)]);
                    } else {
                        dst.iter_mut().enumerate().for_each(|(j, v)| *v = src[ix0 + j * s]);
                    }
                }
            }
            p += ox1 - ox0;
        }
    }
}

/// [`im2col`] of whole output rows oy0..oy0 + n at stride 1: per patch row, the valid columns
/// and the input offset are the same for every output row, so each row is one copy between two
/// zero fills.
fn im2col_rows(g: &Geom, x: &[f32], oy0: usize, n: usize, col: &mut [f32]) {
    let k = g.k;
    for (r, row) in col.chunks_exact_mut(n * g.ow).take(g.rows()).enumerate() {
        let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
        let plane = &x[ci * g.n_in()..][..g.n_in()];
        let (lo, hi) = g.valid_cols(kx);
        for (i, seg) in row.chunks_exact_mut(g.ow).enumerate() {
            let iy = oy0 + i + ky;
            if iy < g.pad || iy - g.pad >= g.h || lo >= hi {
                seg.fill(0.0);
                continue;
            }
            let ix0 = lo + kx - g.pad;
            seg[..lo].fill(0.0);
            seg[hi..].fill(0.0);
            seg[lo..hi].copy_from_slice(&plane[(iy - g.pad) * g.w + ix0..][..hi - lo]);
        }
    }
}

/// Adds `col` ([rows, p1 - p0]) back onto the image gradient `dx` ([C, H, W]): the transpose of
/// [`im2col`].
pub fn col2im(g: &Geom, col: &[f32], p0: usize, p1: usize, dx: &mut [f32]) {
    let nt = p1 - p0;
    let (k, s, n_in) = (g.k, g.stride, g.n_in());
    for (r, row) in col.chunks_exact(nt).take(g.rows()).enumerate() {
        let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
        let plane = &mut dx[ci * n_in..][..n_in];
        let (lo, hi) = g.valid_cols(kx);
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / g.ow, p % g.ow);
            let ox1 = g.ow.min(ox0 + (p1 - p));
            let iy = oy * s + ky;
            if iy >= g.pad && iy - g.pad < g.h {
                let dst = &mut plane[(iy - g.pad) * g.w..][..g.w];
                let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                if a < b {
                    let src = &row[p - p0 + (a - ox0)..p - p0 + (b - ox0)];
                    let ix0 = a * s + kx - g.pad;
                    src.iter().enumerate().for_each(|(j, v)| dst[ix0 + j * s] += v);
                }
            }
            p += ox1 - ox0;
        }
    }
}
