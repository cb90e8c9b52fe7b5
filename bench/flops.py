"""FLOPs of the authors' tokenizer (encode + decode, batch 1) per operator, and the GEMM rate
this CPU sustains, so that a speed ratio can be read against what the hardware allows.

  /work/venv-ref/bin/python bench/flops.py --threads 2 --json bench/results/flops-cpu-t2.json

Counts come from torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add; element-wise
ops, norms and softmax are not counted). The GEMM rate is the median of torch.mm on square f32
matrices, the best case for oneDNN/MKL on this machine."""
import argparse
import json
import os
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(__file__))
from reference import TOKENIZER_CONFIGS, build_official_tokenizer, setup_reference  # noqa: E402


def gemm_rate(n, runs=7):
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / sorted(ts)[len(ts) // 2] / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="/work/ref/MergeVQ")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ref = setup_reference(args.ref)
    torch.set_num_threads(args.threads)
    doc = {"threads": args.threads, "gemm_gflops": {str(n): round(gemm_rate(n), 1) for n in (512, 1024, 2048)},
           "tokenizer_b1": {}}
    for tag, cfg in TOKENIZER_CONFIGS.items():
        model, _ = build_official_tokenizer(ref, cfg, "cpu")
        x = torch.rand(1, 3, 256, 256) * 2 - 1
        parts = {}
        with torch.no_grad():
            for part, fn in (("encode", lambda: model.encode(x)), ("encode_decode", lambda: model(x))):
                with FlopCounterMode(display=False) as fc:
                    fn()
                ops = {str(k): v / 1e9 for k, v in fc.get_flop_counts()["Global"].items()}
                parts[part] = {"gflop": round(sum(ops.values()), 3), "by_op": {k: round(v, 3) for k, v in ops.items()}}
        doc["tokenizer_b1"][tag] = parts
        print(tag, json.dumps(parts))
    print("gemm GFLOP/s", doc["gemm_gflops"])
    if args.json:
        json.dump(doc, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
