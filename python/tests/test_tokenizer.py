"""The Python tokenizer against the CLI on the bundled model: same indices and groups, same 8-bit
images, any input route (numpy, DLPack, float), any batch size, any number of threads."""
import threading

import numpy as np
import pytest
from conftest import CONFIG, IMAGES, WEIGHTS, cli, load_png, read_safetensors

import mergevq


@pytest.mark.parametrize("keep", [16, 36, 64])
def test_encode_equals_cli(tok, images, tmp_path, keep):
    out = tmp_path / "t.safetensors"
    cli("encode", "--config", CONFIG, "--weights", WEIGHTS, "--keep", keep, *IMAGES, "-o", out)
    want = read_safetensors(out)
    idx, grp = tok.encode(images, keep=keep)
    assert idx.dtype == np.int64 and grp.dtype == np.int32
    assert idx.shape == (len(IMAGES), keep) and grp.shape == (len(IMAGES), tok.L)
    np.testing.assert_array_equal(idx, want["indices"])
    np.testing.assert_array_equal(grp, want["group"])


def test_decode_equals_cli_8bit(tok, images, tmp_path):
    tokens = tmp_path / "t.safetensors"
    cli("encode", "--config", CONFIG, "--weights", WEIGHTS, "--keep", 16, *IMAGES, "-o", tokens)
    cli("decode", "--config", CONFIG, "--weights", WEIGHTS, tokens, "-o", tmp_path / "dec")
    idx, grp = tok.encode(images, keep=16)
    dec = tok.decode(idx, grp)
    assert dec.dtype == np.float32 and dec.shape == (len(IMAGES), 3, 32, 32)
    got = mergevq.to_uint8(dec)
    for i in range(len(IMAGES)):
        np.testing.assert_array_equal(got[i], load_png(tmp_path / "dec" / f"{i}.png"))


def test_reconstruct_equals_cli_8bit(tok, images, tmp_path):
    cli("reconstruct", "--config", CONFIG, "--weights", WEIGHTS, "--keep", 36, *IMAGES, "-o", tmp_path)
    got = mergevq.to_uint8(tok.reconstruct(images, keep=36))
    for i, p in enumerate(IMAGES):
        np.testing.assert_array_equal(got[i], load_png(tmp_path / f"{p.stem}_rec.png"))


def test_default_keep_is_the_configs(tok, images):
    idx, _ = tok.encode(images)
    assert idx.shape[1] == tok.keep


class DLPackOnly:
    """An array that only speaks DLPack (numpy's own __dlpack__), like a torch tensor would."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_input(tok, images):
    want = tok.encode(images, keep=16)
    got = tok.encode(DLPackOnly(images), keep=16)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_float_input_equals_uint8(tok, images):
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    for a, b in zip(tok.encode(x, keep=25), tok.encode(images, keep=25)):
        np.testing.assert_array_equal(a, b)


def test_batch_1_equals_batch_8(tok, images):
    one = tok.encode(images, keep=16, batch=1)
    eight = tok.encode(images, keep=16, batch=8)
    np.testing.assert_array_equal(one[0], eight[0])
    np.testing.assert_array_equal(one[1], eight[1])
    np.testing.assert_array_equal(
        mergevq.to_uint8(tok.decode(*one, batch=1)), mergevq.to_uint8(tok.decode(*eight, batch=8))
    )


def test_other_sizes_and_greyscale_as_cli(tok, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (28, 28), dtype=np.uint8)  # padded to 32²
    big = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)  # resized and cropped
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    Image.fromarray(big, "RGB").save(tmp_path / "big.png")
    for name, arr in [("grey", grey[None]), ("big", big[None])]:
        out = tmp_path / f"{name}.safetensors"
        cli("encode", "--config", CONFIG, "--weights", WEIGHTS, "--keep", 16, tmp_path / f"{name}.png", "-o", out)
        want = read_safetensors(out)
        idx, grp = tok.encode(arr, keep=16)
        np.testing.assert_array_equal(idx, want["indices"])
        np.testing.assert_array_equal(grp, want["group"])


def test_four_threads_equal_serial(tok, images):
    keeps = [16, 25, 36, 64]
    serial = [tok.encode(images, keep=k) for k in keeps]
    results = [None] * 4

    def work(i):
        results[i] = tok.encode(images, keep=keeps[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_threads_settable(tok, images):
    want = tok.encode(images, keep=16)
    try:
        mergevq.set_threads(1)
        assert mergevq.get_threads() == 1
        got = tok.encode(images, keep=16)
    finally:
        mergevq.set_threads(0)
    np.testing.assert_array_equal(got[0], want[0])


def test_to_uint8_rounds_halves_away_from_zero_as_the_cli():
    # float32 x with (x + 1) · 127.5 exactly k + 0.5: the CLI (f32::round) writes k + 1 for even k
    # as for odd ones, where numpy's half-to-even rounding would write k.
    k = np.arange(0, 255, dtype=np.float32)
    x = (k + np.float32(0.5)) / np.float32(127.5) - np.float32(1.0)
    half = (x + np.float32(1.0)) * np.float32(127.5) == k + np.float32(0.5)
    assert half.sum() > 50
    got = mergevq.to_uint8(x[half].reshape(1, 1, 1, -1).repeat(3, axis=1))
    np.testing.assert_array_equal(got[0, 0, :, 0], (k[half] + 1).astype(np.uint8))
    nan = np.full((1, 3, 1, 1), np.nan, dtype=np.float32)
    assert mergevq.to_uint8(nan).tolist() == [[[[0, 0, 0]]]]
