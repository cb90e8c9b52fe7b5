from typing import Any, Callable, Optional, Sequence, Tuple, Union
from os import PathLike

import numpy as np
import numpy.typing as npt

from . import metrics as metrics

__version__: str

ArrayLike = Any  # numpy array, or anything with __dlpack__ / __array__ (torch CPU tensors)
Path = Union[str, PathLike]

def set_threads(n: int) -> None:
    """Sets the CPU threads every later call computes with (0: one per core)."""

def get_threads() -> int:
    """The CPU threads calls compute with now."""

def to_uint8(images: ArrayLike) -> npt.NDArray[np.uint8]:
    """Float [B, 3, H, W] in [-1, 1] → uint8 [B, H, W, 3], rounded as the CLI's PNGs."""

class Tokenizer:
    resolution: int
    L: int
    bits: int
    keep: int
    @classmethod
    def load(
        cls, config: Path, weights: Path, ema: bool = False, device: str = "cpu", precision: str = "f32"
    ) -> "Tokenizer":
        """Our TOML or an official YAML; our safetensors or an official Lightning .ckpt."""
    def reachable(self) -> list[int]:
        """The kept counts K the merge schedule can reach."""
    def encode(
        self, images: ArrayLike, keep: Optional[int] = None, batch: int = 32
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
        """Images → (indices int64 [B, K], groups int32 [B, L])."""
    def decode(self, indices: ArrayLike, groups: ArrayLike, batch: int = 32) -> npt.NDArray[np.float32]:
        """(indices [B, K], groups [B, L]) → float32 images [B, 3, R, R]."""
    def decode_codes(self, codes: ArrayLike, batch: int = 32) -> npt.NDArray[np.float32]:
        """Full rasters of codes [B, L] → float32 images [B, 3, R, R]."""
    def reconstruct(self, images: ArrayLike, keep: Optional[int] = None, batch: int = 32) -> npt.NDArray[np.float32]:
        """Encode + decode → float32 images [B, 3, R, R]."""

class Generator:
    tokenizer: Tokenizer
    classes: int
    candidates: list[int]
    window: int
    @classmethod
    def load(cls, config: Path, weights: Path, tokenizer: Tokenizer) -> "Generator":
        """A train-ar config or a generator config with `candidates`, and its weights."""
    def generate(
        self,
        classes: Sequence[int],
        keep: Optional[int] = None,
        cfg: float = 1.0,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        mergear: Optional[bool] = None,
        window: Optional[int] = None,
        batch: Optional[int] = None,
        seed: int = 0,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
        """One image per class → (codes int64 [B, L], identity groups int32 [B, L])."""

def extract_tokens(
    tokenizer: Tokenizer,
    data: Path,
    output: Path,
    keep: Optional[int] = None,
    limit: Optional[int] = None,
    seed: int = 0,
    shard_size: int = 10_000,
    batch: int = 32,
    progress: Union[bool, Callable[[int], None]] = True,
) -> dict[str, Any]:
    """A data set → a token set file (*.safetensors) or a resumable folder of shards."""
