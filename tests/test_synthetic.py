"""The synthetic fish set: Kaggle layout, deterministic, species that differ."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fishopt import data
from fishopt.data import synthetic


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_kaggle_layout_with_masks(tiny_fish: Path) -> None:
    assert tiny_fish.name == "Fish_Dataset"
    for species in synthetic.KAGGLE_SPECIES:
        photos = sorted((tiny_fish / species / species).glob("*.png"))
        masks = sorted((tiny_fish / species / f"{species} GT").glob("*.png"))
        assert len(photos) == len(masks) == 12
        assert [p.name for p in photos] == [m.name for m in masks]


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path, tiny_fish: Path) -> None:
    again = synthetic.generate(tmp_path / "a", per_class=12, size=(118, 89), seed=1, workers=2)
    other = synthetic.generate(tmp_path / "b", per_class=12, size=(118, 89), seed=2, workers=1)
    assert _digest(again) == _digest(tiny_fish)
    assert _digest(other) != _digest(tiny_fish)


def test_masks_cover_the_fish_and_species_differ(tiny_fish: Path, cache: Path) -> None:
    _photo, mask = synthetic.render("Trout", 0, 0, (236, 178))
    m = np.asarray(mask)
    assert set(np.unique(m)) <= {0, 255}
    assert 0.02 < (m > 0).mean() < 0.6
    ds, _ = data.load(data.parse_source(str(tiny_fish)), cache, (30, 22))
    means = np.stack([np.asarray(ds.X)[ds.y == k].mean(0) for k in range(9)])
    distances = np.linalg.norm(means[:, None] - means[None], axis=2)
    assert distances[~np.eye(9, dtype=bool)].min() > 0.1


def test_data_synth_command_writes_the_layout(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "fishopt.cli",
            "data",
            "synth",
            "--out",
            str(tmp_path),
            "--per-class",
            "3",
            "--size",
            "59x45",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    assert len(list((tmp_path / "Fish_Dataset").rglob("*.png"))) == 9 * 3 * 2


def test_fetch_without_credentials_says_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
    env.update(HOME=str(tmp_path), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "fishopt.cli", "data", "fetch"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Kaggle credentials" in proc.stderr or "kagglehub is not installed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
