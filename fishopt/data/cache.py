"""Decoded arrays: a source's images decoded once, in parallel, and cached on disk.

Decoding happens once per (file list, preprocessing) pair; the arrays are cached and
memory-mapped afterwards, so a second run costs milliseconds. The synthetic set is generated
once into the cache, then read by the same Kaggle loader.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fishopt.data import synthetic
from fishopt.data.preprocess import DEFAULT_IMAGE_SIZE, decode, description
from fishopt.data.sources import SourceSpec, _Listing, list_images, original_groups
from fishopt.errors import FishoptError
from fishopt.files import atomic_dir

CACHE_VERSION = "2"  # 2: groups.npy beside X.npy and y.npy
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Dataset:
    """Preprocessed features in [0, 1], one row per image, and what they came from."""

    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    fingerprint: str
    preprocessing: dict
    source: str
    skipped: tuple[str, ...] = ()
    # One id per row naming the original photo it was augmented from, where file names say so
    # (the synthetic set); None otherwise. ``split(..., groups=ds.groups)`` keeps them whole.
    groups: np.ndarray | None = None
    # Why the decoded arrays could not be cached (a full disk); None when they were or came
    # from the cache. The data are whole in memory either way.
    not_cached: str | None = None


def _decode_chunk(args: tuple[list[str], tuple[int, int]]) -> list[np.ndarray | str]:
    paths, size = args
    out: list[np.ndarray | str] = []
    for p in paths:
        try:
            out.append(decode(Path(p), size))
        except Exception as exc:  # any unreadable file is reported, not fatal
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def decode_all(
    files: Sequence[Path],
    size: tuple[int, int],
    workers: int | None = None,
    progress: Progress | None = None,
) -> list[np.ndarray | str]:
    """Decode in parallel; each element is an array or the error text for that file."""
    workers = workers or os.cpu_count() or 1
    # Several chunks per worker so the last one does not run alone; at most 64 files each so
    # progress moves.
    chunk = max(1, min(64, math.ceil(len(files) / (4 * workers))))
    chunks = [([str(p) for p in files[i : i + chunk]], size) for i in range(0, len(files), chunk)]
    results: list[np.ndarray | str] = []
    if workers <= 1 or len(chunks) <= 1:
        mapped = map(_decode_chunk, chunks)
        pool = None
    else:
        pool = ProcessPoolExecutor(min(workers, len(chunks)))
        mapped = pool.map(_decode_chunk, chunks)
    try:
        for part in mapped:
            results.extend(part)
            if progress:
                progress(len(results), len(files))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return results


def _listing_key(listing: _Listing, size: tuple[int, int], kind: str) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{kind}|{size[0]}x{size[1]}|".encode())
    for path, label in zip(listing.files, listing.labels, strict=True):
        # abspath, not resolve(): resolving costs a syscall per path component per file, which
        # was half of a warm load; only symlinked copies of a set lose cache sharing.
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update("|".join(listing.classes).encode())
    return h.hexdigest()[:24]


def content_fingerprint(X: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> str:
    """Identifies the data by content, so a copied or regenerated set matches itself."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    h.update("|".join(classes).encode())
    return h.hexdigest()[:16]


def _write_cache(folder: Path, ds: Dataset) -> None:
    with atomic_dir(folder) as tmp:  # another process may win the race: its copy is identical
        np.save(tmp / "X.npy", ds.X)
        np.save(tmp / "y.npy", ds.y)
        if ds.groups is not None:
            np.save(tmp / "groups.npy", ds.groups)
        meta = {
            "classes": list(ds.classes),
            "fingerprint": ds.fingerprint,
            "preprocessing": ds.preprocessing,
            "source": ds.source,
            "skipped": list(ds.skipped),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def _read_cache(folder: Path) -> Dataset | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        X = np.load(folder / "X.npy", mmap_mode="r")
        y = np.load(folder / "y.npy")
        groups_file = folder / "groups.npy"
        groups = np.load(groups_file) if groups_file.exists() else None
    except (OSError, ValueError, KeyError):
        return None
    return Dataset(
        X=X,
        y=y,
        classes=tuple(meta["classes"]),
        fingerprint=meta["fingerprint"],
        preprocessing=meta["preprocessing"],
        source=meta["source"],
        skipped=tuple(meta.get("skipped", ())),
        groups=groups,
    )


def load(
    spec: SourceSpec,
    cache_dir: Path,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    *,
    strict: bool = False,
    progress: Progress | None = None,
    generate_progress: Progress | None = None,
    workers: int | None = None,
) -> tuple[Dataset, bool]:
    """Load (decoding or from cache) and return the dataset and whether the cache was hit."""
    if spec.kind == "digits":
        return _digits(cache_dir), True
    if spec.kind == "synthetic":
        w, h = spec.size
        out = cache_dir / "synthetic" / f"seed{spec.seed}-n{spec.per_class}-{w}x{h}"
        try:
            root, generated = synthetic.generate_with_features(
                out,
                per_class=spec.per_class,
                size=spec.size,
                seed=spec.seed,
                workers=workers,
                progress=generate_progress,
                features=image_size,
            )
        except OSError as exc:  # nothing half-written is left (a temporary folder, removed)
            raise FishoptError(
                f"cannot write the synthetic set under {out}: {exc.strerror or exc}; "
                "free some space or pass --cache-dir"
            ) from None
        spec = SourceSpec("kaggle", path=root)
    else:
        generated = None
    listing = list_images(spec)
    key = _listing_key(listing, image_size, spec.kind)
    folder = cache_dir / "arrays" / key
    cached = _read_cache(folder)
    if cached is not None:
        _check_skipped(cached.skipped, strict, len(listing.files))
        return cached, True

    decoded = _from_generator(listing, generated, progress) if generated else None
    if decoded is None:
        decoded = decode_all(listing.files, image_size, workers=workers, progress=progress)
    keep = [i for i, r in enumerate(decoded) if isinstance(r, np.ndarray)]
    skipped = tuple(
        f"{listing.files[i]} ({decoded[i]})"
        for i, r in enumerate(decoded)
        if not isinstance(r, np.ndarray)
    )
    _check_skipped(skipped, strict, len(listing.files))
    y = np.asarray([listing.labels[i] for i in keep], dtype=np.int64)
    missing = [c for k, c in enumerate(listing.classes) if not np.any(y == k)]
    if missing:
        raise FishoptError(f"no readable images left in class folder(s) {missing} of {spec.path}")
    X = np.stack([decoded[i] for i in keep]).astype(np.float32, copy=False)
    all_groups = original_groups(listing)
    groups = None if all_groups is None else all_groups[keep]
    classes = tuple(listing.classes)
    preprocessing = description(image_size)
    ds = Dataset(
        X=X,
        y=y,
        classes=classes,
        fingerprint=content_fingerprint(X, y, classes),
        preprocessing=preprocessing,
        source=str(spec.path),
        skipped=skipped,
        groups=groups,
    )
    try:
        _write_cache(folder, ds)  # whole or not at all (atomic_dir)
    except OSError as exc:
        return replace(ds, not_cached=f"{exc.strerror or exc} ({cache_dir})"), False
    return ds, False


def _from_generator(
    listing: _Listing, generated: dict[str, np.ndarray], progress: Progress | None
) -> list[np.ndarray | str] | None:
    """The features the generator computed, in the listing's order; None unless it has every
    file (then the files are decoded as any set is)."""
    out: list[np.ndarray | str] = []
    for path in listing.files:
        vector = generated.get("/".join(Path(path).parts[-3:]))  # Species/Species/name.png
        if vector is None:
            return None
        out.append(vector)
    if progress:
        progress(len(out), len(out))
    return out


def _check_skipped(skipped: Sequence[str], strict: bool, total: int) -> None:
    if skipped and strict:
        first = "; ".join(skipped[:3])
        raise FishoptError(
            f"{len(skipped)} of {total} files are not readable images (--strict): {first}"
        )


def _digits(cache_dir: Path | None) -> Dataset:
    """scikit-learn's digits, kept as arrays: loading them imports scikit-learn (about 1 s of
    every worker's start), reading the arrays back does not."""
    from importlib import metadata

    if cache_dir is None:
        return _load_digits()
    folder = cache_dir / "arrays" / f"digits-v{CACHE_VERSION}-{metadata.version('scikit-learn')}"
    cached = _read_cache(folder)
    if cached is not None:  # 1,797 x 64: read into memory, writable as load_digits gives it
        return replace(cached, X=np.array(cached.X))
    ds = _load_digits()
    with contextlib.suppress(OSError):  # nothing to decode: a cache that fails costs 1 s
        _write_cache(folder, ds)
    return ds


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    classes = tuple(str(c) for c in bunch.target_names)
    preprocessing = {
        "grayscale": True,
        "width": 8,
        "height": 8,
        "scale": "0-1",
        "resample": "bilinear",
        "alpha": "white",
        "invert": True,
    }
    return Dataset(
        X=X,
        y=y,
        classes=classes,
        fingerprint=content_fingerprint(X, y, classes),
        preprocessing=preprocessing,
        source="sklearn.datasets.load_digits",
    )
