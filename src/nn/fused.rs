//! Fused CPU kernels for inference on the Flex backend: GroupNorm (+ SiLU) in two passes over
//! each group and SiLU in one, spread over the cores, with an exp that the compiler vectorises.
//! Burn's own ops take ~8 passes for GroupNorm and evaluate exp one scalar at a time on one core;
//! these are the CNN's largest costs after the convolutions. Tensors that carry gradients (and
//! GPU builds) keep Burn's ops.
use burn::prelude::*;
use rayon::prelude::*;

/// Whether `x` takes the fused kernels: on the CPU device, no gradient to record, and no request
/// for the generic path (`MERGEVQ_GENERIC=1`).
pub fn enabled<const D: usize>(x: &Tensor<D>) -> bool {
    !x.is_tracked() && host_kernels(&x.device())
}

/// Whether work on `device` may run on the host: the CPU device, and no request for the
/// generic path (`MERGEVQ_GENERIC=1`, which runs every op as a GPU would).
pub fn host_kernels(device: &Device) -> bool {
    !generic_forced() && crate::device::is_cpu(device)
}

#[cfg(feature = "flex")]
use super::cpu::generic_forced;

#[cfg(not(feature = "flex"))]
fn generic_forced() -> bool {
    true
}

/// e^x to ~2 ulp (Cephes expf): x = n·ln2 + r, e^r by a degree-6 polynomial, 2^n from the exponent
/// bits. Branch-free, so loops over slices become SIMD.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    // n = round(x·log2 e) without a rounding instruction: adding 1.5·2^23 leaves n in the low
    // mantissa bits (baseline x86-64 has no SIMD floor).
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let ni = t.to_bits() as i32 - 0x4B40_0000;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5e-1;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((ni + 127) << 23) as u32)
}

#[inline(always)]
fn silu_scalar(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

pub(crate) fn host<const D: usize>(x: Tensor<D>) -> ([usize; D], Device, Vec<f32>) {
    let (dims, device) = (x.dims(), x.device());
    let v = crate::io::readback::floats(x);
    (dims, device, v)
}

/// SiLU(x) = x·σ(x).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let (dims, device, mut v) = host(x);
    v.par_chunks_mut(1 << 14).for_each(|c| c.iter_mut().for_each(|x| *x = silu_scalar(*x)));
    Tensor::from_data(TensorData::new(v, dims), &device)
}

/// GELU(x) = ½x(1 + erf(x/√2)), erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7) with the
/// vectorised exp: branch-free, unlike libm's erff one scalar at a time.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let (dims, device, mut v) = host(x);
    v.par_chunks_mut(1 << 14).for_each(|c| {
        c.iter_mut().for_each(|x| {
            let z = (*x * std::f32::consts::FRAC_1_SQRT_2).abs();
            let t = 1.0 / (1.0 + 0.327_591_1 * z);
            let p = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6) * t;
            let erf = (1.0 - p * exp(-z * z)).copysign(*x);
            *x *= 0.5 * (1.0 + erf);
        })
    });
    Tensor::from_data(TensorData::new(v, dims), &device)
}

/// GroupNorm over [B, C, H, W] (biased variance, as torch), optional per-channel affine, then
/// SiLU when `act`. Each (b, group) block is contiguous: mean, then variance, then one write.
pub fn group_norm(
    x: Tensor<4>,
    groups: usize,
    eps: f64,
    affine: Option<(Tensor<1>, Tensor<1>)>,
    act: bool,
) -> Tensor<4> {
    let [_, c, h, w] = x.dims();
    let (dims, device, mut v) = host(x);
    let (weight, bias) = match affine {
        Some((wt, bs)) => (host(wt).2, host(bs).2),
        None => (vec![1.0; c], vec![0.0; c]),
    };
    let (cg, hw) = (c / groups, h * w);
    v.par_chunks_mut(cg * hw).enumerate().for_each(|(i, block)| {
        let n = block.len() as f64;
        let mean = block.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = block.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = (1.0 / (var + eps).sqrt()) as f32;
        let mean = mean as f32;
        let g = i % groups;
        for (k, ch) in block.chunks_mut(hw).enumerate() {
            let ci = g * cg + k;
            let (a, b) = (inv * weight[ci], bias[ci] - mean * inv * weight[ci]);
            if act {
                ch.iter_mut().for_each(|x| *x = silu_scalar(*x * a + b));
            } else {
                ch.iter_mut().for_each(|x| *x = *x * a + b);
            }
        }
    });
    Tensor::from_data(TensorData::new(v, dims), &device)
}
