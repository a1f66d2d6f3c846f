"""Image sources -> cached feature arrays -> a stratified split.

Sources: the Kaggle fish layout, any class-per-folder tree, the built-in synthetic fish set
(generated once into the cache, then read by the same Kaggle loader) and scikit-learn's digits.
Decoding happens once per (file list, preprocessing) pair; the arrays are cached on disk and
memory-mapped afterwards, so a second run costs milliseconds.

PNG decoding is most of a cold load, so plain 8-bit PNGs (the Kaggle photos) are decoded with
libspng (``pyspng``, about 1.5x faster than Pillow's decoder, same pixels); everything else, and
any PNG libspng refuses, goes through Pillow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fishopt import synthetic
from fishopt.errors import FishoptError

try:
    import pyspng
except ImportError:  # optional speed-up: Pillow decodes everything without it
    pyspng = None

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
CACHE_VERSION = "1"
DEFAULT_IMAGE_SIZE = (59, 45)  # width x height: 590x445 Kaggle photos scaled by 1/10
DEFAULT_SYNTHETIC_PER_CLASS = 300
DEFAULT_SYNTHETIC_SIZE = (590, 445)
Progress = Callable[[int, int], None]
_NOT_SPECIES = frozenset({"Fish_Dataset", "NA_Fish_Dataset"})


@dataclass(frozen=True)
class SourceSpec:
    """What the user asked for, before anything is read."""

    kind: str  # kaggle | folder | synthetic | digits
    path: Path | None = None
    per_class: int = DEFAULT_SYNTHETIC_PER_CLASS
    size: tuple[int, int] = DEFAULT_SYNTHETIC_SIZE
    seed: int = 0

    def describe(self) -> str:
        if self.kind == "synthetic":
            w, h = self.size
            return f"synthetic fish ({self.per_class} per class, {w}x{h}, seed {self.seed})"
        if self.kind == "digits":
            return "scikit-learn digits"
        return f"{self.kind} images at {self.path}"


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


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    fractions: tuple[float, float, float] = (0.9, 0.09, 0.01)
    seed: int = 0

    def describe(self) -> dict:
        return {
            "fractions": list(self.fractions),
            "seed": self.seed,
            "sizes": [len(self.train), len(self.valid), len(self.test)],
        }


@dataclass
class _Listing:
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- resolving a source


def parse_size(text: str) -> tuple[int, int]:
    """'59x45' -> (59, 45): width x height, as image tools write it."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise FishoptError(f"image size {text!r} is not WIDTHxHEIGHT, e.g. 59x45") from None
    if w < 1 or h < 1:
        raise FishoptError(f"image size {text!r} must be positive")
    return w, h


def parse_source(text: str) -> SourceSpec:
    """Turn a --data value into a SourceSpec, checking that a path exists."""
    if text == "digits":
        return SourceSpec("digits")
    if text == "synthetic" or text.startswith("synthetic:"):
        parts = text.split(":")[1:]
        try:
            per_class = int(parts[0]) if parts and parts[0] else DEFAULT_SYNTHETIC_PER_CLASS
            seed = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise FishoptError(
                f"--data {text!r}: expected synthetic[:PER_CLASS[:WxH[:SEED]]]"
            ) from None
        size = parse_size(parts[1]) if len(parts) > 1 else DEFAULT_SYNTHETIC_SIZE
        if per_class < 3:
            raise FishoptError(f"--data {text!r}: need at least 3 images per class")
        return SourceSpec("synthetic", per_class=per_class, size=size, seed=seed)
    path = Path(text).expanduser()
    if not path.exists():
        raise FishoptError(f"--data {text}: no such file or folder")
    if not path.is_dir():
        raise FishoptError(f"--data {text}: not a folder of class folders")
    if find_kaggle_root(path) is not None:
        return SourceSpec("kaggle", path=path)
    return SourceSpec("folder", path=path)


def choose_source(flag: str | None, configured: str | None) -> tuple[SourceSpec, str]:
    """The --data flag wins; else a configured path if it exists; else the synthetic set.

    Returns the spec and a sentence saying which was used and why.
    """
    if flag:
        spec = parse_source(flag)
        return spec, f"data: {spec.describe()}"
    if configured:
        if (
            Path(configured).expanduser().exists()
            or configured in ("digits",)
            or configured.startswith("synthetic")
        ):
            spec = parse_source(configured)
            return spec, f"data: {spec.describe()} (from FISHOPT_DATA)"
        spec = SourceSpec("synthetic")
        return spec, f"data: {spec.describe()} (FISHOPT_DATA={configured} does not exist)"
    spec = SourceSpec("synthetic")
    return spec, f"data: {spec.describe()} (no --data given; pass --data PATH for real images)"


def find_kaggle_root(path: Path) -> Path | None:
    """The folder holding <Species>/<Species>/ pairs: the download's top folder, Fish_Dataset/
    or the doubled Fish_Dataset/Fish_Dataset/ that the Kaggle archive unpacks to."""
    # Deepest first: the wrapper Fish_Dataset/Fish_Dataset would itself look like a species.
    for candidate in (path / "Fish_Dataset" / "Fish_Dataset", path / "Fish_Dataset", path):
        if candidate.is_dir() and _kaggle_species(candidate):
            return candidate
    return None


def _kaggle_species(root: Path) -> dict[str, Path]:
    """Species name -> its photo folder, for folders laid out as <Species>/<Species>/."""
    return {
        d.name: d / d.name
        for d in root.iterdir()
        if d.is_dir() and d.name not in _NOT_SPECIES and (d / d.name).is_dir()
    }


def _is_image(path: Path) -> bool:
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.name.startswith(".")
    )


def list_images(spec: SourceSpec) -> _Listing:
    """Files and labels for a folder source; classes are folder names, sorted."""
    assert spec.path is not None
    listing = _Listing()
    if spec.kind == "kaggle":
        root = find_kaggle_root(spec.path)
        assert root is not None
        class_dirs = _kaggle_species(root)
        pattern = "*"  # only the photo folder itself, never the "<Species> GT" masks beside it
    else:
        class_dirs = {
            d.name: d for d in spec.path.iterdir() if d.is_dir() and not d.name.startswith(".")
        }
        pattern = "**/*"
    if not class_dirs:
        loose = [p for p in spec.path.iterdir() if _is_image(p)]
        what = f"{len(loose)} images but no class folders" if loose else "no class folders"
        raise FishoptError(f"{spec.path}: {what}; expected one sub-folder of images per class")
    for label, name in enumerate(sorted(class_dirs)):
        files = sorted(p for p in class_dirs[name].glob(pattern) if _is_image(p))
        if not files:
            raise FishoptError(
                f"{class_dirs[name]}: class folder {name!r} has no images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        listing.classes.append(name)
        listing.files.extend(files)
        listing.labels.extend([label] * len(files))
    if len(listing.classes) < 2:
        raise FishoptError(
            f"{spec.path}: only one class ({listing.classes[0]!r}); a classifier needs at least 2"
        )
    return listing


# ------------------------------------------------------------------------------------ decoding


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


# -------------------------------------------------------------------------------------- caching


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
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        np.save(tmp / "X.npy", ds.X)
        np.save(tmp / "y.npy", ds.y)
        meta = {
            "classes": list(ds.classes),
            "fingerprint": ds.fingerprint,
            "preprocessing": ds.preprocessing,
            "source": ds.source,
            "skipped": list(ds.skipped),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        # If another process won the race, its copy is identical: keep it.
        with contextlib.suppress(OSError):
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_cache(folder: Path) -> Dataset | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        X = np.load(folder / "X.npy", mmap_mode="r")
        y = np.load(folder / "y.npy")
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
    )


# ---------------------------------------------------------------------------------- public API


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
        return _load_digits(), True
    if spec.kind == "synthetic":
        w, h = spec.size
        out = cache_dir / "synthetic" / f"seed{spec.seed}-n{spec.per_class}-{w}x{h}"
        root = synthetic.generate(
            out,
            per_class=spec.per_class,
            size=spec.size,
            seed=spec.seed,
            workers=workers,
            progress=generate_progress,
        )
        spec = SourceSpec("kaggle", path=root)
    listing = list_images(spec)
    key = _listing_key(listing, image_size, spec.kind)
    folder = cache_dir / "arrays" / key
    cached = _read_cache(folder)
    if cached is not None:
        _check_skipped(cached.skipped, strict, len(listing.files))
        return cached, True

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
    classes = tuple(listing.classes)
    preprocessing = {
        "grayscale": True,
        "width": image_size[0],
        "height": image_size[1],
        "scale": "0-1",
        "resample": "bilinear",
        "alpha": "white",
    }
    ds = Dataset(
        X=X,
        y=y,
        classes=classes,
        fingerprint=content_fingerprint(X, y, classes),
        preprocessing=preprocessing,
        source=str(spec.path),
        skipped=skipped,
    )
    _write_cache(folder, ds)
    return ds, False


def _check_skipped(skipped: Sequence[str], strict: bool, total: int) -> None:
    if skipped and strict:
        first = "; ".join(skipped[:3])
        raise FishoptError(
            f"{len(skipped)} of {total} files are not readable images (--strict): {first}"
        )


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


def split(y: np.ndarray, fractions: Sequence[float] = (0.9, 0.09, 0.01), seed: int = 0) -> Split:
    """Stratified train/valid/test indices from a split seed.

    Each non-empty split gets at least one image per class, so tiny data sets still yield a
    macro-F1 over every class rather than a stratification error.
    """
    from sklearn.model_selection import train_test_split

    f_train, f_valid, f_test = (float(f) for f in fractions)
    if min(f_train, f_valid) <= 0 or f_test < 0 or abs(f_train + f_valid + f_test - 1) > 1e-6:
        raise FishoptError(f"split {list(fractions)}: need train, valid > 0, test >= 0, sum 1")
    n, n_classes = len(y), int(y.max()) + 1
    counts = np.bincount(y, minlength=n_classes)
    need = 3 if f_test > 0 else 2
    if counts.min() < need:
        raise FishoptError(
            f"class {int(counts.argmin())} has {int(counts.min())} images; "
            f"each class needs at least {need} for a stratified split"
        )
    idx = np.arange(n)
    rest, test = idx, idx[:0]
    if f_test > 0:
        n_test = min(max(n_classes, round(n * f_test)), n - 2 * n_classes)
        rest, test = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed)
    n_valid = min(max(n_classes, round(n * f_valid)), len(rest) - n_classes)
    train, valid = train_test_split(
        rest, test_size=n_valid, stratify=y[rest], random_state=seed + 1
    )
    return Split(np.sort(train), np.sort(valid), np.sort(test), (f_train, f_valid, f_test), seed)
