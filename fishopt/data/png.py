"""A fast PNG encoder for the synthetic set: one row filter instead of Pillow's five."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image


def encode_png(image: Image.Image, level: int = 1) -> bytes:
    """An 8-bit grey or RGB image as PNG bytes, every row with PNG's "Up" filter.

    Pillow tries all five PNG filters on every row, which took as long as the compression
    itself; on these smooth photos "Up" alone compresses as well, so writing the set takes
    about half the time. Any PNG reader (Pillow, libspng) decodes the result.
    """
    arr = np.asarray(image)
    colour = {"L": 0, "RGB": 2}[image.mode]
    height, width = arr.shape[:2]
    rows = arr.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # filter type Up: each byte minus the one above it, modulo 256
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(filtered, level)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
