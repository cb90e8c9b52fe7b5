"""Shared fixtures: the bundled model, its images and the CLI binary built from the same crate."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mergevq

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo"
CONFIG, WEIGHTS = DEMO / "tokenizer.toml", DEMO / "tokenizer.safetensors"
IMAGES = sorted((DEMO / "images").glob("*.png"))


def cli_binary() -> Path:
    """The `mergevq` binary: $MERGEVQ_BIN, else release/mergevq under $CARGO_TARGET_DIR or target/."""
    if os.environ.get("MERGEVQ_BIN"):
        return Path(os.environ["MERGEVQ_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "mergevq"


def cli(*args, ok=True):
    """Runs the CLI; returns the finished process (checked when `ok`)."""
    p = subprocess.run([str(cli_binary()), *map(str, args)], capture_output=True, text=True)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def cli_error(*args) -> str:
    """The CLI's one-line error message (after `error: `) for a failing command."""
    p = cli(*args, ok=False)
    assert p.returncode == 1, p.stderr
    line = [l for l in p.stderr.splitlines() if l.startswith("error: ")][-1]
    return line[len("error: "):]


def read_safetensors(path: Path) -> dict:
    """The tensors of a safetensors file as numpy arrays (int64 / float32 only)."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"I64": np.int64, "F32": np.float32}[info["dtype"]]
        lo, hi = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + lo : 8 + n + hi], dtype=dtype).reshape(info["shape"])
    return out


def load_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="session")
def tok():
    return mergevq.Tokenizer.load(CONFIG, WEIGHTS)


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """The 8 bundled test images, uint8 [8, H, W, 3]."""
    return np.stack([load_png(p) for p in IMAGES])
