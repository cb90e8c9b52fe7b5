"""Array plumbing between Python objects and the Rust core: inputs (numpy arrays, anything with
``__dlpack__`` such as torch tensors, or ``__array__``) become (dtype, shape, bytes); results come
back as numpy arrays."""
from __future__ import annotations

import numpy as np


def as_numpy(x) -> np.ndarray:
    """A numpy view of ``x``: numpy arrays as they are, DLPack producers (torch, jax, cupy on
    the CPU) through ``np.from_dlpack``, anything else through ``np.asarray``."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError) as e:
            if not hasattr(x, "__array__"):
                raise ValueError(f"cannot read the array through DLPack (is it on a GPU?): {e}") from None
    return np.asarray(x)


def to_wire(x) -> tuple[str, list[int], bytes]:
    """``x`` as (numpy dtype name, shape, C-order native-endian bytes) for the Rust core; the
    core checks dtype, rank and values (``mergevq::io::array``)."""
    a = as_numpy(x)
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    return a.dtype.name, list(a.shape), np.ascontiguousarray(a).tobytes()


def int_matrix(x, what: str, shape_hint: str) -> np.ndarray:
    """``x`` as a C-order int64 matrix; anything else is a ValueError naming ``what``."""
    a = as_numpy(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} are integer {shape_hint}, got a {a.dtype} array of shape {list(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.int64)


def from_wire(buf, dtype, shape) -> np.ndarray:
    """A writable numpy array over the bytes the core returned."""
    return np.frombuffer(buf, dtype=dtype).reshape(shape)
