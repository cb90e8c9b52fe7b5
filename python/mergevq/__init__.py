"""MergeVQ in Python: a Rust core (burn) for numpy and PyTorch pipelines.

    import mergevq
    tok = mergevq.Tokenizer.load("assets/demo/tokenizer.toml", "assets/demo/tokenizer.safetensors")
    indices, groups = tok.encode(images_uint8_bhw3, keep=16)   # int64 [B, K], int32 [B, L]
    images = tok.decode(indices, groups)                        # float32 [B, 3, R, R] in ~[-1, 1]

Images are uint8 ``[B, H, W, 3]`` (greyscale ``[B, H, W]`` / ``[B, H, W, 1]``) or float
``[B, 3, H, W]`` (greyscale ``[B, 1, H, W]``) in [-1, 1]: numpy arrays, or anything with
``__dlpack__`` or ``__array__`` (torch CPU tensors). Images of another size than the model's
R×R go through the config's ``preprocess`` exactly as image files in the CLI (``"pad"``: centred
on black when no larger than R, else resized; ``"resize"``: shorter side to R, centre crop);
float images of another size are first rounded to 8 bits. Every call releases the GIL, so
threads run in parallel; errors are ``ValueError`` or ``FileNotFoundError`` with the CLI's
one-line messages.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from . import _mergevq, metrics
from ._arrays import as_numpy, from_wire, int_matrix, to_wire

__all__ = ["Tokenizer", "Generator", "extract_tokens", "set_threads", "get_threads", "to_uint8", "metrics"]
__version__ = _mergevq.__version__

set_threads = _mergevq.set_threads
get_threads = _mergevq.get_threads


def to_uint8(images) -> np.ndarray:
    """Float images ``[B, 3, H, W]`` in [-1, 1] → uint8 ``[B, H, W, 3]``, rounded and clamped
    exactly as the CLI writes its 8-bit PNGs: ``round((x + 1) · 127.5)`` in float32, halves
    rounded away from zero (Rust's ``f32::round``, not numpy's half-to-even), clipped to 0..255,
    NaN → 0."""
    x = np.asarray(as_numpy(images), dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"to_uint8 takes float images [B, 3, H, W], got shape {list(x.shape)}")
    y = (x + np.float32(1.0)) * np.float32(127.5)
    fl = np.floor(y)
    y = np.where(y - fl >= np.float32(0.5), fl + np.float32(1.0), fl)  # y - floor(y) is exact
    u = np.clip(np.nan_to_num(y, nan=0.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(u.transpose(0, 2, 3, 1))


def _batches(images, batch: int):
    """``images`` in slices of ``batch`` along the first axis (Ctrl-C is seen between them)."""
    a = as_numpy(images)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if a.ndim == 0 or a.shape[0] <= batch:
        yield a
        return
    for i in range(0, a.shape[0], batch):
        yield a[i : i + batch]


class Tokenizer:
    """A MergeVQ tokenizer: images ↔ K kept LFQ codes plus a group map over the L grid tokens."""

    def __init__(self, core):
        self._core = core
        self.resolution, self.L, self.bits, self.keep = core.info()

    @classmethod
    def load(cls, config, weights, ema: bool = False, device: str = "cpu", precision: str = "f32") -> "Tokenizer":
        """Loads a tokenizer: ``config`` is our TOML or an official YAML, ``weights`` our
        safetensors or an official Lightning ``.ckpt`` (``ema=True`` takes its EMA weights).
        ``device`` is "cpu", "cuda", "cuda:N" or "vulkan" (GPUs in a wheel built with that
        feature); ``precision`` "f32", "tf32" (GPUs) or "bf16", fixed per device and process."""
        return cls(_mergevq.Tokenizer.load(str(config), str(weights), ema, device, precision))

    def reachable(self) -> list:
        """The kept counts K this tokenizer's merge schedule can reach."""
        return list(self._core.reachable())

    def encode(self, images, keep: Optional[int] = None, batch: int = 32) -> Tuple[np.ndarray, np.ndarray]:
        """Encodes images → ``(indices int64 [B, K], groups int32 [B, L])``; ``groups[b, p]`` is
        the kept token (0..K) that grid position p merged into. ``keep`` defaults to the config's
        K. Images go ``batch`` at a time (results do not depend on it)."""
        idx, grp = [], []
        for part in _batches(images, batch):
            i, g, b, k, l = self._core.encode(*to_wire(part), keep)
            idx.append(from_wire(i, np.int64, (b, k)))
            grp.append(from_wire(g, np.int32, (b, l)))
        return np.concatenate(idx), np.concatenate(grp)

    def decode(self, indices, groups, batch: int = 32) -> np.ndarray:
        """Decodes ``indices [B, K]`` with ``groups [B, L]`` → float32 images ``[B, 3, R, R]``
        (about [-1, 1]; ``to_uint8`` rounds them as the CLI does). Images are decoded one at a
        time, as by the CLI, so the result is bit-identical to ``mergevq decode`` whatever ``batch``."""
        i = int_matrix(indices, "indices", "[B, K]")
        g = int_matrix(groups, "groups", "[B, L]")
        if i.shape[0] != g.shape[0]:
            raise ValueError(f"indices hold {i.shape[0]} images but groups {g.shape[0]}")
        out = []
        r = self.resolution
        for s in range(0, max(i.shape[0], 1), batch):
            ii, gg = i[s : s + batch], g[s : s + batch]
            buf = self._core.decode(ii.tobytes(), gg.tobytes(), ii.shape[0], ii.shape[1], gg.shape[1])
            out.append(from_wire(buf, np.float32, (ii.shape[0], 3, r, r)))
        return np.concatenate(out)

    def decode_codes(self, codes, batch: int = 32) -> np.ndarray:
        """Decodes full rasters of codes ``[B, L]`` (what ``Generator.generate`` returns) →
        float32 images ``[B, 3, R, R]``, as ``mergevq generate`` does."""
        c = int_matrix(codes, "codes", "[B, L]")
        if c.shape[1] != self.L:
            raise ValueError(f"codes have L={c.shape[1]} tokens per image, the tokenizer makes L={self.L}")
        r = self.resolution
        out = [from_wire(self._core.decode_codes(c[s : s + batch].tobytes()), np.float32, (-1, 3, r, r))
               for s in range(0, c.shape[0], batch)]
        if not out:
            raise ValueError("no codes: pass at least one image's [L] codes")
        return np.concatenate(out)

    def reconstruct(self, images, keep: Optional[int] = None, batch: int = 32) -> np.ndarray:
        """Encodes and decodes (as ``mergevq reconstruct``) → float32 images ``[B, 3, R, R]``."""
        r = self.resolution
        out = [from_wire(self._core.reconstruct(*to_wire(part), keep), np.float32, (-1, 3, r, r))
               for part in _batches(images, batch)]
        return np.concatenate(out)


class Generator:
    """A class-conditional generator (plain AR or MergeAR) for a tokenizer's codes."""

    def __init__(self, core, tokenizer: Tokenizer):
        self._core = core
        self.tokenizer = tokenizer
        self.classes, self.candidates, self.window = core.info()

    @classmethod
    def load(cls, config, weights, tokenizer: Tokenizer) -> "Generator":
        """Loads a generator: ``config`` is a train-ar config or a generator config with
        ``candidates`` (assets/demo/gpt.toml); ``weights`` its safetensors."""
        return cls(_mergevq.Generator.load(str(config), str(weights), tokenizer._core), tokenizer)

    def generate(self, classes: Sequence[int], keep: Optional[int] = None, cfg: float = 1.0,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 mergear: Optional[bool] = None, window: Optional[int] = None,
                 batch: Optional[int] = None, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """Samples one image per entry of ``classes`` → ``(indices int64 [B, L], groups int32
        [B, L])``: full rasters of codes (every grid position carries its code) and the identity
        group map, so ``tokenizer.decode_codes(indices)`` gives the images. ``mergear`` (default:
        on for MergeAR models) decodes with KV-cache eviction over ``window``; ``keep`` is the
        merge instruction K. One generator seeded with ``seed`` draws the images in order, as
        ``mergevq generate --seed``."""
        cls_list = [int(c) for c in np.atleast_1d(as_numpy(classes)).tolist()]
        buf = self._core.generate(cls_list, keep, cfg, temperature, top_k, top_p, mergear, window, batch, seed)
        l = self.tokenizer.L
        codes = from_wire(buf, np.int64, (len(cls_list), l))
        groups = np.tile(np.arange(l, dtype=np.int32), (len(cls_list), 1))
        return codes, groups


def extract_tokens(tokenizer: Tokenizer, data, output, keep: Optional[int] = None,
                   limit: Optional[int] = None, seed: int = 0, shard_size: int = 10_000, batch: int = 32,
                   progress: bool | Callable[[int], None] = True) -> dict:
    """Tokenizes a data set for AR training, as ``mergevq extract-tokens``: ``data`` is an image
    folder (class sub-folders, or flat) or ``"fashion-mnist[:train|test]"``; ``output`` a token
    set file (``*.safetensors``) or a folder of shards of ``shard_size`` images, which a killed or
    interrupted (Ctrl-C) run resumes. ``progress``: a bar on stderr (True), none (False) or a
    callable given the number of images done since its last call. Returns a report dict."""
    cb = progress if callable(progress) else (_Bar(limit) if progress else None)
    report = _mergevq.extract_tokens(tokenizer._core, str(data), str(output), keep, limit, seed,
                                     shard_size, batch, cb)
    if isinstance(cb, _Bar):
        cb.close()
    return report


class _Bar:
    """A minimal progress line on stderr."""

    def __init__(self, total):
        self.done, self.total = 0, total

    def __call__(self, n: int):
        import sys

        self.done += n
        total = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\rextract-tokens {self.done}{total} images")
        sys.stderr.flush()

    def close(self):
        import sys

        sys.stderr.write("\n")
