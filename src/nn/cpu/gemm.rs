//! The matrix product under every CPU convolution kernel, and the instruction set it runs on.
//!
//! The `gemm` crate (the one Burn's Flex backend uses) picks its micro-kernel at run time from the
//! features the CPU reports (AVX-512, AVX2+FMA, NEON, or scalar), so no kernel can reach an
//! instruction the machine lacks. `MERGEVQ_CPU=portable` forces the crate's plain-Rust fallback,
//! which is what a CPU without any of those extensions runs; tests use it to cover that path.
use std::sync::OnceLock;

/// The instruction-set level the kernels run at on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuLevel {
    Avx512,
    Avx2,
    Neon,
    Portable,
}

impl CpuLevel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Neon => "neon",
            Self::Portable => "portable",
        }
    }
}

/// Whether `MERGEVQ_CPU=portable` asks for the portable kernels (read at every call, so a test
/// can switch it).
pub fn portable_forced() -> bool {
    std::env::var("MERGEVQ_CPU").is_ok_and(|v| v.eq_ignore_ascii_case("portable"))
}

fn detected() -> CpuLevel {
    static LEVEL: OnceLock<CpuLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // Both x86 levels include AVX2 and FMA (the packed decoding kernel needs them).
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return if is_x86_feature_detected!("avx512f") { CpuLevel::Avx512 } else { CpuLevel::Avx2 };
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                return CpuLevel::Neon;
            }
        }
        CpuLevel::Portable
    })
}

/// The level the next kernel call runs at.
pub fn level() -> CpuLevel {
    if portable_forced() {
        CpuLevel::Portable
    } else {
        detected()
    }
}

/// A row-major-or-strided matrix view: base pointer, column stride, row stride (in elements).
#[derive(Clone, Copy)]
pub struct Mat {
    pub ptr: *const f32,
    pub cs: isize,
    pub rs: isize,
}

// SAFETY: a view is only read, and the caller of `matmul` keeps the data alive.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

/// dst[m×n] = (accumulate ? dst : 0) + lhs[m×k]·rhs[k×n].
///
/// # Safety
/// Every element the strides address must lie inside live allocations; `dst` must not alias
/// `lhs` or `rhs`, and no other thread may touch the addressed part of `dst`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *dst.offset(i as isize * dst_rs + j as isize) = 0.0;
                }
            }
        }
        return;
    }
    if portable_forced() {
        portable(m, n, k, dst, dst_rs, accumulate, lhs, rhs);
        return;
    }
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    gemm::gemm(
        m, n, k, dst, 1, dst_rs, accumulate, lhs.ptr, lhs.cs, lhs.rs, rhs.ptr, rhs.cs, rhs.rs, 1.0, 1.0, false, false,
        false, par,
    );
}

/// The plain-Rust product: one output row at a time, accumulated over the depth so the inner loop
/// is a contiguous axpy the compiler vectorises for whatever baseline the build targets.
#[allow(clippy::too_many_arguments)]
unsafe fn portable(m: usize, n: usize, k: usize, dst: *mut f32, dst_rs: isize, accumulate: bool, lhs: Mat, rhs: Mat) {
    let mut row = vec![0.0f32; n];
    let mut b = vec![0.0f32; n];
    for i in 0..m {
        row.fill(0.0);
        for d in 0..k {
            let a = *lhs.ptr.offset(i as isize * lhs.rs + d as isize * lhs.cs);
            let base = rhs.ptr.offset(d as isize * rhs.rs);
            b.iter_mut().enumerate().for_each(|(j, v)| *v = *base.offset(j as isize * rhs.cs));
            row.iter_mut().zip(&b).for_each(|(r, v)| *r += a * v);
        }
        let out = dst.offset(i as isize * dst_rs);
        for (j, v) in row.iter().enumerate() {
            let o = out.add(j);
            *o = if accumulate { *o + v } else { *v };
        }
    }
}
