"""The preprocessing training and serving share: any image -> a grayscale feature vector.

Grayscale, resized (bilinear), scaled to [0, 1], flattened. PNG decoding is most of a cold load,
so plain 8-bit PNGs (the Kaggle photos) are decoded with libspng (``pyspng``, about 1.5x faster
than Pillow's decoder, same pixels); everything else, and any PNG libspng refuses, goes through
Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

try:
    import pyspng
except ImportError:  # optional speed-up: Pillow decodes everything without it
    pyspng = None

DEFAULT_IMAGE_SIZE = (59, 45)  # width x height: 590x445 Kaggle photos scaled by 1/10


def parse_size(text: str) -> tuple[int, int]:
    """'59x45' -> (59, 45): width x height, as image tools write it."""
    from fishopt.errors import FishoptError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise FishoptError(f"image size {text!r} is not WIDTHxHEIGHT, e.g. 59x45") from None
    if w < 1 or h < 1:
        raise FishoptError(f"image size {text!r} must be positive")
    return w, h


def description(size: tuple[int, int]) -> dict:
    """What a model's inputs went through; stored with the data and every exported bundle."""
    return {
        "grayscale": True,
        "width": size[0],
        "height": size[1],
        "scale": "0-1",
        "resample": "bilinear",
        "alpha": "white",
    }


def to_gray_array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Grayscale, resized, scaled to [0, 1], for every mode Pillow opens.

    16-bit images are scaled by 65535 (not clipped at 255, which would make them all white);
    transparent pixels are composited onto white so RGBA and palette images read as they look.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(image, dtype=np.float32) / 65535.0
        if arr.ndim == 3:
            arr = arr.mean(axis=2)
        gray = Image.fromarray(np.clip(arr, 0, 1).astype(np.float32), mode="F")
        return np.asarray(gray.resize(size, Image.BILINEAR), dtype=np.float32).copy()
    if mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        gray = Image.fromarray(np.clip(arr, 0, 1), mode="F")
        return np.asarray(gray.resize(size, Image.BILINEAR), dtype=np.float32).copy()
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    gray = image.convert("L").resize(size, Image.BILINEAR, reducing_gap=3.0)
    return np.asarray(gray, dtype=np.float32) / 255.0


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR colour types libspng returns in Pillow's layout at bit depth 8: gray, RGB, RGBA.
_SPNG_COLOUR_TYPES = {0: "L", 2: "RGB", 6: "RGBA"}


def _decode_png_fast(blob: bytes) -> Image.Image | None:
    """An 8-bit gray/RGB/RGBA PNG decoded by libspng, as the Pillow image Pillow would give;
    None for anything else (palette, 16-bit, gray+alpha, not a PNG, libspng errors)."""
    if pyspng is None or len(blob) < 29 or not blob.startswith(PNG_SIGNATURE):
        return None
    bit_depth, colour_type = blob[24], blob[25]
    mode = _SPNG_COLOUR_TYPES.get(colour_type)
    if bit_depth != 8 or mode is None:
        return None
    try:
        pixels = pyspng.load(blob)
    except Exception:  # let Pillow decide (and word the error) for anything libspng refuses
        return None
    image = Image.fromarray(pixels)
    return image if image.mode == mode else None


def decode(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One file -> feature vector; raises on anything that is not a readable image."""
    if path.suffix.lower() == ".png":
        fast = _decode_png_fast(path.read_bytes())
        if fast is not None:
            return to_gray_array(fast, size).reshape(-1)
    with Image.open(path) as image:
        # JPEG: let libjpeg decode at a reduced scale; a no-op for other formats.
        image.draft("L", (size[0] * 3, size[1] * 3))
        image.load()
        return to_gray_array(image, size).reshape(-1)
