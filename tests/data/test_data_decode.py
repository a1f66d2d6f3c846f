"""The fast PNG path (libspng) gives exactly Pillow's features, and hands other images back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from needs import require
from PIL import Image

from fishopt import data
from fishopt.data import preprocess


def _pillow_features(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return data.to_gray_array(image, size).reshape(-1)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "I;16"])
def test_decode_matches_pillow_for_every_png_mode(tmp_path: Path, mode: str):
    rng = np.random.default_rng(1)
    rgba = Image.fromarray(rng.integers(0, 256, (45, 59, 4), dtype=np.uint8), "RGBA")
    image = {
        "L": lambda: rgba.convert("L"),
        "RGB": lambda: rgba.convert("RGB"),
        "RGBA": lambda: rgba,
        "LA": lambda: rgba.convert("LA"),
        "P": lambda: rgba.convert("RGB").convert("P"),
        "I;16": lambda: Image.fromarray(rng.integers(0, 65536, (45, 59), dtype=np.uint16)),
    }[mode]()
    path = tmp_path / f"x-{mode.replace(';', '')}.png"
    image.save(path)
    got = data.decode(path, (20, 15))
    np.testing.assert_array_equal(got, _pillow_features(path, (20, 15)))


def test_fast_path_is_taken_for_plain_8bit_png_only(tmp_path: Path):
    try:
        import pyspng  # noqa: F401  (a dependency: the fast path is what this test checks)
    except ImportError:
        require("pyspng", "pyspng (a fishopt dependency) does not import here")
    Image.new("RGB", (8, 6), (10, 20, 30)).save(tmp_path / "rgb.png")
    Image.new("P", (8, 6)).save(tmp_path / "p.png")
    assert preprocess._decode_png_fast((tmp_path / "rgb.png").read_bytes()) is not None
    assert preprocess._decode_png_fast((tmp_path / "p.png").read_bytes()) is None
    assert preprocess._decode_png_fast(b"not a png at all, just bytes......") is None
