"""A full disk under the artifact store and the data cache: the study goes on, says so in one
line, leaves nothing half-written that looks valid, and export-best says what is missing.

The slow test mounts a real tmpfs too small for anything fishopt writes there (it needs root and
the right to mount: without them it is skipped, or fails in CI; the fast tests below, which make
the store's write fail with ENOSPC in-process, cover the same code).
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import BinaryIO

import numpy as np
import optuna
import pytest
from conftest import run_cli
from needs import require
from optuna.trial import TrialState
from worker_support import check_study, spec_file

from fishopt.bundle import artifacts, export
from fishopt.storage.connect import open_storage
from fishopt.training.model import MLPSpec, build_mlp


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 KiB tmpfs: one page, too small for a decoded set or a model's weights."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        require("tmpfs", f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_costs_the_weights_and_the_cache_not_the_study(
    full_disk: Path, tiny_fish: Path, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'full.db'}"
    spec = spec_file(tmp_path, epochs=2, n_trials=3, name="full")
    run = run_cli(
        "study", str(spec), "--data", str(tiny_fish), "--storage", storage, "--threads", "1",
        "--cache-dir", str(full_disk / "cache"), "--artifacts-dir", str(full_disk / "artifacts"),
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Traceback" not in out, out
    assert "decoded images not cached: " in out and " space " in out, out
    assert "weights not kept: No space left on device" in out, out
    assert "warning: best trial" in out and "export-best --retrain" in out, out
    st = optuna.load_study(study_name="full", storage=open_storage(storage, heartbeat=False))
    check_study(st.trials, budget=3)  # every trial COMPLETE, curves whole
    # Nothing half-written is left, and nothing points at a file that is not there. The split
    # (a few hundred bytes) may fit where the arrays did not; then it is whole.
    left = [p for p in full_disk.rglob("*") if p.is_file()]
    assert all(p.parent == full_disk / "cache" / "splits" for p in left), left
    for kept in left:
        with np.load(kept) as whole:
            assert set(whole.files) == {"train", "valid", "test", "meta"}
    assert not (full_disk / "cache" / "arrays").exists() or not any(
        (full_disk / "cache" / "arrays").iterdir()
    )
    for t in st.trials:
        assert artifacts.ATTR not in t.user_attrs
        assert optuna.artifacts.get_all_artifact_meta(t, storage=st._storage) == []
    export_run = run_cli(
        "export-best", "full", "--storage", storage, "--out", str(tmp_path / "bundle"),
        "--artifacts-dir", str(full_disk / "artifacts"),
    )  # fmt: skip
    assert export_run.returncode == 2, export_run.stdout + export_run.stderr
    message = export_run.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "weights: they were not kept (No space left on device" in message
    assert "--retrain" in message


class _FullStore(artifacts.AtomicFileSystemArtifactStore):
    """The store on a disk that fills up partway through a file."""

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        def fill(*_args: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        super().write(artifact_id, SimpleNamespace(read=fill))  # type: ignore[arg-type]


def test_enospc_mid_write_keeps_the_trial_and_registers_no_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "open_store", _FullStore)
    lines: list[str] = []
    hook = artifacts.keep_best(tmp_path / "store", lines.append)
    st = optuna.create_study(
        study_name="enospc",
        direction="maximize",
        storage=open_storage(f"sqlite:///{tmp_path / 'e.db'}", heartbeat=False),
    )
    spec = MLPSpec(6, (4,), 3)
    trial = st.ask()
    hook(trial, spec, SimpleNamespace(state=build_mlp(spec).state_dict(), best_valid_f1=0.5))
    st.tell(trial, 0.5)
    [t] = st.trials
    assert t.state == TrialState.COMPLETE
    assert lines == [
        f"warning: trial 0: weights not kept: No space left on device ({tmp_path / 'store'}); "
        "the trial goes on"
    ]
    assert artifacts.ATTR not in t.user_attrs
    assert optuna.artifacts.get_all_artifact_meta(t, storage=st._storage) == []
    assert [p.name for p in (tmp_path / "store").iterdir()] == []  # the temp file is gone
    assert artifacts.best_not_kept(st.trials) == (t, t.user_attrs["model_artifact_error"])
    with pytest.raises(Exception, match=r"not kept \(No space left on device"):
        export.best_trial(st, retrain=False)

    # Space again: the next better trial keeps its weights, registered once its file is whole.
    monkeypatch.setattr(artifacts, "open_store", artifacts.AtomicFileSystemArtifactStore)
    trial = st.ask()
    hook(trial, spec, SimpleNamespace(state=build_mlp(spec).state_dict(), best_valid_f1=0.6))
    st.tell(trial, 0.6)
    best = st.trials[1]
    metas = optuna.artifacts.get_all_artifact_meta(best, storage=st._storage)
    assert [m.artifact_id for m in metas] == [best.user_attrs[artifacts.ATTR]["id"]]
    artifacts.fetch(best, tmp_path / "store")  # whole, and its sha256 as recorded
    assert artifacts.best_not_kept(st.trials) is None


def test_a_synthetic_set_that_does_not_fit_stops_in_one_line(full_disk: Path) -> None:
    from fishopt import data
    from fishopt.errors import FishoptError

    with pytest.raises(FishoptError, match=r"cannot write the synthetic set .*space") as err:
        data.load(data.parse_source("synthetic:4:118x89"), full_disk / "cache", workers=1)
    assert "\n" not in str(err.value)
    assert [p for p in full_disk.rglob("*") if p.is_file()] == []  # no half-written set
