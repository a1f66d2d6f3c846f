"""Figure 3: preprocessing, cold (decode) against the seed's PIL loop, warm (cache) against cold."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Figure
from bench.seed import preprocess_seed_style
from fishopt import data


def _files(root: Path) -> list[Path]:
    return data.list_images(data.SourceSpec("kaggle", path=root)).files


def _cold(root: Path, scratch: Path) -> float:
    """fishopt's load with an empty cache: list, decode in parallel, write the cache."""
    cache = Path(tempfile.mkdtemp(dir=scratch))
    try:
        t0 = time.perf_counter()
        ds, hit = data.load(data.SourceSpec("kaggle", path=root), cache)
        seconds = time.perf_counter() - t0
        assert not hit
        return len(ds.y) / seconds
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _warm(root: Path, cache: Path) -> float:
    """A cache hit, features read into memory (a memory map alone would defer the reading)."""
    t0 = time.perf_counter()
    ds, hit = data.load(data.SourceSpec("kaggle", path=root), cache)
    X = np.array(ds.X)  # touch every byte, as make_tensors does
    seconds = time.perf_counter() - t0
    assert hit and X.shape[0] == len(ds.y)
    return len(ds.y) / seconds


def _seed(files: list[Path]) -> float:
    t0 = time.perf_counter()
    preprocess_seed_style(files)
    return len(files) / (time.perf_counter() - t0)


def figure3(root: Path, scratch: Path, rounds: int) -> tuple[Figure, Figure]:
    files = _files(root)
    cold = Figure(
        "3 (cold)",
        "preprocessing images/s, fishopt cold load / seed single-process PIL loop",
        "fishopt data.load, empty cache (parallel decode + cache write)",
        "seed loop: PIL open, grayscale, resize",
        "images/s",
        1.8,
        ">= 1.8x",
    )
    warm = Figure(
        "3 (warm)",
        "preprocessing images/s, fishopt warm (cached) load / fishopt cold load",
        "fishopt data.load, cache hit, features read into memory",
        "fishopt data.load, empty cache",
        "images/s",
        100.0,
        ">= 100x",
    )
    _seed(files[:8])  # warm the page cache for both sides alike
    cache = scratch / "warm-cache"
    data.load(data.SourceSpec("kaggle", path=root), cache)
    for r in range(rounds):
        # Alternate the order so that drift in the machine's load falls on every side.
        if r % 2 == 0:
            c, s, w = _cold(root, scratch), _seed(files), _warm(root, cache)
        else:
            w, s, c = _warm(root, cache), _seed(files), _cold(root, scratch)
        cold.add(c, s)
        warm.add(w, c)
        print(
            f"  round {r + 1}/{rounds}: cold {c:.4g}/s  seed {s:.4g}/s  warm {w:.4g}/s  "
            f"cold/seed {c / s:.3g}  warm/cold {w / c:.3g}"
        )
    extra = {"images": len(files), "photo size": "590x445 PNG", "features": "59x45 gray"}
    cold.extra = warm.extra = extra
    return cold, warm
