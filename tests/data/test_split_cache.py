"""A split kept in the cache is the split scikit-learn makes, read back without making it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from fishopt.data import split_cache
from fishopt.data.split import Split, split
from fishopt.data.split_cache import kept_split

Y = np.repeat(np.arange(4), 30)


def _same(a: Split, b: Split) -> None:
    for part in ("train", "valid", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part)), part
    assert (a.fractions, a.seed, a.groups) == (b.fractions, b.seed, b.groups)


def test_a_kept_split_is_read_back_not_made_again(tmp_path: Path, monkeypatch) -> None:
    made = kept_split(tmp_path, "fp", Y, (0.8, 0.1, 0.1), seed=3)
    _same(made, split(Y, (0.8, 0.1, 0.1), seed=3))

    def refuse(*_a, **_k):
        raise AssertionError("made again")

    monkeypatch.setattr(split_cache, "split", refuse)
    _same(kept_split(tmp_path, "fp", Y, (0.8, 0.1, 0.1), seed=3), made)
    for other in ({"seed": 4}, {"fingerprint": "other"}, {"fractions": (0.7, 0.2, 0.1)}):
        args = {"fingerprint": "fp", "fractions": (0.8, 0.1, 0.1), "seed": 3} | other
        with pytest.raises(AssertionError, match="made again"):
            kept_split(tmp_path, args["fingerprint"], Y, args["fractions"], args["seed"])


def test_a_damaged_or_foreign_file_is_made_again_and_an_unwritable_cache_costs_nothing(
    tmp_path: Path,
) -> None:
    made = kept_split(tmp_path, "fp", Y, (0.8, 0.1, 0.1), seed=0)
    (kept,) = (tmp_path / "splits").iterdir()
    kept.write_bytes(b"not a split")
    _same(kept_split(tmp_path, "fp", Y, (0.8, 0.1, 0.1), seed=0), made)
    # a file from other data of another size under the same key: refused, made again
    small = split(Y[:60], (0.8, 0.1, 0.1), seed=0)
    kept.write_bytes(split_cache._encode(small))
    _same(kept_split(tmp_path, "fp", Y, (0.8, 0.1, 0.1), seed=0), made)
    not_a_folder = tmp_path / "file"  # even root cannot make a folder under a file
    not_a_folder.write_text("")
    _same(kept_split(not_a_folder / "cache", "fp", Y, (0.8, 0.1, 0.1), seed=0), made)


def test_a_worker_with_a_warm_cache_never_imports_scikit_learn_or_scipy(tmp_path: Path) -> None:
    """What the cache is for: a worker's start without scikit-learn or scipy (about 2 s of CPU),
    even one that creates its study and writes the dashboard's note for it."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    args = ["depth", "--data", "digits", "--n-trials", "1", "--epochs", "1"]
    args += ["--storage", storage, "--cache-dir", str(tmp_path), "--threads", "1"]
    probe = (
        "import sys, runpy; sys.argv = ['fishopt', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('fishopt.cli', run_name='__main__')\n"
        "finally:\n    print(*(m in sys.modules for m in ('sklearn', 'scipy')), file=sys.stderr)\n"
    )
    first = subprocess.run([sys.executable, "-c", probe, "study", *args], capture_output=True)
    assert first.returncode == 0, first.stderr.decode()
    assert first.stderr.decode().splitlines()[-1] == "True True"  # made the split, loaded digits
    # Another study on the same data: a new study, its note, a trial, and neither library.
    again = subprocess.run(
        [sys.executable, "-c", probe, "worker", *args, "--name", "again"], capture_output=True
    )
    assert again.returncode == 0, again.stderr.decode()
    assert again.stderr.decode().splitlines()[-1] == "False False"
    from optuna_dashboard import get_note  # here: importing it costs a collecting process 2.7 s

    st = optuna.load_study(study_name="again", storage=storage)
    assert "again" in get_note(st) and len(st.trials) == 1
