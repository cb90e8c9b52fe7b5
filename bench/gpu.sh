#!/usr/bin/env bash
# On an NVIDIA machine with its own PyTorch: the golden cases on --device cuda first, then our
# suite and the reference's side by side, and the ratio table; under 6 minutes in all.
# Prepare here (x86-64; the whole work tree travels, 64 MiB at most):
#   bin=$(scripts/build-gpu.sh) && mkdir -p .gpu && strip -o .gpu/mergevq "$bin" && xz -f .gpu/mergevq
#   pip download --no-deps -d .gpu/wheels nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
#   mkdir -p .gpu/golden && cp -r ../shared/golden/{tome_merge,lfq,encoder,decoder,gpt} .gpu/golden/
#   cp -r /path/to/MergeVQ .gpu/ref        # the reference checkout (without its images)
# Run there from the repo root: bash bench/gpu.sh; results land in $OUT/gpu-results.tgz.
# NVRTC and the CUDA headers come from the wheels PyTorch (cu13) installed, completed by the
# crt and cccl wheels above; the binary's PTX needs a driver of CUDA >= 13.0.
set -u
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"; R=/tmp/res; mkdir -p "$R" "$OUT"
trap 'tar czf "$OUT/gpu-results.tgz" -C "$R" .' EXIT
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
xz -dc .gpu/mergevq.xz > /tmp/mergevq && chmod +x /tmp/mergevq
# CUDA_PATH: torch's nvidia/cu13 tree plus the crt and cccl headers.
nv="$(python3 -c 'import torch, pathlib; print(pathlib.Path(torch.__file__).parents[1] / "nvidia" / "cu13")')"
C=/tmp/cuda; mkdir -p "$C/include" "$C/lib"
cp -rs "$nv/include/." "$C/include/" 2>/dev/null; cp -rs "$nv/lib/." "$C/lib/" 2>/dev/null
for w in .gpu/wheels/*.whl; do python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$w" /tmp/wh; done
[ -d /tmp/wh/nvidia/cu13/include ] && cp -r /tmp/wh/nvidia/cu13/include/. "$C/include/"
export CUDA_PATH="$C" LD_LIBRARY_PATH="$C/lib:${LD_LIBRARY_PATH:-}"
M="/tmp/mergevq --device cuda"
run() { local t=$1 name=$2; shift 2; local s=$SECONDS; timeout "$t" "$@" > "$R/$name.log" 2>&1; echo "$name rc=$? $((SECONDS - s))s"; tail -4 "$R/$name.log"; }
# Correctness before speed: golden cases (ToMe, LFQ, encoder, decoder, GPT) on the GPU.
run 90 parity $M parity .gpu/golden
run 45 gr8 $M bench tokenizer --config configs/mergevq_256_GR_d64.toml --batch 8 --json "$R/gr8.json"
run 45 gr32 $M bench tokenizer --config configs/mergevq_256_GR_d64.toml --batch 32 --json "$R/gr32.json"
run 40 g8 $M bench tokenizer --config configs/mergevq_256_G_d64.toml --batch 8 --json "$R/g8.json"
run 40 g32 $M bench tokenizer --config configs/mergevq_256_G_d64.toml --batch 32 --json "$R/g32.json"
run 45 train $M bench train --config configs/train_fmnist_tiny.toml --tokenizer configs/mergevq_256_GR_d64.toml --batch 8 --runs 3 --json "$R/train.json"
run 45 ar $M bench ar --batch 16 --cfg 1.5 --lengths 256,1024 --runs 2 --json "$R/ar.json"
run 150 ref python3 bench/reference.py --ref .gpu/ref --device cuda --runs 5 --only tokenizer,train_step.GR,ar \
  --tok-batches 8,32 --train-batch 8 --ar-batch 16 --ar-cfg 1.5 --json "$R/reference-cuda.json"
python3 - "$R" <<'PY'
import json, pathlib, sys
r = pathlib.Path(sys.argv[1]); out = {"impl": "mergevq", "device": "cuda", "results": []}
for f in sorted(r.glob("*.json")):
    if f.name != "reference-cuda.json":
        out["results"] += json.loads(f.read_text()).get("results", [])
(r / "mergevq-cuda.json").write_text(json.dumps(out, indent=1))
PY
python3 bench/compare.py "$R/mergevq-cuda.json" "$R/reference-cuda.json" | tee "$R/ratios.txt"
