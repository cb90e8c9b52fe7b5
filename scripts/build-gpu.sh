#!/usr/bin/env bash
# One release binary with the CPU (Flex), CUDA and Vulkan backends, built offline: CUDA goes
# through cubecl-cuda's NVRTC (CUDA C++) path with the LLVM-free stand-in in vendor/cubecl-llvm,
# so neither LLVM nor a CUDA toolkit is needed here. Prints the binary's path on stdout.
#   scripts/build-gpu.sh                 build (target dir: $CARGO_TARGET_DIR/gpu, default target/gpu)
#   scripts/build-gpu.sh --runtime DIR   install what the binary needs at run time on an NVIDIA
#                                        machine (NVRTC + CUDA headers, PyPI wheels) into DIR and
#                                        print the two variables to export
# At run time `--device cuda` needs the driver (libcuda.so.1, R580+ for CUDA 13), libnvrtc on
# LD_LIBRARY_PATH and the headers under $CUDA_PATH/include; it names whichever is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# cudarc's bindings: CUDA 13.0 (override for a CUDA 12 driver, e.g. 12080).
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
if [ "${1:-}" = "--runtime" ]; then
  dir="${2:?--runtime needs a folder}"
  major="${CUDARC_CUDA_VERSION:0:2}"
  if [ "$major" = "13" ]; then
    pip install -q --target "$dir" nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 \
      nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 >&2
    cuda="$dir/nvidia/cu13"
  else
    # CUDA 12 wheels unpack one folder per component: gather them into one CUDA_PATH tree.
    pip install -q --target "$dir/wheels" nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 nvidia-cuda-cccl-cu12 >&2
    cuda="$dir/cuda"
    mkdir -p "$cuda/include" "$cuda/lib"
    for c in "$dir"/wheels/nvidia/*/; do
      [ -d "$c/include" ] && cp -r "$c/include/." "$cuda/include/"
      [ -d "$c/lib" ] && cp -r "$c/lib/." "$cuda/lib/"
    done
  fi
  cuda="$(cd "$cuda" && pwd)"
  echo "export CUDA_PATH=$cuda"
  echo "export LD_LIBRARY_PATH=$cuda/lib:\${LD_LIBRARY_PATH:-}"
  exit 0
fi
target="${CARGO_TARGET_DIR:-target}/gpu"
cargo build --release --features cuda,vulkan --target-dir "$target" --bin mergevq >&2
echo "$target/release/mergevq"
