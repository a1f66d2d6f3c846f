"""Bundle -> predictions: load a bundle safely, preprocess images as training did, rank classes.

Loading refuses anything that would need unpickling (a ``.pt``/``.pth``/``.pkl`` file, or any
file that is not a bundle folder), and checks the weights' sha256 against ``model.json`` before
reading them, so a tampered or truncated file is named rather than half-loaded.

Preprocessing is ``fishopt.data``'s: the same ``decode`` for files and the same
``to_gray_array`` for uploaded bytes, with the size and options read from ``model.json``. The
pixel-count guard runs on the image header, before any pixel is decoded, so a decompression
bomb costs only its header.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from fishopt import data
from fishopt.errors import FishoptError
from fishopt.training.model import MLPSpec, load_model

META = "model.json"
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"})
DEFAULT_MAX_PIXELS = 50_000_000  # a 50 Mpx photo decodes to ~150 MB of RGB; more is refused


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: dict
    model: torch.nn.Module
    classes: tuple[str, ...]
    size: tuple[int, int]  # width x height fed to the network

    @property
    def label(self) -> str:
        src = self.meta.get("source", {})
        return f"{src.get('study', '?')} trial {src.get('trial', '?')}"


@dataclass(frozen=True)
class Prediction:
    name: str
    top: list[tuple[str, float]]  # (class, probability), best first
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"file": self.name, "error": self.error}
        return {
            "file": self.name,
            "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top],
        }


class ImageRejected(FishoptError):
    """An input that is not a usable image; ``status`` is the HTTP code the service answers."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------ loading


def load_bundle(path: Path | str) -> Bundle:
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise FishoptError(
                f"{path}: a {path.suffix} file is a pickle; fishopt never unpickles models. "
                "Pass a bundle folder from `fishopt export-best`"
            )
        raise FishoptError(f"{path}: not a bundle; pass the folder `fishopt export-best` wrote")
    if not path.is_dir():
        raise FishoptError(f"{path}: no such bundle folder")
    meta_path = path / META
    if not meta_path.is_file():
        raise FishoptError(f"{meta_path}: missing; {path} is not a fishopt bundle")
    try:
        meta = json.loads(meta_path.read_text())
        model_spec = MLPSpec.from_dict(meta["model"])
        classes = tuple(str(c) for c in meta["classes"])
        pre = meta["preprocessing"]
        size = (int(pre["width"]), int(pre["height"]))
        weights_name = str(meta["weights"]["file"])
        expected = str(meta["weights"]["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FishoptError(f"{meta_path}: not a valid bundle description ({exc})") from None
    weights_path = path / Path(weights_name).name  # never outside the bundle
    if weights_path.suffix != ".safetensors":
        raise FishoptError(f"{meta_path}: weights file {weights_name!r} is not .safetensors")
    if not weights_path.is_file():
        raise FishoptError(f"{weights_path}: missing")
    blob = weights_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected:
        raise FishoptError(
            f"{weights_path}: sha256 {digest[:16]}... does not match {META} "
            f"({expected[:16]}...); the weights were changed or damaged"
        )
    try:
        model = load_model(model_spec, load_safetensors(blob))
    except (SafetensorError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FishoptError(f"{weights_path}: does not fit {META}'s network ({first})") from None
    if model_spec.n_classes != len(classes) or model_spec.in_features != size[0] * size[1]:
        raise FishoptError(f"{meta_path}: classes or image size do not match the network")
    return Bundle(path, meta, model, classes, size)


# ------------------------------------------------------------------------------ preprocessing


def _finish(bundle: Bundle, features: np.ndarray) -> np.ndarray:
    if bundle.meta["preprocessing"].get("invert"):
        features = 1.0 - features
    return features.astype(np.float32, copy=False)


def features_of_bytes(bundle: Bundle, blob: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Uploaded bytes -> feature vector, with the bomb guard before any pixel is decoded."""
    if not blob:
        raise ImageRejected(f"{name}: empty file", 422)
    try:
        with Image.open(io.BytesIO(blob)) as image:
            w, h = image.size
            if w * h > max_pixels:
                raise ImageRejected(
                    f"{name}: {w}x{h} = {w * h / 1e6:.0f} Mpx is over the "
                    f"{max_pixels / 1e6:.0f} Mpx limit; not decoded",
                    413,
                )
            # As data.decode: JPEGs decode at a reduced scale; a no-op for other formats.
            image.draft("L", (bundle.size[0] * 3, bundle.size[1] * 3))
            image.load()
            arr = data.to_gray_array(image, bundle.size).reshape(-1)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"{name}: {exc}; not decoded", 413) from None
    except UnidentifiedImageError:
        raise ImageRejected(f"{name}: not an image Pillow can read", 415) from None
    except (OSError, SyntaxError, ValueError) as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise ImageRejected(f"{name}: unreadable image ({why})", 415) from None
    return _finish(bundle, arr)


def features_of_file(bundle: Bundle, path: Path) -> np.ndarray:
    return _finish(bundle, data.decode(path, bundle.size))


# --------------------------------------------------------------------------------- predicting


@torch.no_grad()
def probabilities(bundle: Bundle, X: np.ndarray) -> np.ndarray:
    logits = bundle.model(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
    return torch.softmax(logits, dim=1).numpy()


def top_k(bundle: Bundle, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    k = max(1, min(k, len(bundle.classes)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    pairs = zip(order, probs, strict=True)
    return [[(bundle.classes[i], float(p[i])) for i in row] for row, p in pairs]


def collect(paths: Iterable[Path | str]) -> list[Path]:
    """Image files from files and folders (folders searched recursively, sorted)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.suffix.lower() in data.IMAGE_EXTENSIONS and f.is_file()
            )
            if not found:
                raise FishoptError(f"{p}: no images ({', '.join(sorted(data.IMAGE_EXTENSIONS))})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FishoptError(f"{p}: no such file or folder")
    return out


def predict_files(bundle: Bundle, files: Sequence[Path], k: int = 3) -> list[Prediction]:
    """One prediction per file; a file that is not a readable image gets an error entry."""
    rows: list[np.ndarray] = []
    ok: list[int] = []
    results: list[Prediction | None] = [None] * len(files)
    for i, f in enumerate(files):
        try:
            rows.append(features_of_file(bundle, f))
            ok.append(i)
        except Exception as exc:  # any unreadable file is reported, not fatal
            results[i] = Prediction(str(f), [], f"{type(exc).__name__}: {exc}")
    if rows:
        tops = top_k(bundle, probabilities(bundle, np.stack(rows)), k)
        for i, top in zip(ok, tops, strict=True):
            results[i] = Prediction(str(files[i]), top)
    return [r for r in results if r is not None]
