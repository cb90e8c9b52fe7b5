#!/usr/bin/env bash
# Issue-17 part 4: linear probing of the [CLS] features and the mean-pooled merged tokens of the
# encoder trained with label alignment (configs/science/probe_align.toml) and without it
# (probe_noalign.toml), of the same architecture at its random initialisation, and of the 4000-step
# fmnist_mergevq_map (aligned; the bundled tokenizer), on Fashion-MNIST
# (probe on NUM_TRAIN training images, top-1 on NUM_VAL test images). Logs go to OUT, feature caches to runs/.
#   scripts/train-science.sh configs/science/probe_align.toml configs/science/probe_noalign.toml
#   scripts/eval-probe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${MERGEVQ:-target/release/mergevq}"
out="${OUT:-docs/results/probe}"
mkdir -p "$out"
cfg=configs/science/probe_align.toml
[ -f runs/probe_init.safetensors ] || "$bin" init --config "$cfg" --seed 17 -o runs/probe_init.safetensors
for model in align:runs/probe_align/tokenizer_ema.safetensors:$cfg \
  noalign:runs/probe_noalign/tokenizer_ema.safetensors:$cfg init:runs/probe_init.safetensors:$cfg \
  map4000:runs/fmnist_mergevq_map/tokenizer_ema.safetensors:configs/science/fmnist_mergevq_map.toml; do
  IFS=: read -r name weights config <<<"$model"
  RAYON_NUM_THREADS="${THREADS:-2}" "$bin" probe --tokenizer "$weights" --config "$config" \
    --train fashion-mnist:train --val fashion-mnist:test --num-train "${NUM_TRAIN:-10000}" --num-val "${NUM_VAL:-10000}" \
    --cache "runs/probe_features-$name.safetensors" 2>&1 | tee "$out/$name.txt"
done
