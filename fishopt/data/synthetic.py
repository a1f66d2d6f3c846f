"""The built-in synthetic fish set, written in the Kaggle "A Large Scale Fish Dataset" layout.

The real data cannot be downloaded everywhere, so fishopt carries a generator whose output the
real loader reads unchanged: ``Fish_Dataset/<Species>/<Species>/*.png`` beside
``<Species> GT/*.png`` masks. Species differ in body shape, proportions, tone and pattern; pose,
scale, flip, background, lighting and noise vary per image, and the species' ranges overlap, so a
small grayscale MLP neither fails nor saturates. Every image is a pure function of
(seed, species, index), so the set is reproducible and can be generated in parallel.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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


def _rng(seed: int, species: str, index: int) -> np.random.Generator:
    # A hash rather than seed+index arithmetic, so neighbouring seeds give unrelated sets.
    digest = hashlib.sha256(f"{seed}/{species}/{index}".encode()).digest()
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


def render(
    species: str, index: int, seed: int, size: tuple[int, int]
) -> tuple[Image.Image, Image.Image]:
    """One RGB photo and its binary mask, as pure functions of their arguments."""
    sp = SPECIES[species]
    rng = _rng(seed, species, index)
    # Draw at half resolution and scale up: 4x less drawing work, and the photos' fine detail
    # is far below what a 59x45 classifier input keeps anyway.
    width, height = (size[0] + 1) // 2, (size[1] + 1) // 2
    # Background: a lit tray with a gradient, like the Kaggle photos, in a random tone.
    # Each species' photos share a typical tray tone (as the Kaggle photos were shot in sessions),
    # with enough spread that the tone alone does not give the species away.
    base = sp.tray + rng.normal(0, 8)
    tint = rng.normal(0, 8, 3)
    grad = np.linspace(-1, 1, width)[None, :] * rng.normal(0, 10)
    grad = grad + np.linspace(-1, 1, height)[:, None] * rng.normal(0, 10)
    bg = np.clip(base + tint[None, None, :] + grad[:, :, None], 0, 255).astype(np.uint8)
    photo = Image.fromarray(bg, "RGB")
    mask = Image.new("L", (width, height), 0)

    length = width * sp.length * rng.uniform(0.85, 1.05)
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

    angle = rng.uniform(-10, 10)
    fish = fish.rotate(angle, resample=Image.BILINEAR, expand=False)
    if rng.random() < 0.5:
        fish = fish.transpose(Image.FLIP_LEFT_RIGHT)
    ox = int(width / 2 - cx + rng.uniform(-0.04, 0.04) * width)
    oy = int(height / 2 - cy + rng.uniform(-0.04, 0.04) * height)
    # Soft shadow first, as on a lit tray.
    shadow_alpha = fish.getchannel("A").point(lambda a: int(a * 0.35))
    shadow = Image.new("RGBA", fish.size, (0, 0, 0, 0))
    shadow.putalpha(shadow_alpha.filter(ImageFilter.BoxBlur(3)))
    photo.paste(shadow, (ox + 4, oy + 5), shadow)
    photo.paste(fish, (ox, oy), fish)
    mask.paste(255, (ox, oy), fish.getchannel("A").point(lambda a: 255 if a > 127 else 0))

    photo = photo.resize(size, Image.BILINEAR)
    mask = mask.resize(size, Image.NEAREST)
    width, height = size
    # Lighting and sensor noise: a global gain and offset, then Gaussian grain.
    arr = np.asarray(photo, dtype=np.float32)
    arr = arr * rng.uniform(0.9, 1.1) + rng.normal(0, 6)
    grain = rng.normal(0, rng.uniform(4, 16), (height // 2 + 1, width // 2 + 1, 1)).astype(
        np.float32
    )
    arr += np.repeat(np.repeat(grain, 2, 0), 2, 1)[:height, :width]
    photo = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
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


def _write_one(args: tuple[Path, str, int, int, tuple[int, int]]) -> None:
    root, species, index, seed, size = args
    photo, mask = render(species, index, seed, size)
    name = f"{index + 1:05d}.png"
    photo.save(root / species / species / name, compress_level=1)
    mask.save(root / species / f"{species} GT" / name, compress_level=1)


def generate(
    out: Path,
    *,
    per_class: int = 300,
    size: tuple[int, int] = (590, 445),
    seed: int = 0,
    species: tuple[str, ...] = KAGGLE_SPECIES,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the set to ``out/Fish_Dataset`` atomically and return that folder.

    The set is built in a temporary sibling folder and renamed into place, so an interrupted run
    never leaves a half-written set that a later run would mistake for a complete one.
    """
    final = out / "Fish_Dataset"
    if final.is_dir():
        return final
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fish-tmp-", dir=out))
    try:
        for sp in species:
            (tmp / sp / sp).mkdir(parents=True)
            (tmp / sp / f"{sp} GT").mkdir(parents=True)
        jobs = [(tmp, sp, i, seed, size) for sp in species for i in range(per_class)]
        workers = workers or min(len(jobs), os.cpu_count() or 1)
        done = 0
        if workers <= 1 or len(jobs) < 32:
            for job in jobs:
                _write_one(job)
                done += 1
                if progress:
                    progress(done, len(jobs))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_write_one, jobs, chunksize=16):
                    done += 1
                    if progress:
                        progress(done, len(jobs))
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
