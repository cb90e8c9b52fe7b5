#!/usr/bin/env bash
# One command for the CPU comparison: our benchmark suite, then the authors' PyTorch code on the
# same machine with the same thread count, then the ratio table.
#   REF=/path/to/MergeVQ VENV=/path/to/venv bash bench/side-by-side.sh
# (set the reference up once with bench/setup-reference.sh; see bench/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
REF="${REF:-/work/ref/MergeVQ}"
VENV="${VENV:-/work/venv-ref}"
OUT="${OUT:-bench/results}"
RUNS="${RUNS:-5}"
mkdir -p "$OUT"
cargo build --release
threads="$(nproc)"
target/release/mergevq bench all --runs "$RUNS" --json "$OUT/mergevq-cpu.json"
"$VENV/bin/python" bench/reference.py --ref "$REF" --threads "$threads" --runs "$RUNS" --json "$OUT/reference-cpu.json"
python3 bench/compare.py "$OUT/mergevq-cpu.json" "$OUT/reference-cpu.json" --markdown
