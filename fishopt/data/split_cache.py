"""Splits kept beside the cached arrays: made once per data, fractions and seed.

Making a split imports scikit-learn (about 1 s of CPU, most of it scipy and pandas), and every
worker of a study, every ``--jobs`` child and every resumed run makes the same one. Reading it
back is a few milliseconds. The key holds everything the indices depend on: the data's content
fingerprint, the fractions, the seed, whether originals are kept whole, and scikit-learn's version
(its shuffling draws the indices). A file that cannot be read, or that does not fit the data, is
made again; a cache that cannot be written costs only the time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from fishopt.data.split import Split, split
from fishopt.files import write_bytes

SPLIT_CACHE_VERSION = "1"


def kept_split(
    cache_dir: Path | None,
    fingerprint: str,
    y: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    groups: np.ndarray | None = None,
) -> Split:
    """``split(y, fractions, seed, groups)``, read from ``cache_dir`` when made there before."""
    if cache_dir is None:
        return split(y, fractions, seed=seed, groups=groups)
    path = cache_dir / "splits" / f"{_key(fingerprint, fractions, seed, groups is not None)}.npz"
    kept = _read(path, len(y))
    if kept is not None:
        return kept
    made = split(y, fractions, seed=seed, groups=groups)
    with contextlib.suppress(OSError):  # a read-only or full disk: the split is still right
        write_bytes(path, _encode(made))
    return made


def _key(fingerprint: str, fractions: Sequence[float], seed: int, grouped: bool) -> str:
    try:
        sklearn = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        sklearn = "?"
    what = [SPLIT_CACHE_VERSION, fingerprint, [float(f) for f in fractions], seed, grouped, sklearn]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:20]


def _encode(s: Split) -> bytes:
    buf = io.BytesIO()
    meta = np.array([*s.fractions, s.seed, s.groups], dtype=np.float64)
    np.savez(buf, train=s.train, valid=s.valid, test=s.test, meta=meta)
    return buf.getvalue()


def _read(path: Path, n: int) -> Split | None:
    try:
        with np.load(path) as f:
            train, valid, test, meta = f["train"], f["valid"], f["test"], f["meta"]
    except (OSError, ValueError, KeyError):
        return None
    every = np.concatenate([train, valid, test])
    if len(every) != n or not np.array_equal(np.sort(every), np.arange(n)):
        return None  # not a split of this data: make it again
    fractions = (float(meta[0]), float(meta[1]), float(meta[2]))
    return Split(train, valid, test, fractions, int(meta[3]), groups=int(meta[4]))
