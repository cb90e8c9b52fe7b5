#!/usr/bin/env bash
# On an NVIDIA machine with its own PyTorch: the golden cases on --device cuda first, CPU and GPU
# tokens of the same weights compared, then our suite and the reference's side by side (f32 and
# TF32 on both sides) and the ratio tables; steps stop being started after $BUDGET_S seconds.
# Prepare here (x86-64; the whole work tree travels, 64 MiB at most):
#   bin=$(scripts/build-gpu.sh) && mkdir -p .gpu && strip -o .gpu/mergevq "$bin" && xz -f .gpu/mergevq
#   mkdir -p .gpu/golden && cp -r ../shared/golden/{tome_merge,lfq,encoder,decoder,gpt} .gpu/golden/
#   (only where the machine has no CUDA toolkit:
#    pip download --no-deps -d .gpu/wheels nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85)
#   cp -r /path/to/MergeVQ .gpu/ref        # the reference checkout (without fig/)
#   cp /work/.device/N/kernel-cache.tar.xz .gpu/   # the kernel caches an earlier run returned, if any
# Run there from the repo root: bash bench/gpu.sh; results land in $OUT/gpu-results.tgz (rewritten
# after every step, so a run cut short still returns what it measured).
# NVRTC and the CUDA headers come from the machine's toolkit (/usr/local/cuda) or else from the
# wheels PyTorch (cu13) installed, completed by the crt and cccl wheels above; the PTX NVRTC
# writes needs a driver of at least NVRTC's CUDA version.
# DEV=cpu runs the same steps on the CPU (a dry run of this script anywhere).
# Kernels compile at first use (NVRTC, then the driver's PTX JIT) and autotuning compiles every
# candidate: on a cold machine that outlasts the budget. So the kernel caches travel: cubecl's
# environment (compiled PTX, autotune decisions; target/environment) and the driver's JIT cache
# come back as $OUT/kernel-cache.tar.xz; put that file in .gpu/ for the next run. Without one,
# autotuning runs at the `minimal` level (AUTOTUNE overrides; the level is in the results).
set -u
export PYTHONUNBUFFERED=1
DEV="${DEV:-cuda}"
OUT="${OUT:-/tmp/out}"; R=/tmp/res; mkdir -p "$R" "$OUT"
END=$((SECONDS + ${BUDGET_S:-540}))
export CUDA_CACHE_PATH="$PWD/target/nv-cache" CUDA_CACHE_MAXSIZE=4294967296
if [ -f .gpu/kernel-cache.tar.xz ]; then tar xJf .gpu/kernel-cache.tar.xz; AUTOTUNE="${AUTOTUNE:-balanced}"; fi
export CUBECL_AUTOTUNE_LEVEL="${AUTOTUNE:-minimal}"
echo "autotune level $CUBECL_AUTOTUNE_LEVEL" | tee "$R/autotune-level.txt"
cat > cubecl.toml <<TOML
[compilation.logger]
level = "basic"
file = "$R/kernels-compiled.log"
TOML
save() { tar czf "$OUT/gpu-results.tgz" -C "$R" . 2>/dev/null; }
save_cache() {  # at most 16 MiB comes back: the driver's cache goes first
  for dirs in "target/environment target/nv-cache" target/environment; do
    tar c $dirs 2>/dev/null | xz -T0 -6 > "$OUT/kernel-cache.tar.xz"
    [ "$(stat -c %s "$OUT/kernel-cache.tar.xz")" -lt 16000000 ] && break
  done
  ls -l "$OUT/kernel-cache.tar.xz"
}
trap 'save; save_cache; [ "$DEV" = cuda ] || rm -f cubecl.toml' EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
xz -dc .gpu/mergevq.xz > /tmp/mergevq && chmod +x /tmp/mergevq
# run SECONDS NAME CMD...: skipped when the budget is spent; log in $R/NAME.log.
run() {
  local t=$1 name=$2; shift 2; local left=$((END - SECONDS))
  if [ "$left" -lt 20 ]; then echo "$name skipped (budget)"; return 1; fi
  [ "$t" -gt "$left" ] && t=$left
  local k0; k0=$(cat "$R/kernels-compiled.log" 2>/dev/null | wc -l)
  local s=$SECONDS; timeout "$t" "$@" > "$R/$name.log" 2>&1; local rc=$?
  local k1; k1=$(cat "$R/kernels-compiled.log" 2>/dev/null | wc -l)
  echo "$name rc=$rc $((SECONDS - s))s, $((k1 - k0)) kernel log lines"; tail -n "${TAIL:-3}" "$R/$name.log"; save; return $rc
}
{ command -v nvcc && nvcc --version | tail -2; ls -d /usr/local/cuda* 2>&1
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'
  python3 -m pip list 2>/dev/null | grep -i -E "nvidia-cuda|cuda-toolkit"; } > "$R/env.log" 2>&1
cat "$R/env.log"
# Candidate CUDA trees for NVRTC: the toolkit, then torch's nvidia/cu13 + the carried wheels.
tk=/usr/local/cuda
nv="$(python3 -c 'import torch, pathlib; print(pathlib.Path(torch.__file__).parents[1] / "nvidia" / "cu13")')"
C=/tmp/cuda; mkdir -p "$C/include" "$C/lib"
cp -rs "$nv/include/." "$C/include/" 2>/dev/null; cp -rs "$nv/lib/." "$C/lib/" 2>/dev/null
for w in .gpu/wheels/*.whl; do python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$w" /tmp/wh; done
[ -d /tmp/wh/nvidia/cu13/include ] && cp -rn /tmp/wh/nvidia/cu13/include/. "$C/include/"
base_ld="${LD_LIBRARY_PATH:-}"; ok=
[ "$DEV" = cuda ] || ok=1
[ -d "$tk" ] || tk=$C
# A tree works when the device opens and NVRTC compiles: a failing golden case is no reason to
# drop it (the full parity run below reports those).
n=0
for cand in "$tk:$tk/lib64:$tk/targets/x86_64-linux/lib" "$C:$C/lib"; do
  [ -n "$ok" ] && break
  export CUDA_PATH="${cand%%:*}" LD_LIBRARY_PATH="${cand#*:}:$base_ld"; n=$((n + 1))
  [ -f "$CUDA_PATH/include/cuda_fp16.h" ] || continue
  ls "$CUDA_PATH"/lib*/libnvrtc.so* 2>/dev/null | head -3
  TAIL=6 run 90 "probe-$n" /tmp/mergevq --device cuda parity .gpu/golden/lfq
  grep -q -i -E 'device "cuda"|nvrtc|compil|include' "$R/probe-$n.log" || ok=1
done
if [ -z "$ok" ]; then  # none clearly works: go on with the toolkit's, so the logs show what fails
  echo "no CUDA tree clearly works (see probe-*.log); going on with $tk"
  export CUDA_PATH=$tk LD_LIBRARY_PATH="$tk/lib64:$tk/targets/x86_64-linux/lib:$base_ld"
fi
echo "CUDA_PATH=${CUDA_PATH:-}"
M="/tmp/mergevq --device $DEV"
# Correctness before speed: the golden cases carried (ToMe, LFQ, encoder, decoder, GPT), then CPU vs GPU tokens of trained weights
# on real images (the bundled Fashion-MNIST tokenizer) and of G+R d64 on a photo.
TAIL=40 run 120 parity $M parity .gpu/golden
/tmp/mergevq init --config configs/mergevq_256_GR_d64.toml -o /tmp/gr.safetensors > /dev/null 2>&1
for d in cpu $DEV; do
  run 60 "tokens-$d" /tmp/mergevq --device $d encode --config assets/demo/tokenizer.toml \
    --weights assets/demo/tokenizer.safetensors assets/demo/images/*.png -o "$R/fmnist-$d.safetensors"
  run 60 "tokens-gr-$d" /tmp/mergevq --device $d encode --config configs/mergevq_256_GR_d64.toml \
    --weights /tmp/gr.safetensors assets/rocket.jpg -o "$R/gr-$d.safetensors"
done
python3 - "$R" "$DEV" <<'PY' | tee "$R/tokens-agree.txt"
import json, struct, sys, numpy as np
def idx(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])["indices"]
    lo, hi = h["data_offsets"]; return np.frombuffer(b[8 + n + lo:8 + n + hi], "<i8")
for m in ["fmnist", "gr"]:
    try:
        a, g = idx(f"{sys.argv[1]}/{m}-cpu.safetensors"), idx(f"{sys.argv[1]}/{m}-{sys.argv[2]}.safetensors")
        print(f"tokens {m}: {np.mean(a == g):.4f} of {a.size} indices equal on cpu and {sys.argv[2]}")
    except Exception as e:
        print(f"tokens {m}: {e}")
PY
# The training step's data and LPIPS (random VGG16 values, as the reference bench uses).
mkdir -p /tmp/gt/data/rocket && for i in 0 1 2 3 4 5 6 7; do cp assets/rocket.jpg "/tmp/gt/data/rocket/$i.jpg"; done
python3 bench/random_lpips.py /tmp/gt/lpips.safetensors
sed -e 's|^source = "fashion-mnist"|source = "folder"\npath = "/tmp/gt/data"\nval_path = "/tmp/gt/data"|' \
  -e 's|^lpips_weights = .*|lpips_weights = "/tmp/gt/lpips.safetensors"|' configs/train_fmnist_tiny.toml > /tmp/gt/train.toml
ours() {  # PRECISION: tokenizer G+R and G d64 at batch 8 and 32, the G+R d64 training step
  local p=$1
  for c in GR G; do for b in 8 32; do
    run 75 "$p-$c$b" $M --precision "$p" bench tokenizer --config "configs/mergevq_256_${c}_d64.toml" --batch $b \
      --runs 5 --json "$R/$p-$c$b.json"
  done; done
  run 90 "$p-train" $M --precision "$p" bench train --config /tmp/gt/train.toml \
    --tokenizer configs/mergevq_256_GR_d64.toml --batch 8 --runs 3 --json "$R/$p-train.json"
}
REF="python3 bench/reference.py --ref .gpu/ref --device cuda --runs 3 --tok-batches 8,32 --train-batch 8"
ours f32
save_cache
TAIL=30 run 170 ref-default $REF --only tokenizer,train_step.GR,ar --ar-batch 16 --ar-cfg 1.5 --json "$R/ref-default.json"
run 150 ar $M bench ar --batch 16 --cfg 1.5 --lengths 256,1024 --runs 2 --json "$R/f32-ar.json"
ours tf32
TAIL=20 run 90 ref-f32 $REF --only tokenizer,train_step.GR --cudnn-tf32 off --json "$R/ref-f32.json"
python3 - "$R" <<'PY'
import json, pathlib, sys
r = pathlib.Path(sys.argv[1])
for p in ["f32", "tf32"]:
    out = {"impl": "mergevq", "device": "cuda", "precision": p, "results": [],
           "autotune": (r / "autotune-level.txt").read_text().split()[-1]}
    for f in sorted(r.glob(f"{p}-*.json")):
        out["results"] += json.loads(f.read_text()).get("results", [])
    (r / f"mergevq-cuda-{p}.json").write_text(json.dumps(out, indent=1))
PY
for pair in "f32 ref-default" "tf32 ref-default" "f32 ref-f32"; do
  set -- $pair; echo "== ours $1 vs $2"
  [ -f "$R/$2.json" ] && python3 bench/compare.py "$R/mergevq-cuda-$1.json" "$R/$2.json" | tee "$R/ratios-$1-vs-$2.txt"
done
save
