"""Image metrics on arrays, computed by the same Rust code as ``mergevq eval-recon``.

Images are uint8 ``[B, H, W, 3]`` (or a single ``[H, W, 3]``) or float ``[B, 3, H, W]`` in
[-1, 1] (rounded to 8 bits first). PSNR (0–255 scale), SSIM (11×11 Gaussian, σ = 1.5) and LPIPS
are means over the image pairs; FID compares two sets (at least 2 images each).

LPIPS and FID need network weights: ``weights=`` a file, else ``$MERGEVQ_WEIGHTS/<name>``, else
``weights/<name>`` under the working directory (``lpips_vgg16.safetensors``,
``inception_fid.safetensors``), which ``scripts/fetch-weights.sh`` fetches; a missing file raises
``FileNotFoundError`` naming that script.
"""
from __future__ import annotations

from typing import Optional

from . import _mergevq
from ._arrays import as_numpy, to_wire

__all__ = ["psnr", "ssim", "lpips", "fid"]


def _images(x):
    a = as_numpy(x)
    if a.ndim == 3 and a.shape[-1] == 3 and a.dtype.name == "uint8":
        a = a[None]
    return to_wire(a)


def psnr(a, b) -> float:
    """Mean PSNR in dB over image pairs (8-bit scale)."""
    return _mergevq.psnr(_images(a), _images(b))


def ssim(a, b) -> float:
    """Mean SSIM over image pairs."""
    return _mergevq.ssim(_images(a), _images(b))


def lpips(a, b, weights: Optional[str] = None) -> float:
    """Mean LPIPS (VGG16) distance over image pairs."""
    return _mergevq.lpips(_images(a), _images(b), None if weights is None else str(weights))


def fid(a, b, weights: Optional[str] = None) -> float:
    """FID between the image sets ``a`` and ``b`` (InceptionV3 pool features)."""
    return _mergevq.fid(_images(a), _images(b), None if weights is None else str(weights))
