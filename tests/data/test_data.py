"""Data sources, decoding of awkward files, caching and the stratified split."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fishopt import data
from fishopt.errors import FishoptError


def _write(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _folder_set(root: Path, classes: dict[str, int], size=(30, 20)) -> Path:
    rng = np.random.default_rng(0)
    for k, (name, n) in enumerate(classes.items()):
        for i in range(n):
            arr = np.clip(rng.normal(60 + 60 * k, 20, (size[1], size[0])), 0, 255)
            _write(root / name / f"{i}.png", Image.fromarray(arr.astype(np.uint8)))
    return root


def test_kaggle_layout_accepted_at_every_level_and_masks_ignored(tiny_fish: Path) -> None:
    top = tiny_fish.parent
    for path in (top, tiny_fish):
        spec = data.parse_source(str(path))
        assert spec.kind == "kaggle"
        listing = data.list_images(spec)
        assert listing.classes == sorted(listing.classes)
        assert len(listing.classes) == 9
        assert len(listing.files) == 9 * 12
        assert not any(" GT" in str(p.parent.name) for p in listing.files)


def test_kaggle_doubled_folder_and_na_fish_dataset(tmp_path: Path, tiny_fish: Path) -> None:
    # The archive unpacks to Fish_Dataset/Fish_Dataset/<Species>/..., with NA_Fish_Dataset beside.
    root = tmp_path / "download"
    shutil.copytree(tiny_fish, root / "Fish_Dataset" / "Fish_Dataset")
    _write(root / "NA_Fish_Dataset" / "Trout" / "x.png", Image.new("L", (8, 8)))
    spec = data.parse_source(str(root))
    assert spec.kind == "kaggle"
    assert data.find_kaggle_root(root) == root / "Fish_Dataset" / "Fish_Dataset"
    assert len(data.list_images(spec).files) == 9 * 12


def test_class_per_folder_any_extension(tmp_path: Path) -> None:
    root = _folder_set(tmp_path / "set", {"b": 4, "a": 4})
    Image.new("RGB", (30, 20), (200, 10, 10)).save(root / "a" / "extra.jpg")
    (root / "a" / "notes.txt").write_text("not an image")
    spec = data.parse_source(str(root))
    assert spec.kind == "folder"
    listing = data.list_images(spec)
    assert listing.classes == ["a", "b"]
    assert len(listing.files) == 9


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: p.mkdir(), "no class folders"),
        (lambda p: _folder_set(p, {"only": 5}), "only one class"),
        (lambda p: (_folder_set(p, {"a": 5, "b": 5}), (p / "c").mkdir()), "has no images"),
    ],
)
def test_bad_folders_are_refused_with_the_reason(tmp_path: Path, make, message: str) -> None:
    target = tmp_path / "data"
    make(target)
    with pytest.raises(FishoptError, match=message):
        data.list_images(data.parse_source(str(target)))


def test_unreadable_files_are_skipped_with_examples_or_refused_when_strict(
    tmp_path: Path, cache: Path
) -> None:
    root = _folder_set(tmp_path / "set", {"a": 5, "b": 5})
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "text.png").write_text("this is not a png")
    good = (root / "b" / "0.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(good[: len(good) // 2])
    ds, hit = data.load(data.parse_source(str(root)), cache, (15, 10))
    assert not hit
    assert len(ds.y) == 10
    assert len(ds.skipped) == 3
    assert any("zero.png" in s for s in ds.skipped)
    with pytest.raises(FishoptError, match="3 of 13 files are not readable"):
        data.load(data.parse_source(str(root)), cache, (15, 10), strict=True)


def test_modes_convert_correctly(tmp_path: Path) -> None:
    size = (16, 12)
    gray16 = Image.fromarray(np.full((12, 16), 32768, dtype=np.uint16))
    p16 = _write(tmp_path / "g16.png", gray16)
    rgb = Image.new("RGB", size, (120, 120, 120))
    rgba = rgb.convert("RGBA")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    transparent = Image.new("RGBA", size, (0, 0, 0, 0))
    v16 = data.decode(p16, size)
    assert Image.open(p16).mode.startswith("I")
    assert np.allclose(v16, 0.5, atol=0.01), "16-bit mid-grey must stay mid-grey, not white"
    v_rgb = data.decode(_write(tmp_path / "rgb.png", rgb), size)
    assert np.allclose(data.decode(_write(tmp_path / "rgba.png", rgba), size), v_rgb)
    assert np.allclose(data.decode(_write(tmp_path / "p.png", palette), size), v_rgb, atol=0.01)
    assert np.allclose(data.decode(_write(tmp_path / "t.png", transparent), size), 1.0)
    assert v_rgb.shape == (16 * 12,)
    assert v_rgb.min() >= 0.0 and v_rgb.max() <= 1.0


def test_cache_is_hit_the_second_time_and_keyed_by_settings(tiny_fish: Path, cache: Path) -> None:
    spec = data.parse_source(str(tiny_fish))
    first, hit1 = data.load(spec, cache, (20, 15))
    second, hit2 = data.load(spec, cache, (20, 15))
    other, hit3 = data.load(spec, cache, (10, 8))
    assert (hit1, hit2, hit3) == (False, True, False)
    assert first.fingerprint == second.fingerprint != other.fingerprint
    assert np.array_equal(np.asarray(first.X), np.asarray(second.X))
    assert other.X.shape == (108, 80)


def test_digits_source() -> None:
    ds, _ = data.load(data.parse_source("digits"), Path("/nonexistent"))
    assert ds.X.shape == (1797, 64)
    assert len(ds.classes) == 10
    assert ds.X.min() >= 0 and ds.X.max() <= 1


def test_split_is_stratified_disjoint_and_seeded() -> None:
    y = np.repeat(np.arange(9), 1000)
    s = data.split(y, (0.9, 0.09, 0.01), seed=3)
    assert [len(s.train), len(s.valid), len(s.test)] == [8100, 810, 90]
    for part, n in ((s.train, 900), (s.valid, 90), (s.test, 10)):
        assert np.all(np.bincount(y[part]) == n)
    assert not set(s.train) & set(s.valid) and not set(s.valid) & set(s.test)
    again = data.split(y, (0.9, 0.09, 0.01), seed=3)
    other = data.split(y, (0.9, 0.09, 0.01), seed=4)
    assert np.array_equal(s.valid, again.valid) and not np.array_equal(s.valid, other.valid)


def test_split_of_a_tiny_set_keeps_every_class_everywhere() -> None:
    y = np.repeat(np.arange(9), 12)
    s = data.split(y)
    for part in (s.train, s.valid, s.test):
        assert set(y[part]) == set(range(9))
    with pytest.raises(FishoptError, match="at least 3"):
        data.split(np.array([0, 0, 1, 1, 1]))


def test_group_split_keeps_every_group_whole_and_stratifies() -> None:
    # 9 classes x 30 originals x 10 copies, shuffled so groups are not contiguous.
    rng = np.random.default_rng(0)
    order = rng.permutation(2700)
    groups = np.repeat(np.arange(270), 10)[order]
    y = groups // 30
    s = data.split(y, (0.9, 0.09, 0.01), seed=5, groups=groups)
    parts = (s.train, s.valid, s.test)
    assert sorted(np.concatenate(parts).tolist()) == list(range(2700))
    seen = [set(groups[part]) for part in parts]
    assert not seen[0] & seen[1] and not seen[1] & seen[2] and not seen[0] & seen[2]
    for part in parts:
        assert set(y[part]) == set(range(9))
    # Per class: 3 originals (closest to 9% of 300 images) to valid, 1 to test.
    assert [len(s.train), len(s.valid), len(s.test)] == [2340, 270, 90]
    assert s.describe()["groups"] == 270
    again = data.split(y, (0.9, 0.09, 0.01), seed=5, groups=groups)
    other = data.split(y, (0.9, 0.09, 0.01), seed=6, groups=groups)
    assert np.array_equal(s.valid, again.valid) and not np.array_equal(s.valid, other.valid)
    plain = data.split(y, (0.9, 0.09, 0.01), seed=5)
    assert "groups" not in plain.describe()
    assert set(groups[plain.valid]) & set(groups[plain.train])  # what grouping prevents


def test_group_split_needs_enough_originals_per_class() -> None:
    y = np.repeat(np.arange(2), 20)
    groups = np.repeat(np.arange(4), 10)  # two originals per class
    with pytest.raises(FishoptError, match="at least 3 per class"):
        data.split(y, (0.9, 0.09, 0.01), groups=groups)
    s = data.split(y, (0.8, 0.2, 0.0), groups=groups)
    assert len(s.test) == 0 and set(y[s.valid]) == {0, 1}


def test_groups_come_from_synthetic_file_names_and_are_cached(
    tmp_path: Path, tiny_fish: Path, cache: Path
) -> None:
    ds, hit = data.load(data.parse_source(str(tiny_fish)), cache, (30, 22))
    assert not hit and ds.groups is not None and len(ds.groups) == len(ds.y)
    again, hit = data.load(data.parse_source(str(tiny_fish)), cache, (30, 22))
    assert hit and np.array_equal(again.groups, ds.groups)
    # Kaggle-style names with no original in them (the real set): no groups.
    plain = _folder_set(tmp_path / "plain", {"a": 4, "b": 4})
    ds, _ = data.load(data.parse_source(str(plain)), cache, (30, 22))
    assert ds.groups is None


def test_choose_source_prefers_flag_then_existing_env_then_synthetic(tmp_path: Path) -> None:
    spec, how = data.choose_source(None, None)
    assert spec.kind == "synthetic" and "no --data" in how
    spec, how = data.choose_source(None, str(tmp_path / "missing"))
    assert spec.kind == "synthetic" and "does not exist" in how
    spec, _ = data.choose_source("digits", str(tmp_path / "missing"))
    assert spec.kind == "digits"
    with pytest.raises(FishoptError, match="no such file"):
        data.choose_source(str(tmp_path / "missing"), None)
    spec = data.parse_source("synthetic:20:118x89:5")
    assert (spec.per_class, spec.size, spec.seed) == (20, (118, 89), 5)
