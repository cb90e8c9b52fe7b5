#!/usr/bin/env bash
# Issue-17 evaluation of the colour tokenizer (configs/science/photo64.toml) on the held-out photos
# (scripts/fetch-photos.sh): PSNR, SSIM, LPIPS and codebook usage on their 64² tiles at K = 64…16, and on
# 256² centre crops with the same weights at 32×32 = 1024 tokens (configs/science/photo64_at256.toml).
# No rFID: 336 tiles and 3 crops are too few for a meaningful FID. Reports go to OUT (docs/results/photo).
#   scripts/eval-photo.sh            (after scripts/train-science.sh configs/science/photo64.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${MERGEVQ:-target/release/mergevq}"
out="${OUT:-docs/results/photo}"
w=runs/photo64/tokenizer_ema.safetensors
RAYON_NUM_THREADS="${THREADS:-2}" "$bin" eval-recon --tokenizer "$w" --config configs/science/photo64.toml \
  --data data/photos/heldout64 --num 336 --keep 64,49,36,25,16 --no-fid --label "64² tiles" -o "$out/heldout64"
RAYON_NUM_THREADS="${THREADS:-2}" "$bin" eval-recon --tokenizer "$w" --config configs/science/photo64_at256.toml \
  --data data/photos/heldout256 --num 3 --keep 1024,576,256,169 --no-fid --label "256² crops" -o "$out/heldout256"
