#!/usr/bin/env python3
"""Reference values for the metric tests, computed with numpy / scipy / scikit-image
(pip install numpy scipy scikit-image==0.26.0). The inputs are regenerated in Rust from the
same formulas: features from the golden-README splitmix generator, images from a closed form.

usage: make_metric_fixtures.py > tests/data/metric_fixtures.json
"""
import json
import numpy as np
from scipy import linalg
from skimage.metrics import structural_similarity, peak_signal_noise_ratio

def splitmix(seed, n, lo, hi):
    out = np.empty(n, dtype=np.float32)
    M = (1 << 64) - 1
    for i in range(n):
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & M
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        z ^= z >> 31
        k = z >> 40
        out[i] = np.float32(lo + (hi - lo) * (k * 2.0 ** -24))
    return out

def features(seed, n, d, shift):
    f = splitmix(seed, n * d, -1.0, 1.0).reshape(n, d).astype(np.float64)
    # correlate the columns a little so the covariance is not diagonal
    f[:, 1:] += 0.5 * f[:, :-1]
    return f + shift

def fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))

def image(seed, w, h):
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    c = [((x * (3 + seed) + y * (5 + 2 * k) + 17 * k * seed) % 256) for k in range(3)]
    img = np.stack(c, -1).astype(np.uint8)
    return img

a, b = features(11, 300, 64, 0.0), features(22, 300, 64, 0.1)
i1 = image(1, 48, 40)
i2 = image(2, 48, 40)
i3 = np.clip(i1.astype(int) + ((np.arange(48 * 40 * 3).reshape(40, 48, 3) * 7919) % 21 - 10), 0, 255).astype(np.uint8)
out = {
    "fid": {"seed_a": 11, "seed_b": 22, "n": 300, "d": 64, "shift_b": 0.1, "value": fid(a, b)},
    "ssim": [
        {"a": 1, "b": 2, "value": float(structural_similarity(i1, i2, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255))},
        {"a": 1, "b": "noisy1", "value": float(structural_similarity(i1, i3, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255))},
    ],
    "psnr": {"a": 1, "b": "noisy1", "value": float(peak_signal_noise_ratio(i1, i3, data_range=255))},
}
print(json.dumps(out, indent=1))
