//! CPU kernels for the Flex backend, reached through Burn's backend-extension point so that other
//! backends keep Burn's generic ops and autodiff keeps working (the extension has its own
//! backward). `MERGEVQ_GENERIC=1` forces the generic path everywhere; `MERGEVQ_CPU=portable`
//! keeps these kernels but on the plain-Rust matrix product (see [`gemm`]).
pub mod attention;
pub mod conv;
pub mod ext;
pub mod gemm;
pub mod im2col;
pub mod packed;
pub mod team;
pub mod winograd;

use burn::prelude::*;

/// Whether `MERGEVQ_GENERIC` asks for Burn's generic ops (read at every call, so tests can compare
/// both paths in one process).
pub fn generic_forced() -> bool {
    std::env::var("MERGEVQ_GENERIC").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether `x` may take the CPU kernels: on the CPU device, f32 data, and no request for the
/// generic path.
pub fn enabled<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == burn::tensor::DType::F32 && !generic_forced() && crate::device::is_cpu(&x.device())
}

/// conv2d(x, weight) + bias through the CPU extension (one group; padding [rows, columns]).
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: [usize; 2],
) -> Tensor<4> {
    use burn::backend::Dispatch;
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &x.device()));
    let y = <Dispatch as ext::CpuConv>::mvq_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    );
    Tensor::from_dispatch(y)
}
