#!/usr/bin/env bash
# The same suite on an NVIDIA machine: our Vulkan build next to the reference on CUDA.
# Prepare here (x86-64):
#   cargo build --release --features vulkan --target-dir target/vulkan
#   mkdir -p .gpu && strip -o /tmp/m target/vulkan/release/mergevq && xz -c /tmp/m > .gpu/mergevq.xz
#   cp -r /path/to/MergeVQ .gpu/ref          # the reference checkout (its fig/ folder is not needed)
#   Vulkan loader packages in .gl/ when the machine has none (libvulkan1 and friends, as .deb)
# Run there from the repo root: bash bench/gpu.sh; results land in $OUT/gpu-results.tgz.
set -u
for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"; R=/tmp/res; mkdir -p "$R" "$OUT"
xz -dc .gpu/mergevq.xz > /tmp/mergevq && chmod +x /tmp/mergevq
nvidia-smi -L
run() { local t=$1 name=$2; shift 2; local s=$SECONDS; timeout "$t" "$@" --json "$R/$name.json" > "$R/$name.log" 2>&1; echo "$name rc=$? $((SECONDS - s))s"; tail -4 "$R/$name.log"; }
trap 'tar czf "$OUT/gpu-results.tgz" -C "$R" .' EXIT
run 60 gr1 /tmp/mergevq bench tokenizer --config configs/mergevq_256_GR_d64.toml --batch 1
run 140 ref python3 bench/reference.py --ref .gpu/ref --device cuda --runs 5
run 50 gr8 /tmp/mergevq bench tokenizer --config configs/mergevq_256_GR_d64.toml --batch 8
run 50 g1 /tmp/mergevq bench tokenizer --config configs/mergevq_256_G_d64.toml --batch 1
run 50 g8 /tmp/mergevq bench tokenizer --config configs/mergevq_256_G_d64.toml --batch 8
run 25 tome /tmp/mergevq bench tome
run 25 lfq /tmp/mergevq bench lfq
run 80 ar /tmp/mergevq bench ar --runs 3
