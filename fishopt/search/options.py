"""What `fishopt study` and `fishopt worker` accept: plain data, in a module of its own so the
CLI can declare its commands without importing torch (``search.session`` does, to train)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    """What ``fishopt study`` and ``fishopt worker`` accept, as given (None: not given).

    Plain and picklable: ``--jobs`` hands it to its child processes as it is.
    """

    study: str  # a spec name or .toml path, or the name of a study already in storage
    data: str | None = None
    storage: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    epochs: int | None = None
    seed: int | None = None
    name: str | None = None
    image_size: str | None = None
    device: str = "auto"
    threads: int | None = None
    strict: bool = False
    cache_dir: Path | None = None
    artifacts_dir: Path | None = None
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    max_retry: int | None = None
