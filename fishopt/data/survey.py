"""The native sizes of a source's images, and what resizing them to the input size does.

Every image is resized to one input size (``--image-size``, 59x45 by default), which silently
stretches images of another shape: 32x32 icons become 59x45, 31% wider than they are. This module
reads image headers only (Pillow's ``Image.open`` decodes no pixels), a sample of them for a big
set, so ``fishopt data info`` can say what it found and warn before a study trains on distorted
images.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fishopt.data.cache import Dataset
from fishopt.data.sources import SourceSpec, list_images, parse_source

SAMPLE_LIMIT = 500  # headers read at most; a few milliseconds each on a local disk
ASPECT_TOLERANCE = 0.10  # a stretch above this many percent is warned about
Size = tuple[int, int]  # width x height


@dataclass(frozen=True)
class Survey:
    """Native sizes found, most common first, and how many files were looked at."""

    sizes: tuple[tuple[Size, int], ...]  # (size, images of that size), most common first
    examined: int  # headers read (all images, or a sample spread over the set)
    total: int  # images in the source
    unreadable: int = 0  # examined files whose header Pillow could not read

    @property
    def sampled(self) -> bool:
        return self.examined < self.total

    def distortions(self, target: Size) -> list[Distortion]:
        """The native sizes whose aspect ratio resizing to ``target`` changes by more than
        ``ASPECT_TOLERANCE``, most common first."""
        found = []
        for size, count in self.sizes:
            change = aspect_change(size, target)
            if change > ASPECT_TOLERANCE:
                found.append(Distortion(size, count, change, keep_aspect(size, target)))
        return found


@dataclass(frozen=True)
class Distortion:
    """One native size that the resize stretches, and an input size that would not."""

    size: Size
    count: int
    change: float  # 0.31 = one side stretched by 31% relative to the other
    suggestion: Size  # an --image-size with this size's aspect ratio


def aspect_change(native: Size, target: Size) -> float:
    """How much resizing ``native`` to ``target`` stretches one side relative to the other.

    Symmetric: 32x32 -> 59x45 and 45x59 both give 0.31 (59/45 - 1), whichever side grows.
    """
    ratio = (target[0] / target[1]) / (native[0] / native[1])
    return max(ratio, 1 / ratio) - 1


def keep_aspect(native: Size, target: Size) -> Size:
    """An input size with ``native``'s aspect ratio and no more pixels than ``target``.

    A small image is kept at its own size (upscaling adds no information, only features); a big
    one is scaled to about ``target``'s pixel count, so the network's input stays the same size.
    """
    w, h = native
    budget = target[0] * target[1]
    if w * h <= budget:
        return native
    scale = math.sqrt(budget / (w * h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def survey_files(files: Sequence[Path], limit: int = SAMPLE_LIMIT) -> Survey:
    """Read the headers of ``files``, or of ``limit`` of them evenly spaced through the list.

    Listings are sorted by class, so evenly spaced files cover every class in proportion.
    """
    n = len(files)
    picked = [files[i * n // limit] for i in range(limit)] if n > limit else list(files)
    counts: Counter[Size] = Counter()
    unreadable = 0
    for path in picked:
        try:
            with Image.open(path) as image:
                counts[image.size] += 1
        except (OSError, ValueError, Image.DecompressionBombError):
            unreadable += 1
    return Survey(tuple(counts.most_common()), examined=len(picked), total=n, unreadable=unreadable)


def survey(spec: SourceSpec, ds: Dataset, limit: int = SAMPLE_LIMIT) -> Survey:
    """The native sizes of the images ``ds`` was loaded from.

    ``ds.source`` is the folder the images were read from (for the synthetic set, the one it
    was generated into), so the files surveyed are the files decoded. scikit-learn's digits are
    8x8 arrays, not files, and are used at that size.
    """
    if spec.kind == "digits":
        size = (int(ds.preprocessing["width"]), int(ds.preprocessing["height"]))
        return Survey(((size, len(ds.y)),), examined=len(ds.y), total=len(ds.y))
    files = list_images(parse_source(ds.source)).files
    return survey_files(files, limit)
