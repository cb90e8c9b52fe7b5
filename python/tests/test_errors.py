"""Bad inputs raise ValueError or FileNotFoundError with the CLI's one-line message; nothing
panics into Python."""
import numpy as np
import pytest
from conftest import CONFIG, IMAGES, WEIGHTS, cli_error

import mergevq


def test_wrong_dtype(tok, images):
    with pytest.raises(ValueError, match="got dtype int16"):
        tok.encode(images.astype(np.int16))


def test_wrong_rank(tok, images):
    with pytest.raises(ValueError, match=r"float32 array of shape \[28, 28, 3\]"):
        tok.encode(images[0].astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        tok.encode(images[..., None])


def test_float_out_of_range(tok, images):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        tok.encode(images.transpose(0, 3, 1, 2).astype(np.float32))


def test_empty_batch(tok, images):
    with pytest.raises(ValueError, match="empty"):
        tok.encode(images[:0])


def test_unreachable_keep_same_message_as_cli(tok, images, tmp_path):
    want = cli_error("encode", "--config", CONFIG, "--weights", WEIGHTS, "--keep", 17, IMAGES[0], "-o", tmp_path / "t.safetensors")
    with pytest.raises(ValueError) as e:
        tok.encode(images, keep=17)
    assert str(e.value) == want


def test_missing_weights_same_message_as_cli(tmp_path):
    missing = tmp_path / "nope.safetensors"
    want = cli_error("encode", "--config", CONFIG, "--weights", missing, IMAGES[0], "-o", tmp_path / "t.safetensors")
    with pytest.raises(FileNotFoundError) as e:
        mergevq.Tokenizer.load(CONFIG, missing)
    assert str(e.value) == want


def test_missing_config_same_message_as_cli(tmp_path):
    missing = tmp_path / "nope.toml"
    want = cli_error("encode", "--config", missing, "--weights", WEIGHTS, IMAGES[0], "-o", tmp_path / "t.safetensors")
    with pytest.raises(FileNotFoundError) as e:
        mergevq.Tokenizer.load(missing, WEIGHTS)
    assert str(e.value) == want


def test_bad_config_is_value_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.read_text().replace("resolution = 32", "resolution = 0"))
    want = cli_error("encode", "--config", bad, "--weights", WEIGHTS, IMAGES[0], "-o", tmp_path / "t.safetensors")
    with pytest.raises(ValueError) as e:
        mergevq.Tokenizer.load(bad, WEIGHTS)
    assert str(e.value) == want


def test_device_not_built():
    with pytest.raises(ValueError, match="feature"):
        mergevq.Tokenizer.load(CONFIG, WEIGHTS, device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        mergevq.Tokenizer.load(CONFIG, WEIGHTS, device="tpu")


def test_bad_tokens(tok, images):
    idx, grp = tok.encode(images, keep=16)
    with pytest.raises(ValueError, match="outside the codebook"):
        tok.decode(idx + 5000, grp)
    with pytest.raises(ValueError, match="refers to"):
        tok.decode(idx, grp + 16)
    with pytest.raises(ValueError, match="negative"):
        tok.decode(idx, grp - 1)
    with pytest.raises(ValueError, match=r"integer \[B, K\]"):
        tok.decode(idx.astype(np.float32), grp)
    with pytest.raises(ValueError, match="not a square"):
        tok.decode(idx[:, :15], grp)


def test_precision_errors():
    with pytest.raises(ValueError, match="precision must be"):
        mergevq.Tokenizer.load(CONFIG, WEIGHTS, precision="fp8")
    with pytest.raises(ValueError, match="tf32 is for GPUs"):
        mergevq.Tokenizer.load(CONFIG, WEIGHTS, precision="tf32")
