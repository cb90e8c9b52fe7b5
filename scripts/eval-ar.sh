#!/usr/bin/env bash
# Issue-17 priority 3: MergeAR vs plain AR on the study's Fashion-MNIST tokens (configs/science/ar_*.toml).
# Samples PER_CLASS images of each class from each model (CFG 1.5; MergeAR with its merge instruction at
# the tokenizer's K = 36 and cache eviction), then gFID and KID against the first REF test images
# (padded to 32² as the tokenizer sees them). Validation CE is in each run's metrics.jsonl.
#   scripts/eval-ar.sh            (after scripts/train-science.sh configs/science/ar_{plain,mergear}.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${MERGEVQ:-target/release/mergevq}"
per="${PER_CLASS:-100}"
ref="${REF:-1000}"
out="${OUT:-docs/results/ar}"
py="${PYTHON:-python3}"
work=runs/ar_eval
samples="$work/n$per"
mkdir -p "$samples" "$out"
[ -d "$work/reference-$ref" ] || "$py" scripts/fmnist_folder.py "$ref" "$work/reference-$ref"
tok=(--tokenizer runs/fmnist_mergevq/tokenizer_ema.safetensors --config configs/science/fmnist_mergevq.toml)
for m in plain mergear; do
  flags=(); [ "$m" = mergear ] && flags=(--mergear)
  for c in $(seq 0 9); do
    RAYON_NUM_THREADS="${THREADS:-2}" "$bin" generate --ar "runs/ar_$m/gpt_ema.safetensors" \
      --ar-config "configs/science/ar_$m.toml" "${tok[@]}" --class "$c" --num "$per" --cfg 1.5 --seed 17 \
      "${flags[@]}" -o "$samples/$m-class$c.png" --each "$samples/$m/$c" | tee -a "$samples/$m-generate.log"
  done
  cp "$samples/$m-class0.png" "$out/samples_${m}_class0.png"
  # The reference's Inception statistics once, then from the file.
  stats="$work/reference-$ref-stats.safetensors"
  r=(--reference "$work/reference-$ref" --save-stats "$stats")
  [ -f "$stats" ] && r=(--reference "$stats")
  RAYON_NUM_THREADS="${THREADS:-2}" "$bin" eval-gen --samples "$samples/$m" "${r[@]}" -o "$out/$m"
done
