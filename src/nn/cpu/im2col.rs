//! Convolution geometry and the patch matrix: im2col gathers, for a range of output positions,
//! the input values each kernel tap sees (rows = (c_in, kh, kw), columns = positions), in the
//! PyTorch weight order, so a weight [c_out, c_in, kh, kw] multiplies it with no repacking; col2im
//! adds such a matrix back onto the input grid (the transpose, for input gradients).

/// An ungrouped 2-D convolution over NCHW tensors: kh × kw kernel, the same stride along both
/// axes, padding ph rows above and below and pw columns left and right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub ph: usize,
    pub pw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// The geometry of x [B, C, H, W] against weight [O, C, kh, kw] with padding [ph, pw]; None
    /// when the shapes do not fit this kernel (grouped, empty kernel or output).
    pub fn new(x: [usize; 4], w: [usize; 4], stride: usize, pad: [usize; 2]) -> Option<Self> {
        let ([batch, c_in, h, wd], [c_out, wc, kh, kw], [ph, pw]) = (x, w, pad);
        if wc != c_in || kh == 0 || kw == 0 || stride == 0 || h + 2 * ph < kh || wd + 2 * pw < kw {
            return None;
        }
        let oh = (h + 2 * ph - kh) / stride + 1;
        let ow = (wd + 2 * pw - kw) / stride + 1;
        Some(Self { batch, c_in, h, w: wd, c_out, kh, kw, stride, ph, pw, oh, ow })
    }

    /// Taps of the kernel: kh·kw.
    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// Rows of the patch matrix: c_in·kh·kw.
    pub fn rows(&self) -> usize {
        self.c_in * self.taps()
    }

    /// Patch row `r` as (input channel, tap row, tap column).
    fn tap(&self, r: usize) -> (usize, usize, usize) {
        (r / self.taps(), (r / self.kw) % self.kh, r % self.kw)
    }

    pub fn n_in(&self) -> usize {
        self.h * self.w
    }

    pub fn n_out(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1×1, stride-1, unpadded conv: the input plane is already the patch matrix.
    pub fn pointwise(&self) -> bool {
        self.taps() == 1 && self.stride == 1 && self.ph == 0 && self.pw == 0
    }

    /// Stride 1 with "same" padding: the input gradient is itself such a conv.
    pub fn same(&self) -> bool {
        self.stride == 1 && 2 * self.ph + 1 == self.kh && 2 * self.pw + 1 == self.kw
    }

    /// The output columns [lo, hi) whose tap `kx` lands inside the input row.
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let (s, pad, w) = (self.stride, self.pw, self.w);
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
    let (nt, s) = (p1 - p0, g.stride);
    for (r, row) in col.chunks_exact_mut(nt).take(g.rows()).enumerate() {
        let (ci, ky, kx) = g.tap(r);
        let plane = &x[ci * g.n_in()..][..g.n_in()];
        let (lo, hi) = g.valid_cols(kx);
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / g.ow, p % g.ow);
            let ox1 = g.ow.min(ox0 + (p1 - p));
            let seg = &mut row[p - p0..p - p0 + (ox1 - ox0)];
            let iy = oy * s + ky;
            if iy < g.ph || iy - g.ph >= g.h {
                seg.fill(0.0);
            } else {
                let src = &plane[(iy - g.ph) * g.w..][..g.w];
                let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1).max(lo.clamp(ox0, ox1)));
                seg[..a - ox0].fill(0.0);
                seg[b - ox0..].fill(0.0);
                let dst = &mut seg[a - ox0..b - ox0];
                if a < b {
                    let ix0 = a * s + kx - g.pw;
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
    for (r, row) in col.chunks_exact_mut(n * g.ow).take(g.rows()).enumerate() {
        let (ci, ky, kx) = g.tap(r);
        let plane = &x[ci * g.n_in()..][..g.n_in()];
        let (lo, hi) = g.valid_cols(kx);
        for (i, seg) in row.chunks_exact_mut(g.ow).enumerate() {
            let iy = oy0 + i + ky;
            if iy < g.ph || iy - g.ph >= g.h || lo >= hi {
                seg.fill(0.0);
                continue;
            }
            let ix0 = lo + kx - g.pw;
            seg[..lo].fill(0.0);
            seg[hi..].fill(0.0);
            seg[lo..hi].copy_from_slice(&plane[(iy - g.ph) * g.w + ix0..][..hi - lo]);
        }
    }
}

/// Adds `col` ([rows, p1 - p0]) back onto the image gradient `dx` ([C, H, W]): the transpose of
/// [`im2col`].
pub fn col2im(g: &Geom, col: &[f32], p0: usize, p1: usize, dx: &mut [f32]) {
    let nt = p1 - p0;
    let (s, n_in) = (g.stride, g.n_in());
    for (r, row) in col.chunks_exact(nt).take(g.rows()).enumerate() {
        let (ci, ky, kx) = g.tap(r);
        let plane = &mut dx[ci * n_in..][..n_in];
        let (lo, hi) = g.valid_cols(kx);
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / g.ow, p % g.ow);
            let ox1 = g.ow.min(ox0 + (p1 - p));
            let iy = oy * s + ky;
            if iy >= g.ph && iy - g.ph < g.h {
                let dst = &mut plane[(iy - g.ph) * g.w..][..g.w];
                let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                if a < b {
                    let src = &row[p - p0 + (a - ox0)..p - p0 + (b - ox0)];
                    let ix0 = a * s + kx - g.pw;
                    src.iter().enumerate().for_each(|(j, v)| dst[ix0 + j * s] += v);
                }
            }
            p += ox1 - ox0;
        }
    }
}
