#!/usr/bin/env python3
"""LPIPS (VGG16) weights of random values, in the layout `loss.lpips_weights` takes, for timing a
training step where the real weights are absent (the GPU machine): the reference's training-step
benchmark builds its LPIPS with random VGG16 weights too. Numpy only.

    python3 bench/random_lpips.py OUT.safetensors
"""
import json
import struct
import sys

import numpy as np

# VGG16's convolutions up to conv5_3 as LPIPS slices them: (layer index, in, out).
CONVS = [(1, 0, 3, 64), (1, 2, 64, 64), (2, 5, 64, 128), (2, 7, 128, 128), (3, 10, 128, 256),
         (3, 12, 256, 256), (3, 14, 256, 256), (4, 17, 256, 512), (4, 19, 512, 512), (4, 21, 512, 512),
         (5, 24, 512, 512), (5, 26, 512, 512), (5, 28, 512, 512)]


def tensors(rng):
    out = {}
    for s, i, cin, cout in CONVS:
        out[f"net.slice{s}.{i}.weight"] = rng.normal(0, (2 / (9 * cin)) ** 0.5, (cout, cin, 3, 3))
        out[f"net.slice{s}.{i}.bias"] = np.zeros(cout)
    for k, c in enumerate([64, 128, 256, 512, 512]):
        out[f"lin{k}.model.1.weight"] = rng.uniform(0, 0.1, (1, c, 1, 1))
    out["scaling_layer.shift"] = np.array([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    out["scaling_layer.scale"] = np.array([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)
    return {k: v.astype("<f4") for k, v in out.items()}


def save(path, ts):
    head, off = {}, 0
    for k, v in ts.items():
        head[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + v.nbytes]}
        off += v.nbytes
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for v in ts.values():
            f.write(v.tobytes())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: random_lpips.py OUT.safetensors")
    save(sys.argv[1], tensors(np.random.default_rng(0)))
