#!/usr/bin/env bash
# Issue-17 training runs (tokenizers, and AR models: configs with a [gpt] table), one after another, each resumed from its checkpoint when there is one
# and skipped once finished (its metrics.jsonl has the final validation line). Safe to kill and
# rerun at any time. `THREADS` (default 1) threads per run; `MERGEVQ` the binary.
#   scripts/train-science.sh [config ...]   (default: the equal-token study, configs/science/fmnist_*.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${MERGEVQ:-target/release/mergevq}"
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(configs/science/fmnist_mergevq.toml configs/science/fmnist_grid16.toml configs/science/fmnist_grid64.toml configs/science/fmnist_mergevq_map.toml)
for cfg in "${configs[@]}"; do
  out="$(sed -n 's/^out_dir = "\(.*\)"/\1/p' "$cfg")"
  if grep -q '"final":true' "$out/metrics.jsonl" 2>/dev/null; then
    echo "$cfg: finished ($out)"
    continue
  fi
  resume=()
  [ -f "$out/checkpoint.safetensors" ] && resume=(--resume)
  # AR configs (a [gpt] table) train the generator, the others a tokenizer.
  cmd=train-tokenizer
  grep -q '^\[gpt\]' "$cfg" && cmd=train-ar
  echo "$cfg: $cmd in $out ${resume[*]}"
  RAYON_NUM_THREADS="${THREADS:-1}" "$bin" "$cmd" --config "$cfg" "${resume[@]}"
done
