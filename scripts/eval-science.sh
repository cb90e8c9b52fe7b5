#!/usr/bin/env bash
# Issue-17 evaluation of the equal-token study on the Fashion-MNIST test split: PSNR, SSIM, LPIPS and
# codebook usage on all NUM images, rFID on the first FID_NUM (InceptionV3 on every 299² image is the
# slow part on a CPU; FID_NUM=0 skips it), MergeVQ at K = 64, 36, 16 with the source map and with the
# learned source recovery, MergeVQ trained without the recovery, the L = 16 and L = 64 grids; the last report draws all four on one
# rate–distortion curve. Reports and plots go to OUT (default docs/results/fmnist).
#   scripts/eval-science.sh            (after scripts/train-science.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${MERGEVQ:-target/release/mergevq}"
num="${NUM:-10000}"
fid="${FID_NUM:-1000}"
out="${OUT:-docs/results/fmnist}"
ev() {
  local run=$1 dir=$2
  shift 2
  local f=(--fid-num "$fid")
  [ "$fid" = 0 ] && f=(--no-fid)
  RAYON_NUM_THREADS="${THREADS:-2}" "$bin" eval-recon --tokenizer "runs/$run/tokenizer_ema.safetensors" \
    --config "configs/science/$run.toml" --data fashion-mnist:test --num "$num" "${f[@]}" -o "$out/$dir" "$@"
}
ev fmnist_grid16 grid16 --label "grid 4x4"
ev fmnist_grid64 grid64 --label "grid 8x8"
ev fmnist_mergevq_map mergevq_map --keep 64,36,16 --label "MergeVQ without recovery training"
ev fmnist_mergevq mergevq_learned --keep 64,36,16 --unmerge learned --label "MergeVQ, learned recovery"
ev fmnist_mergevq mergevq_source --keep 64,36,16 --unmerge source --label "MergeVQ, source map" \
  --compare "MergeVQ, learned recovery=$out/mergevq_learned/report.json" \
  --compare "MergeVQ without recovery training=$out/mergevq_map/report.json" \
  --compare "grid 4x4=$out/grid16/report.json" --compare "grid 8x8=$out/grid64/report.json"
