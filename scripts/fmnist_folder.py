#!/usr/bin/env python3
"""The first N Fashion-MNIST test images as PNGs padded with black to 32² (as every tokenizer of the
study sees them), one folder per class: a reference folder for `mergevq eval-gen`.

    python3 scripts/fmnist_folder.py N OUT    (needs numpy and Pillow)
"""
import gzip
import pathlib
import sys

import numpy as np
from PIL import Image

SRC = pathlib.Path("/usr/share/datasets/fashion-mnist")


def idx(name):
    with gzip.open(SRC / name) as f:
        b = f.read()
    dims = b[3]
    shape = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * dims).reshape(shape)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: fmnist_folder.py N OUT")
    n, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
    images, labels = idx("t10k-images-idx3-ubyte.gz")[:n], idx("t10k-labels-idx1-ubyte.gz")[:n]
    for i, (img, c) in enumerate(zip(images, labels)):
        (out / str(c)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.pad(img, 2)).convert("RGB").save(out / str(c) / f"{i:05d}.png")
