"""Tiny, fast fixtures shared by the tests: a small synthetic fish set and a temp cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from fishopt import synthetic

TINY_SIZE = (118, 89)  # 1/5 of the Kaggle photo size: same aspect, fast to write


@pytest.fixture(scope="session")
def tiny_fish(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9-species synthetic set in the Kaggle layout, 12 photos per species."""
    out = tmp_path_factory.mktemp("fish")
    return synthetic.generate(out, per_class=12, size=TINY_SIZE, seed=1, workers=1)


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"
