#!/usr/bin/env bash
# The CPU comparison: ours and the authors' PyTorch code alternately, piece by piece, at each
# thread count, so that both sides see the same machine state; then the ratio tables.
#   bash bench/side-by-side.sh                    # tokenizer, training step and ToMe; 1 and all threads
#   PIECES="tome_merge.b8" THREADS=2 RUNS=9 bash bench/side-by-side.sh
# Writes $OUT/{mergevq,reference}-cpu-t{N}.json (set the reference up once with
# bench/setup-reference.sh; see bench/README.md). Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
REF="${REF:-/work/ref/MergeVQ}"
VENV="${VENV:-/work/venv-ref}"
OUT="${OUT:-bench/results}"
RUNS="${RUNS:-5}"
THREADS="${THREADS:-1 $(nproc)}"
BIN="${BIN:-target/release/mergevq}"
# name prefix (the reference's --only) → our `mergevq bench` arguments
declare -A OURS=(
  [tokenizer.GR_d64.b1]="tokenizer --config configs/mergevq_256_GR_d64.toml --batch 1"
  [tokenizer.GR_d64.b8]="tokenizer --config configs/mergevq_256_GR_d64.toml --batch 8"
  [tokenizer.G_d64.b1]="tokenizer --config configs/mergevq_256_G_d64.toml --batch 1"
  [tokenizer.G_d64.b8]="tokenizer --config configs/mergevq_256_G_d64.toml --batch 8"
  [train_step.tiny.b8]="train --config configs/train_fmnist_tiny.toml --batch 8"
  [train_step.GR_d64.b2]="train --config configs/train_fmnist_tiny.toml --tokenizer configs/mergevq_256_GR_d64.toml --batch 2"
  [tome_merge.b8]="tome"
)
PIECES="${PIECES:-tome_merge.b8 train_step.tiny.b8 tokenizer.GR_d64.b1 tokenizer.G_d64.b1 tokenizer.GR_d64.b8 tokenizer.G_d64.b8 train_step.GR_d64.b2}"
[ -x "$BIN" ] || cargo build --release
mkdir -p "$OUT"
tmp="$(mktemp -d)"
for t in $THREADS; do
  for p in $PIECES; do
    [ -n "${OURS[$p]:-}" ] || { echo "unknown piece $p (known: ${!OURS[*]})" >&2; exit 2; }
    # shellcheck disable=SC2086
    RAYON_NUM_THREADS="$t" "$BIN" bench ${OURS[$p]} --runs "$RUNS" --json "$tmp/ours-$t-$p.json"
    "$VENV/bin/python" bench/reference.py --ref "$REF" --threads "$t" --runs "$RUNS" --only "$p" \
      --json "$tmp/ref-$t-$p.json"
  done
  for side in ours ref; do
    name=$([ "$side" = ours ] && echo mergevq || echo reference)
    python3 - "$OUT/$name-cpu-t$t.json" "$tmp"/$side-"$t"-*.json <<'PY'
import json, sys
docs = [json.load(open(p)) for p in sys.argv[2:]]
merged = {k: v for k, v in docs[0].items() if k != "results"}
merged["results"] = [r for d in docs for r in d["results"]]
json.dump(merged, open(sys.argv[1], "w"), indent=1)
PY
  done
  echo "## $t thread(s)"
  python3 bench/compare.py "$OUT/mergevq-cpu-t$t.json" "$OUT/reference-cpu-t$t.json" --markdown
done
rm -rf "$tmp"
