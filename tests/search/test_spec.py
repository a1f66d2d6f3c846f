"""Study specs: the shipped ones load, and every mistake is refused with file, key and choices."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from worker_support import REPO

from fishopt.errors import FishoptError
from fishopt.search import space, spec

SHIPPED = ("optimizers", "widths", "depth", "full")


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_load(name: str) -> None:
    s = spec.load(name)
    assert s.name == name and s.kind == name
    assert s.description
    if s.sampler["name"] == "grid":
        assert space.grid_size(s) >= 7


def test_optimizers_spec_is_the_seed_comparison() -> None:
    s = spec.load("optimizers")
    assert set(s.space["optimizer"]) == {
        "SGD",
        "Adam",
        "AdamW",
        "Adamax",
        "NAdam",
        "RAdam",
        "Adagrad",
        "Adadelta",
        "RMSprop",
        "Rprop",
        "ASGD",
    }
    assert "lr" not in s.space and "lr" not in s.fixed  # torch defaults, as the seed used
    assert s.repeats >= 3
    assert space.grid_size(s) == 11 * s.repeats


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epochs = 3\nbogus = 1\n", r"mine.toml: bogus: unknown key; allowed: .*description"),
        (
            '[space]\noptimizer = ["Adamm"]\n',
            r"space.optimizer: unknown optimizer 'Adamm'; known: SGD",
        ),
        ('[space]\noptimizer = ["SparseAdam"]\n', r"SparseAdam only accepts sparse gradients"),
        ("[space]\nlr = { low = 0.1, high = 0.01 }\n", r"space.lr: empty range"),
        ("[space]\nunits = []\n", r"space.units: empty list of choices"),
        ("[space]\nwidth = [1]\n", r"space.width: unknown parameter; allowed: .*units"),
        ('[sampler]\nname = "bayes"\n', r"sampler.name: unknown sampler 'bayes'; allowed: tpe"),
        ('[pruner]\nname = "early"\n', r"pruner.name: unknown pruner 'early'; allowed: median"),
        ("epochs = 0\n", r"epochs: must be an integer >= 1"),
        ('[sampler]\nname = "grid"\n[space]\nlr = { low = 0.001, high = 0.1 }\n', r"grid sampler"),
        ("split = [0.5, 0.2, 0.1]\n", r"split: must be"),
        ("[fixed]\nhidden = [0]\n", r"fixed.hidden: must be a list of positive widths"),
        ("epochs = [\n", r"malformed TOML"),
    ],
)
def test_bad_specs_are_refused_naming_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(FishoptError, match=match):
        spec.load(_write(tmp_path, text))


def test_unknown_study_name_lists_known_ones() -> None:
    with pytest.raises(
        FishoptError, match=r"unknown study 'optimisers'; known studies: .*optimizers"
    ):
        spec.load("optimisers")


def test_fingerprint_ignores_budget_but_not_training_settings() -> None:
    s = spec.load("optimizers")
    assert s.with_overrides(n_trials=99).fingerprint() == s.fingerprint()
    assert s.with_overrides(epochs=s.epochs + 1).fingerprint() != s.fingerprint()
    assert s.with_overrides(seed=7).fingerprint() != s.fingerprint()


@pytest.mark.slow
def test_specs_ship_inside_the_wheel(tmp_path: Path) -> None:
    root = REPO
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("fishopt-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in SHIPPED:
        assert f"fishopt/_studies/{name}.toml" in names


def test_widths_grid_trains_each_network_once() -> None:
    """One hidden layer is the same network whether its pattern is constant or decreasing."""
    from fishopt.search.samplers import make_sampler

    s = spec.load("widths")
    full, distinct = space.grid_size(s, distinct=False), space.grid_size(s)
    assert (full, distinct) == (7 * 2 * 2 * 2, 7 * 2 + 7 * 2 * 2)  # 1-layer patterns merged
    sampler = make_sampler(s)
    points = [dict(zip(sampler._param_names, g, strict=True)) for g in sampler._all_grids]
    assert len(points) == distinct
    assert len({space.network_key(p, s) for p in points}) == distinct
    assert make_sampler(s, distinct_grid=False)._n_min_trials == full  # studies made before
