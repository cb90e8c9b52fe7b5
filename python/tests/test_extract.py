"""extract_tokens (and `mergevq extract-tokens`) into shards: the same tokens as the CLI,
resumed after a kill or a Ctrl-C with the same result."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CONFIG, DEMO, WEIGHTS, cli, read_safetensors
from PIL import Image

import mergevq

DATA = DEMO / "images"


def shards(folder):
    return {p.name: read_safetensors(p) for p in sorted(folder.glob("shard-*.safetensors"))}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        for t in a[name]:
            np.testing.assert_array_equal(a[name][t], b[name][t])


def test_python_equals_cli(tok, tmp_path):
    cli("extract-tokens", "--tokenizer", WEIGHTS, "--config", CONFIG, "--data", DATA, "--shard-size", 3,
        "--batch", 2, "-o", tmp_path / "cli")
    r = mergevq.extract_tokens(tok, DATA, tmp_path / "py", shard_size=3, batch=2, progress=False)
    assert (r["images"], r["shards"], r["reused"]) == (8, 3, 0)
    assert_same(shards(tmp_path / "py"), shards(tmp_path / "cli"))
    one = tmp_path / "one.safetensors"
    mergevq.extract_tokens(tok, DATA, one, progress=False)
    assert read_safetensors(one)["codes"].shape == (8, 64)


def test_resume_after_kill(tok, tmp_path):
    full = tmp_path / "full"
    mergevq.extract_tokens(tok, DATA, full, shard_size=3, progress=False)
    part = tmp_path / "part"
    shutil.copytree(full, part)
    (part / "shard-00001.safetensors").unlink()  # killed before writing shard 1
    r = mergevq.extract_tokens(tok, DATA, part, shard_size=3, progress=False)
    assert (r["reused"], r["images"]) == (2, 8)
    assert_same(shards(part), shards(full))


def test_ctrl_c_between_batches_then_resume(tok, tmp_path):
    out = tmp_path / "t"
    seen = []

    def interrupt(n):
        seen.append(n)
        if sum(seen) >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mergevq.extract_tokens(tok, DATA, out, shard_size=2, batch=1, progress=interrupt)
    assert 1 <= len(list(out.glob("shard-*"))) < 4
    r = mergevq.extract_tokens(tok, DATA, out, shard_size=2, batch=1, progress=False)
    assert r["reused"] >= 1
    mergevq.extract_tokens(tok, DATA, tmp_path / "ref", shard_size=2, batch=1, progress=False)
    assert_same(shards(out), shards(tmp_path / "ref"))


def test_other_options_refused(tok, tmp_path):
    mergevq.extract_tokens(tok, DATA, tmp_path / "t", shard_size=3, progress=False)
    with pytest.raises(ValueError, match="another extraction"):
        mergevq.extract_tokens(tok, DATA, tmp_path / "t", shard_size=4, progress=False)


def test_missing_data(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mergevq.extract_tokens(tok, tmp_path / "none", tmp_path / "t", progress=False)


# A child process that extracts tokens until a real SIGINT arrives (Ctrl-C): the library checks
# for it between batches, on the calling thread or, with set_threads, while a pool computes.
CHILD = """
import os, sys, mergevq
os.nice(19)  # the parent that watches for the first shard must not wait behind it on a busy machine
data, out, threads, config, weights = sys.argv[1:]
if int(threads):
    mergevq.set_threads(int(threads))
tok = mergevq.Tokenizer.load(config, weights)
try:
    mergevq.extract_tokens(tok, data, out, shard_size=10, batch=1, progress=False)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(3)
print("finished")
"""


@pytest.mark.parametrize("threads", [0, 2])
def test_sigint_between_batches_then_resume(tok, tmp_path, threads):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(600):
        Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(data / f"{i:04}.png")
    out = tmp_path / "t"
    args = [sys.executable, "-c", CHILD, data, out, threads, CONFIG, WEIGHTS]
    p = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("shard-*.safetensors")):
        assert p.poll() is None, p.communicate()
        assert time.time() < deadline
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 3 and "interrupted" in stdout, stderr
    done = len(list(out.glob("shard-*.safetensors")))
    assert 1 <= done < 60
    r = mergevq.extract_tokens(tok, data, out, shard_size=10, batch=1, progress=False)
    assert (r["images"], r["shards"], r["reused"]) == (600, 60, done)
    mergevq.extract_tokens(tok, data, tmp_path / "ref", shard_size=10, batch=1, progress=False)
    assert_same(shards(out), shards(tmp_path / "ref"))
