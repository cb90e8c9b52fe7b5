from typing import Any, Optional

def psnr(a: Any, b: Any) -> float:
    """Mean PSNR (dB, 8-bit scale) over image pairs."""

def ssim(a: Any, b: Any) -> float:
    """Mean SSIM over image pairs."""

def lpips(a: Any, b: Any, weights: Optional[str] = None) -> float:
    """Mean LPIPS (VGG16) over image pairs."""

def fid(a: Any, b: Any, weights: Optional[str] = None) -> float:
    """FID between two image sets."""
