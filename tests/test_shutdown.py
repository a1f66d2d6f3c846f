"""A fishopt process ends without a garbage collection over its heap, and with its SQLite
file whole: the write-ahead log folded back, so a copy of the .db alone has every trial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna

PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0))  # runs after fishopt's
import optuna
from fishopt import shutdown
from fishopt.storage.connect import open_storage
shutdown.install()
storage = open_storage(sys.argv[1], heartbeat=False)
study = optuna.create_study(study_name="s", storage=storage)
study.add_trial(optuna.trial.create_trial(value=1.0))
storage._keep = [storage, study]  # a cycle: only a collection would have closed it
"""


def test_a_process_ends_frozen_with_its_sqlite_file_whole(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, f"sqlite:///{db}"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["frozen", "True"]
    assert not Path(f"{db}-wal").exists(), "the write-ahead log was left beside the file"
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())  # the file alone, as a user copies it
    st = optuna.load_study(study_name="s", storage=f"sqlite:///{copy}")
    assert [t.value for t in st.trials] == [1.0]
