"""The built-in synthetic fish set, written in the Kaggle "A Large Scale Fish Dataset" layout.

The real data cannot be downloaded everywhere, so fishopt carries a generator whose output the
real loader reads unchanged: ``Fish_Dataset/<Species>/<Species>/*.png`` beside
``<Species> GT/*.png`` masks. It is built the way the Kaggle set was: a few "original" photos per
species, each multiplied by flips, rotations, crops and lighting changes. That matters for what a
model learns: the copies of one original are near-duplicates, so a random split puts copies of
the same fish on both sides, and a small MLP memorises the training set and scores well, but not
perfectly, on the validation set (see README, "Data"). Species differ in body shape, tone and
pattern, with overlapping ranges, so new originals are genuinely harder than new copies.

Every image is a pure function of (seed, species, index): image ``index`` is a copy of original
``index // COPIES_PER_ORIGINAL``, whose id is written into the file name
(``00012-orig001.png``) so a loader can keep all copies of an original in one split. The set is
reproducible and generated in parallel on all cores. Originals are drawn once per process at a
low resolution (at most ``DRAW_WIDTH`` pixels wide) and each copy is one affine resampling of it
straight to the output size, so the photo is smooth, cheap to draw and quick to PNG-encode.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fishopt.data.png import encode_png
from fishopt.data.preprocess import to_gray_array
from fishopt.files import atomic_dir

KAGGLE_SPECIES: tuple[str, ...] = (
    "Black Sea Sprat",
    "Gilt-Head Bream",
    "Hourse Mackerel",
    "Red Mullet",
    "Red Sea Bream",
    "Sea Bass",
    "Shrimp",
    "Striped Red Mullet",
    "Trout",
)


@dataclass(frozen=True)
class Species:
    """Drawing parameters: mean values that each image jitters around."""

    length: float  # body length as a fraction of the frame width
    depth: float  # body depth / body length
    hump: float  # how far forward the deepest point sits (0..1)
    tone: tuple[int, int, int]  # body colour
    belly: tuple[int, int, int]  # lower-body colour
    pattern: str  # none | stripes | spots | band | bars | segments
    tail: float  # tail size relative to depth
    tray: float  # typical background brightness


SPECIES: dict[str, Species] = {
    "Black Sea Sprat": Species(0.62, 0.20, 0.45, (70, 90, 120), (205, 210, 215), "none", 0.9, 200),
    "Gilt-Head Bream": Species(
        0.55, 0.46, 0.40, (150, 155, 150), (215, 215, 205), "band", 0.8, 175
    ),
    "Hourse Mackerel": Species(0.62, 0.27, 0.40, (95, 115, 110), (200, 205, 200), "line", 1.0, 215),
    "Red Mullet": Species(0.58, 0.28, 0.35, (205, 110, 95), (235, 190, 170), "none", 0.9, 160),
    "Red Sea Bream": Species(0.55, 0.42, 0.38, (215, 120, 125), (240, 200, 195), "spots", 0.8, 190),
    "Sea Bass": Species(0.64, 0.28, 0.45, (120, 125, 130), (220, 222, 222), "none", 1.0, 225),
    "Shrimp": Species(0.52, 0.24, 0.50, (225, 150, 120), (235, 185, 160), "segments", 0.6, 170),
    "Striped Red Mullet": Species(
        0.58, 0.28, 0.35, (195, 95, 80), (235, 200, 150), "stripes", 0.9, 205
    ),
    "Trout": Species(0.63, 0.27, 0.45, (120, 120, 80), (210, 200, 170), "spots_dark", 1.0, 185),
}


COPIES_PER_ORIGINAL = 20  # images per original photo, as in the Kaggle set's augmentation
DRAW_WIDTH = 160  # originals are drawn at most this wide, then resampled to the output size


def original_of(index: int) -> int:
    """Which original photo image ``index`` (0-based, within its species) is a copy of."""
    return index // COPIES_PER_ORIGINAL


def file_name(index: int) -> str:
    """``00012-orig001.png``: the Kaggle-style running number, then the original's id."""
    return f"{index + 1:05d}-orig{original_of(index):03d}.png"


def _rng(seed: int, species: str, key: int | str) -> np.random.Generator:
    # A hash rather than seed+index arithmetic, so neighbouring seeds give unrelated sets.
    digest = hashlib.sha256(f"{seed}/{species}/{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator, amount: float) -> tuple:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in colour)


def _body_outline(length: float, depth: float, hump: float, n: int = 48) -> list[tuple]:
    """Closed fish-body outline centred on the origin, head pointing +x."""
    xs = np.linspace(0.0, 1.0, n)
    # Asymmetric profile: deepest at `hump`, tapering to a narrow tail stalk.
    profile = np.where(
        xs < hump,
        np.sqrt(np.clip(xs / hump, 0, 1)),
        np.clip(1 - np.clip((xs - hump) / (1 - hump), 0, 1) ** 1.6 * 0.88, 0.12, 1),
    )
    half = profile * depth * length / 2
    top = [((1 - x) * length - length / 2, -h) for x, h in zip(xs, half, strict=True)]
    bottom = [((1 - x) * length - length / 2, h * 0.92) for x, h in zip(xs, half, strict=True)]
    return top + bottom[::-1]


@dataclass(frozen=True)
class Augment:
    """How far each copy strays from its original (ranges are +-, uniform)."""

    flip_v: float = 0.5  # probability of an upside-down copy (left-right is always 0.5)
    angle: float = 10.0  # degrees
    zoom: float = 0.06  # relative
    shift: float = 0.04  # fraction of the frame
    gain: float = 0.05  # relative brightness
    offset: float = 3.0  # grey levels (sd)


AUGMENT = Augment()


def _draw_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    draw_w = min(width, DRAW_WIDTH)
    return draw_w, max(1, round(height * draw_w / width))


MARGIN = 1.6  # canvas / frame size for originals
# Measured to put the default MLP in the real set's regime (bench/fig_synthetic.py): a dark tray
# under a large, contrasty fish, so raw [0, 1] pixels are not one bright constant (which left the
# MLP underfitting), and per-original blotches that copies share, which is what it memorises.
FISH_SCALE = 1.25  # fish length relative to the species table
TRAY_LEVEL = 0.3  # species' tray tones scaled down: dark trays
TRAY_SPREAD = 10.0  # grey levels (sd) of an original's tray around its species' tone
GRADIENT = 10.0  # grey levels (sd) of the tray's linear light falloff
BLOTCH = 60.0  # grey levels (sd) of the tray's coarse light and shadow
CONTRAST = 1.5  # fish and pattern contrast against the tray


@functools.lru_cache(maxsize=32)
def _original(
    species: str, original: int, seed: int, frame: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """One original photo (float RGB) and its mask (uint8 0/255), on a canvas with a margin.

    Cached per process: consecutive images are copies of the same original, and the pool hands
    each worker consecutive images.
    """
    sp = SPECIES[species]
    rng = _rng(seed, species, f"original{original}")
    # The canvas is larger than the frame, so rotated and shifted copies never show its edge.
    width, height = int(frame[0] * MARGIN) + 2, int(frame[1] * MARGIN) + 2
    # Background: a lit tray with a gradient, like the Kaggle photos, in a random tone.
    # Each species' photos share a typical tray tone (as the Kaggle photos were shot in sessions),
    # with enough spread that the tone alone does not give the species away.
    base = sp.tray * TRAY_LEVEL + rng.normal(0, TRAY_SPREAD)
    tint = rng.normal(0, 8, 3)
    grad = np.linspace(-1, 1, width)[None, :] * rng.normal(0, GRADIENT)
    grad = grad + np.linspace(-1, 1, height)[:, None] * rng.normal(0, GRADIENT)
    # Blotches: light and shadow that make each original's tray its own, as in real photos.
    coarse = rng.normal(0, BLOTCH, (5, 7)).astype(np.float32)
    blotch = np.asarray(Image.fromarray(coarse, "F").resize((width, height), Image.BICUBIC))
    grad = grad + blotch
    bg = np.clip(base + tint[None, None, :] + grad[:, :, None], 0, 255).astype(np.uint8)
    photo = Image.fromarray(bg, "RGB")
    mask = Image.new("L", (width, height), 0)

    length = frame[0] * sp.length * FISH_SCALE * rng.uniform(0.85, 1.05)
    depth = sp.depth * rng.uniform(0.8, 1.2)
    hump = float(np.clip(sp.hump + rng.normal(0, 0.05), 0.2, 0.7))
    tone = _jitter(sp.tone, rng, 14)
    belly = _jitter(sp.belly, rng, 16)
    outline = _body_outline(length, depth, hump)

    # Draw the fish on its own layer, then rotate / flip / place it.
    layer_size = (int(length * 1.6) + 8, int(length * 1.6) + 8)
    cx, cy = layer_size[0] / 2, layer_size[1] / 2
    fish = Image.new("RGBA", layer_size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(fish)
    pts = [(cx + x, cy + y) for x, y in outline]
    body_depth = depth * length
    tail_x = cx - length / 2
    tail_h = body_depth * sp.tail * rng.uniform(0.7, 1.2)
    if species == "Shrimp":
        # A curled, segmented body with a fan tail instead of a fish outline.
        curl = rng.uniform(0.5, 1.1)
        for k in range(7):
            a = math.pi * (0.15 + curl * k / 7)
            r = length * 0.33
            x, y = cx + r * math.cos(a), cy - r * 0.6 + r * math.sin(a)
            rad = body_depth * (0.55 - 0.05 * k)
            draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=(*tone, 255))
            draw.arc([x - rad, y - rad, x + rad, y + rad], 200, 340, fill=(*belly, 255), width=3)
        a = math.pi * (0.15 + curl)
        x, y = cx + length * 0.33 * math.cos(a), cy - length * 0.2 + length * 0.33 * math.sin(a)
        draw.polygon(
            [(x, y), (x - tail_h, y + tail_h), (x + tail_h, y + tail_h)], fill=(*belly, 255)
        )
        for _ in range(2):  # antennae
            draw.line(
                [
                    (cx + length * 0.3, cy - length * 0.2),
                    (cx + length * rng.uniform(0.5, 0.75), cy - length * rng.uniform(0.3, 0.6)),
                ],
                fill=(*tone, 255),
                width=2,
            )
    else:
        draw.polygon(
            [
                (tail_x + length * 0.06, cy),
                (tail_x - tail_h * 0.8, cy - tail_h / 2),
                (tail_x - tail_h * 0.55, cy),
                (tail_x - tail_h * 0.8, cy + tail_h / 2),
            ],
            fill=(*tone, 255),
        )
        draw.polygon(pts, fill=(*tone, 255))
        # Lighter belly: the lower half of the outline shifted down.
        lower = [
            (cx + x, cy + abs(y) * 0.35 + body_depth * 0.08)
            for x, y in outline[len(outline) // 2 :]
        ]
        draw.polygon([(pts[0][0], cy + body_depth * 0.05), *lower], fill=(*belly, 255))
        # Dorsal fin.
        fx = cx + rng.uniform(-0.1, 0.1) * length
        draw.polygon(
            [
                (fx - length * 0.12, cy - body_depth * 0.42),
                (fx, cy - body_depth * 0.75),
                (fx + length * 0.08, cy - body_depth * 0.45),
            ],
            fill=(*tone, 255),
        )
        _pattern(draw, sp.pattern, rng, cx, cy, length, body_depth, tone)
        eye = body_depth * 0.09 + 2
        ex, ey = cx + length * 0.36, cy - body_depth * 0.1
        draw.ellipse([ex - eye, ey - eye, ex + eye, ey + eye], fill=(20, 20, 20, 255))
        draw.ellipse(
            [ex - eye * 1.5, ey - eye * 1.5, ex + eye * 1.5, ey + eye * 1.5],
            outline=(230, 230, 230, 255),
            width=2,
        )
    fish = fish.filter(ImageFilter.BoxBlur(rng.uniform(0.2, 0.8)))
    # The pose of the original: a tilt, a facing, an off-centre placement.
    fish = fish.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR, expand=False)
    if rng.random() < 0.5:
        fish = fish.transpose(Image.FLIP_LEFT_RIGHT)
    ox = int(width / 2 - cx + rng.uniform(-0.06, 0.06) * frame[0])
    oy = int(height / 2 - cy + rng.uniform(-0.06, 0.06) * frame[1])
    # Soft shadow first, as on a lit tray.
    shadow_alpha = fish.getchannel("A").point(lambda a: int(a * 0.35))
    shadow = Image.new("RGBA", fish.size, (0, 0, 0, 0))
    shadow.putalpha(shadow_alpha.filter(ImageFilter.BoxBlur(2)))
    shift = max(1, round(frame[0] / 100))
    photo.paste(shadow, (ox + 2 * shift, oy + 3 * shift), shadow)
    photo.paste(fish, (ox, oy), fish)
    mask.paste(255, (ox, oy), fish.getchannel("A").point(lambda a: 255 if a > 127 else 0))
    arr = np.asarray(photo, dtype=np.float32)
    # Contrast about the tray's own tone: strong edges and patterns, as in the real photos.
    tray = np.median(arr.reshape(-1, 3), axis=0)
    arr = np.clip(tray + (arr - tray) * CONTRAST, 0, 255)
    return arr, np.asarray(mask)


def render(
    species: str, index: int, seed: int, size: tuple[int, int]
) -> tuple[Image.Image, Image.Image]:
    """One RGB photo and its binary mask, as pure functions of their arguments.

    A copy of original ``original_of(index)``: flipped, rotated, cropped (zoom and shift) and
    relit, as the Kaggle set multiplied its originals.
    """
    frame = _draw_size(size)
    base, base_mask = _original(species, original_of(index), seed, frame)
    rng = _rng(seed, species, index)
    flip_h = -1.0 if rng.random() < 0.5 else 1.0
    flip_v = -1.0 if rng.random() < AUGMENT.flip_v else 1.0
    angle = math.radians(rng.uniform(-AUGMENT.angle, AUGMENT.angle))
    zoom = rng.uniform(1 - AUGMENT.zoom, 1 + AUGMENT.zoom)
    sx, sy = rng.uniform(-AUGMENT.shift, AUGMENT.shift, 2) * frame
    # Lighting: a global gain and a slightly tinted offset. No per-pixel grain: it vanishes in a
    # 59x45 input anyway, and noise is what makes PNGs slow to write and read.
    gain = rng.uniform(1 - AUGMENT.gain, 1 + AUGMENT.gain)
    offset = rng.normal(0, AUGMENT.offset) + rng.normal(0, AUGMENT.offset / 3, 3)
    lit = np.clip(base * gain + offset, 0, 255).astype(np.uint8)

    # The copy is resampled at the drawing scale, then scaled up once: output pixel (x, y) ->
    # canvas point by centring, flipping, rotating, zooming and shifting.
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    m = np.array([[cos, -sin], [sin, cos]]) @ np.diag([flip_h, flip_v])
    centre = np.array([base.shape[1] / 2 + sx, base.shape[0] / 2 + sy])
    c = centre - m @ np.array([frame[0] / 2, frame[1] / 2])
    coeffs = (m[0, 0], m[0, 1], c[0], m[1, 0], m[1, 1], c[1])
    fill = tuple(int(v) for v in lit[0, 0])
    photo = Image.fromarray(lit, "RGB").transform(
        frame, Image.AFFINE, coeffs, Image.BILINEAR, fillcolor=fill
    )
    mask = Image.fromarray(base_mask, "L").transform(frame, Image.AFFINE, coeffs, Image.BILINEAR)
    mask = mask.point(lambda a: 255 if a > 127 else 0)
    if frame != size:
        photo = photo.resize(size, Image.BILINEAR)
        mask = mask.resize(size, Image.NEAREST)  # a bilinear mask would need thresholding again
    return photo, mask


def _pattern(
    draw: ImageDraw.ImageDraw,
    kind: str,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    length: float,
    depth: float,
    tone: tuple[int, int, int],
) -> None:
    dark = (*(max(0, int(c * 0.45)) for c in tone), 255)
    light = (240, 215, 90, 255)
    if kind == "stripes":
        for k in range(3):
            y = cy - depth * 0.25 + k * depth * 0.17
            draw.line(
                [(cx - length * 0.35, y), (cx + length * 0.3, y)],
                fill=light,
                width=max(2, int(depth * 0.06)),
            )
    elif kind == "line":
        draw.line(
            [(cx - length * 0.42, cy), (cx + length * 0.3, cy - depth * 0.12)],
            fill=dark,
            width=max(2, int(depth * 0.05)),
        )
    elif kind == "band":
        x = cx + length * 0.3
        draw.line(
            [(x, cy - depth * 0.35), (x, cy - depth * 0.05)],
            fill=light,
            width=max(3, int(depth * 0.1)),
        )
        for k in range(5):
            y = cy - depth * 0.3 + k * depth * 0.1
            draw.line([(cx - length * 0.3, y), (cx + length * 0.2, y)], fill=dark, width=1)
    elif kind in ("spots", "spots_dark"):
        colour = dark if kind == "spots_dark" else (120, 150, 230, 255)
        for _ in range(int(rng.integers(12, 30))):
            x = cx + rng.uniform(-0.35, 0.3) * length
            y = cy + rng.uniform(-0.35, 0.1) * depth
            r = rng.uniform(1.5, 3.5) * depth / 60 + 1
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _write_one(
    args: tuple[Path, str, int, int, tuple[int, int], tuple[int, int] | None],
) -> tuple[str, np.ndarray] | None:
    root, species, index, seed, size, features = args
    photo, mask = render(species, index, seed, size)
    name = file_name(index)
    (root / species / species / name).write_bytes(encode_png(photo))
    (root / species / f"{species} GT" / name).write_bytes(encode_png(mask))
    if features is None:
        return None
    # The photo as the loader will read it back: PNG is lossless, so this is what decoding the
    # file would give, without reading it again.
    return f"{species}/{species}/{name}", to_gray_array(photo, features).reshape(-1)


def generate(out: Path, **options: Any) -> Path:
    """Write the set to ``out/Fish_Dataset`` atomically and return that folder (the options
    of ``generate_with_features`` but ``features``)."""
    return generate_with_features(out, **options)[0]


def generate_with_features(
    out: Path,
    *,
    per_class: int = 300,
    size: tuple[int, int] = (590, 445),
    seed: int = 0,
    species: tuple[str, ...] = KAGGLE_SPECIES,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    features: tuple[int, int] | None = None,
) -> tuple[Path, dict[str, np.ndarray] | None]:
    """Write the set to ``out/Fish_Dataset`` and return that folder; with ``features`` (a
    feature size), also each photo's feature vector by its path under the set, computed from
    the image in memory: a fresh set then needs no decoding pass (about as long as writing
    it). None when the set already existed.

    The set is built in a temporary sibling folder and renamed into place, so an interrupted run
    never leaves a half-written set that a later run would mistake for a complete one.
    """
    final = out / "Fish_Dataset"
    if final.is_dir():
        return final, None
    vectors: dict[str, np.ndarray] = {}
    # Built in a temporary sibling and renamed into place; a ``--jobs`` sibling that wrote the
    # same set first (same seed, same bytes) wins the rename, and its copy serves as well.
    with atomic_dir(final) as tmp:
        for sp in species:
            (tmp / sp / sp).mkdir(parents=True)
            (tmp / sp / f"{sp} GT").mkdir(parents=True)
        jobs = [(tmp, sp, i, seed, size, features) for sp in species for i in range(per_class)]
        workers = workers or min(len(jobs), os.cpu_count() or 1)
        with contextlib.ExitStack() as stack:
            if workers <= 1 or len(jobs) < 32:
                results = map(_write_one, jobs)
            else:
                pool = stack.enter_context(ProcessPoolExecutor(workers))
                results = pool.map(_write_one, jobs, chunksize=COPIES_PER_ORIGINAL)
            for done, result in enumerate(results, 1):
                if result is not None:
                    vectors[result[0]] = result[1]
                if progress:
                    progress(done, len(jobs))
    return final, (vectors if features is not None else None)
