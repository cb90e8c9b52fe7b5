"""Generation equals `mergevq generate`; the metrics equal the library's and name missing weights."""
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIG, DEMO, ROOT, WEIGHTS, cli, load_png

import mergevq
from mergevq import metrics

GPT_CONFIG, GPT_WEIGHTS = DEMO / "gpt.toml", DEMO / "gpt.safetensors"


@pytest.fixture(scope="module")
def gen(tok):
    return mergevq.Generator.load(GPT_CONFIG, GPT_WEIGHTS, tok)


def test_generate_equals_cli(gen, tok, tmp_path):
    out = tmp_path / "g.png"
    cli("generate", "--ar", GPT_WEIGHTS, "--ar-config", GPT_CONFIG, "--tokenizer", WEIGHTS, "--config", CONFIG,
        "--class", 3, "--num", 1, "--mergear", "--top-k", 50, "--seed", 7, "-o", out)
    codes, groups = gen.generate([3], mergear=True, top_k=50, seed=7)
    assert codes.shape == (1, tok.L) and groups.shape == (1, tok.L)
    np.testing.assert_array_equal(mergevq.to_uint8(tok.decode_codes(codes))[0], load_png(out))


def test_generate_batch_size_does_not_change_the_images(gen):
    one = gen.generate([3, 1, 4], mergear=True, top_k=50, seed=5, batch=1)
    three = gen.generate([3, 1, 4], mergear=True, top_k=50, seed=5, batch=3)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])


def test_generate_bad_options(gen):
    with pytest.raises(ValueError, match="outside the model"):
        gen.generate([99])
    with pytest.raises(ValueError, match="top-p"):
        gen.generate([0], top_p=0.0)
    with pytest.raises(ValueError, match="not among"):
        gen.generate([0], keep=17)


def test_psnr_ssim(images):
    assert metrics.psnr(images, images) == float("inf")
    assert metrics.ssim(images, images) == pytest.approx(1.0)
    noisy = np.clip(images.astype(int) + 8, 0, 255).astype(np.uint8)
    assert 20 < metrics.psnr(images, noisy) < 40
    with pytest.raises(ValueError, match="pairs"):
        metrics.psnr(images, images[:2])


LPIPS = ROOT / "weights" / "lpips_vgg16.safetensors"


@pytest.mark.skipif(not LPIPS.exists(), reason="run scripts/fetch-weights.sh")
def test_lpips(images):
    assert metrics.lpips(images, images, weights=LPIPS) == pytest.approx(0.0, abs=1e-6)
    assert metrics.lpips(images, images[::-1], weights=LPIPS) > 0.01


def test_missing_weights_name_the_script(images, tmp_path):
    with pytest.raises(FileNotFoundError, match="fetch-weights.sh"):
        metrics.lpips(images, images, weights=tmp_path / "none.safetensors")
    with pytest.raises(FileNotFoundError, match="fetch-weights.sh"):
        metrics.fid(images, images, weights=tmp_path / "none.safetensors")
