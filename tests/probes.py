"""Functions that tests run in child processes (started with ``spawn``, so they must be
importable by name): each does one real thing and reports what it saw to its parent."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any


def record_jobs_child(opts: Any, tag: str, keep_model: Any) -> None:
    """Stands in for ``search.jobs._child``: writes what the child received, and its own
    command line (which ``ps`` shows to every user), to ``<opts.cache_dir>/<tag>.pickle``."""
    seen = {
        "opts": opts,
        "keep_model": keep_model,
        "cmdline": Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode(),
        "pid": os.getpid(),
    }
    (Path(opts.cache_dir) / f"{tag}.pickle").write_bytes(pickle.dumps(seen))


def keep_nothing(_folder: Path) -> None:
    """A module-level ``keep_model`` (what --jobs hands each child must pickle by name)."""


def generate_at_once(out: Path, barrier: Any, results: Any) -> None:
    """``synthetic.generate_with_features`` into ``out``, waiting at ``barrier`` just before the
    finished set is renamed into place, so two processes reach that rename together."""
    from fishopt.data import synthetic

    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == "Fish_Dataset":
            barrier.wait(timeout=300)
        real_replace(src, dst)

    synthetic.os.replace = replace  # this child's os module only
    root, features = synthetic.generate_with_features(
        out, per_class=4, size=(59, 45), seed=1, workers=1, features=(59, 45)
    )
    assert features is not None
    results.put((str(root), {k: v.tobytes() for k, v in features.items()}))
