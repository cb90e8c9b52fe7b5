//! y = x·Wᵀ on the host for the few-row products of decoding (one row per sequence and step),
//! with W packed once into panels of 16 output columns, k-major, so a step streams each weight
//! once and reuses it from L1 for every row. Every output element is one fused multiply-add chain
//! over k in order: a row's result does not depend on how many rows run with it, on the thread
//! count, or on the instruction set (AVX2+FMA, or the portable `mul_add` path, which aarch64
//! compiles to NEON and `MERGEVQ_CPU=portable` forces).
use super::gemm::{level, CpuLevel};
use super::team::Shared;
use crate::nn::fused::exp;
use rayon::prelude::*;
use std::ops::Range;

/// Output columns per panel.
const NR: usize = 16;
/// Rows per register tile (12 accumulators of 8 lanes: more than two FMA pipes of latency 4 need).
const MR: usize = 6;

/// A weight [n, k] (PyTorch's [out, in]) in panels [n/16][k][16], zero-padded; or, gated, two
/// weights [n, k] in panels of 8 columns of each.
#[derive(Clone, Debug)]
pub struct PackedLinear {
    panels: Vec<f32>,
    n: usize,
    k: usize,
    gated: bool,
}

impl PackedLinear {
    /// Packs a row-major weight [n, k].
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight of {} values for [{n}, {k}]", w.len());
        let mut panels = vec![0f32; n.div_ceil(NR) * k * NR];
        for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (p, c) = (j / NR, j % NR);
            for (kk, &v) in row.iter().enumerate() {
                panels[(p * k + kk) * NR + c] = v;
            }
        }
        Self { panels, n, k, gated: false }
    }

    /// Packs w1, w3 [n, k] for SwiGLU's gated product SiLU(x·w1ᵀ)·(x·w3ᵀ) [m, n]: panel p holds
    /// rows 8p.. of w1 in its first 8 columns and the same rows of w3 in the last 8, so one tile
    /// has both factors of its outputs.
    pub fn gated(w1: &[f32], w3: &[f32], n: usize, k: usize) -> Self {
        assert!(
            w1.len() == n * k && w3.len() == n * k,
            "gate weights of {}, {} values for [{n}, {k}]",
            w1.len(),
            w3.len()
        );
        let half = NR / 2;
        let mut panels = vec![0f32; n.div_ceil(half) * k * NR];
        for (off, w) in [(0, w1), (half, w3)] {
            for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
                let (p, c) = (j / half, off + j % half);
                for (kk, &v) in row.iter().enumerate() {
                    panels[(p * k + kk) * NR + c] = v;
                }
            }
        }
        Self { panels, n, k, gated: true }
    }

    /// Output width n.
    pub fn out_dim(&self) -> usize {
        self.n
    }

    /// Input width k.
    pub fn in_dim(&self) -> usize {
        self.k
    }

    /// Output columns per panel: 16, or 8 when gated.
    fn width(&self) -> usize {
        if self.gated {
            NR / 2
        } else {
            NR
        }
    }

    /// Panels, each a task's unit.
    pub fn panels(&self) -> usize {
        self.n.div_ceil(self.width())
    }

    /// y [m, n] = x [m, k]·Wᵀ.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * self.n];
        let ys = Shared::new(&mut y);
        // One task per panel: its columns of every row.
        (0..self.panels()).into_par_iter().for_each(|p| {
            // SAFETY: task p writes only panel p's columns.
            unsafe { self.forward_into(x, m, p..p + 1, ys, false) }
        });
        y
    }

    /// The columns of `panels` of y [m, n]: x [m, k]·Wᵀ, added to what y holds when `add`
    /// (a residual: y + chain, as adding the product afterwards would give); gated, a/(1 + e⁻ᵃ)·b
    /// of the two chains a, b of each output (written, never added).
    ///
    /// # Safety
    /// Nothing else reads or writes those columns of y meanwhile.
    pub unsafe fn forward_into(&self, x: &[f32], m: usize, panels: Range<usize>, y: Shared, add: bool) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "input of {} values for [{m}, {k}]", x.len());
        assert!(y.len() >= m * n && panels.end <= self.panels(), "output of {} values for [{m}, {n}]", y.len());
        assert!(!(self.gated && add), "a gated product writes its outputs");
        let fma = matches!(level(), CpuLevel::Avx2 | CpuLevel::Avx512);
        // Row tiles of near-equal sizes (32 rows: 6 6 5 5 5 5, not 6·5 + 2): every tile keeps
        // enough accumulators in flight.
        let tiles = m.div_ceil(MR);
        let mut acc = [0f32; MR * NR];
        let (end, width) = (panels.end, self.width());
        for p in panels {
            let w = &self.panels[p * k * NR..(p + 1) * k * NR];
            let cols = (n - p * width).min(width);
            // The first tile fetches the next panel while it computes (each panel row is one
            // cache line); the others, which find theirs in cache, touch their own.
            let next = if p + 1 < end { &self.panels[(p + 1) * k * NR..(p + 2) * k * NR] } else { w };
            for t in 0..tiles {
                let (r, r1) = (m * t / tiles, m * (t + 1) / tiles);
                tile(&x[r * k..], r1 - r, k, w, if t == 0 { next } else { w }, &mut acc, fma);
                for (i, a) in acc.chunks_exact(NR).take(r1 - r).enumerate() {
                    let dst = y.ptr().add((r + i) * n + p * width);
                    if self.gated {
                        // All 8 lanes at once (vectorises), then the panel's columns.
                        let g: [f32; NR / 2] = std::array::from_fn(|c| a[c] / (1.0 + exp(-a[c])) * a[NR / 2 + c]);
                        std::ptr::copy_nonoverlapping(g.as_ptr(), dst, cols);
                    } else if add {
                        for (c, &v) in a.iter().take(cols).enumerate() {
                            *dst.add(c) += v;
                        }
                    } else {
                        std::ptr::copy_nonoverlapping(a.as_ptr(), dst, cols);
                    }
                }
            }
        }
    }
}

/// out[r][0..16] = Σ_k x[r·k + kk]·w[kk][0..16] for `rows` ≤ MR rows.
fn tile(x: &[f32], rows: usize, k: usize, w: &[f32], prefetch: &[f32], out: &mut [f32], fma: bool) {
    macro_rules! run {
        ($r:literal) => {{
            #[cfg(target_arch = "x86_64")]
            if fma {
                // SAFETY: AVX2 and FMA were detected; the slices hold rows·k, k·16 and rows·16 values.
                unsafe { tile_avx2::<$r>(x, k, w, prefetch, out) };
                return;
            }
            let _ = (fma, prefetch);
            tile_portable::<$r>(x, k, w, out)
        }};
    }
    match rows {
        1 => run!(1),
        2 => run!(2),
        3 => run!(3),
        4 => run!(4),
        5 => run!(5),
        _ => run!(6),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize>(x: &[f32], k: usize, w: &[f32], prefetch: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(x.len() >= (R - 1) * k + k && w.len() >= k * NR && prefetch.len() >= k * NR && out.len() >= R * NR);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let (xp, wp, pp) = (x.as_ptr(), w.as_ptr(), prefetch.as_ptr());
    for kk in 0..k {
        _mm_prefetch::<_MM_HINT_T0>(pp.add(kk * NR) as *const i8);
        let w0 = _mm256_loadu_ps(wp.add(kk * NR));
        let w1 = _mm256_loadu_ps(wp.add(kk * NR + 8));
        for (r, a) in acc.iter_mut().enumerate() {
            let xb = _mm256_set1_ps(*xp.add(r * k + kk));
            a[0] = _mm256_fmadd_ps(xb, w0, a[0]);
            a[1] = _mm256_fmadd_ps(xb, w1, a[1]);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(r * NR), a[0]);
        _mm256_storeu_ps(out.as_mut_ptr().add(r * NR + 8), a[1]);
    }
}

/// The same chains with `mul_add` (one rounding per step, as the FMA instruction).
fn tile_portable<const R: usize>(x: &[f32], k: usize, w: &[f32], out: &mut [f32]) {
    let mut acc = [[0f32; NR]; R];
    for (kk, wk) in w.chunks_exact(NR).take(k).enumerate() {
        for (r, a) in acc.iter_mut().enumerate() {
            let xv = x[r * k + kk];
            a.iter_mut().zip(wk).for_each(|(a, &w)| *a = xv.mul_add(w, *a));
        }
    }
    for (r, a) in acc.iter().enumerate() {
        out[r * NR..(r + 1) * NR].copy_from_slice(a);
    }
}
