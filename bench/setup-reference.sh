#!/usr/bin/env bash
# Set up the PyTorch side of the speed benchmark: the authors' MergeVQ code
# (ApexGen-X/MergeVQ, read-only, outside this repo) plus a venv that can import
# the parts bench/reference.py uses.
#
#   bash bench/setup-reference.sh [REF_DIR] [VENV_DIR]
#   (or REF=... VENV=... bash bench/setup-reference.sh)
#
# REF_DIR  defaults to /work/ref/MergeVQ   (must already hold a checkout/export of
#          github.com/ApexGen-X/MergeVQ; this script only checks it)
# VENV_DIR defaults to /work/venv-ref
set -euo pipefail
REF="${1:-${REF:-/work/ref/MergeVQ}}"
VENV="${2:-${VENV:-/work/venv-ref}}"
PY="${PYTHON:-python3}"   # tested with CPython 3.11.7

if [ ! -f "$REF/taming/models/lfqgan_rep.py" ]; then
  echo "no MergeVQ checkout at $REF (expected taming/models/lfqgan_rep.py)" >&2
  echo "e.g.: git clone https://github.com/ApexGen-X/MergeVQ $REF" >&2
  exit 1
fi

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# The reference's requirements.txt pins torch 2.4.0 (+cu124), torchvision 0.19.0,
# timm 0.9.11, lightning 2.2.0, transformers 4.37.2. The plain PyPI Linux wheel of
# torch 2.4.0 is the CUDA 12.1 build (pulls nvidia-* wheels, ~2.5 GB); it runs on CPU too.
# Only what importing the benchmarked modules needs is installed (no data/eval/logging deps):
#   torch, torchvision (LPIPS' VGG16), timm (ToMe blocks), einops (LFQ, AdaGN),
#   lightning (LightningModule base of MergeVQModel), transformers (imported by
#   lfqgan_rep for the DINOv2 teacher, unused here), requests+tqdm (taming/util.py),
#   pyyaml (reading the official config YAMLs), numpy (<2 for torch 2.4).
"$VENV/bin/python" -m pip install \
  torch==2.4.0 torchvision==0.19.0 \
  timm==0.9.11 einops lightning==2.2.0 transformers==4.37.2 \
  requests tqdm pyyaml "numpy<2"

"$VENV/bin/python" - "$REF" <<'PY'
import sys, torch, timm, torchvision
sys.path.insert(0, sys.argv[1])
print("torch", torch.__version__, "cuda build", torch.version.cuda, "timm", timm.__version__,
      "torchvision", torchvision.__version__)
import taming.modules.diffusionmodules.model_mergevq, taming.modules.vqvae.lookup_free_quantize
import taming.modules.transformer.gpt, taming.modules.losses.vqperceptual
print("reference modules import OK")
PY
echo "run: $VENV/bin/python bench/reference.py --ref $REF --json bench/results/reference-cpu.json"
