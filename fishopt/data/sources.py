"""Where images come from: a --data value -> a source, and a source's files and labels.

Sources are the Kaggle fish layout (``<Species>/<Species>/*.png``, ``GT`` masks ignored), any
class-per-folder tree, the built-in synthetic fish set and scikit-learn's digits. Nothing here
decodes an image; that is ``preprocess`` (shared with serving) and ``cache``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fishopt.data.preprocess import parse_size
from fishopt.errors import FishoptError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DEFAULT_SYNTHETIC_PER_CLASS = 300
DEFAULT_SYNTHETIC_SIZE = (590, 445)
_NOT_SPECIES = frozenset({"Fish_Dataset", "NA_Fish_Dataset"})
# A file stem ending in "-orig<N>" (``00012-orig001.png``, as the synthetic set names its files)
# says which original photo, within its class, the image was augmented from.
ORIGINAL_STEM = re.compile(r"-orig(\d+)$")


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


@dataclass
class _Listing:
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


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
    return spec, f"data: {spec.describe()}\n  no --data given: pass --data PATH for real images"


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


def original_groups(listing: _Listing) -> np.ndarray | None:
    """One group id per file, the same for all copies of an original photo, if names say so.

    Ids number (class, original) pairs, so originals of different classes never share one.
    None unless every file name carries an original (the real Kaggle set carries none).
    """
    keys = []
    for path, label in zip(listing.files, listing.labels, strict=True):
        match = ORIGINAL_STEM.search(path.stem)
        if match is None:
            return None
        keys.append((label, int(match.group(1))))
    if not keys:
        return None
    _, ids = np.unique(np.asarray(keys), axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)
