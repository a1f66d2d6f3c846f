"""The study's trial budget shared by all workers: claiming a slot atomically.

Optuna's MaxTrialsCallback counts finished trials after the fact, so N workers can overshoot
the budget by N-1. Here a worker takes a study-wide lock, fails stale trials, counts the trials
that are RUNNING or finished, and creates (or pops a queued) trial only while that count is below
the budget; the lock is released as soon as the trial exists. RUNNING trials count, so a slot is
never handed out twice; a trial that ends FAIL (a killed worker, an interrupt) frees its slot for
its retry.

The lock lives where the storage does: a PostgreSQL transaction-level advisory lock (released by
the server when the worker's connection dies, even on SIGKILL) or an ``flock`` on a file beside a
SQLite database (released by the kernel when the process dies). Other backends get no lock and
may overshoot by at most workers - 1 (README says so).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from fishopt.search.storage import backend, sqlite_path

CLAIMED = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
BUDGET_ATTR = "fishopt_budget"  # study user attr: the global trial budget, set by --n-trials


class Lock(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None: ...


class PostgresLock:
    """``pg_advisory_xact_lock`` in a transaction of its own; ending it releases the lock."""

    def __init__(self, engine: sqlalchemy.Engine, name: str) -> None:
        digest = hashlib.sha256(f"fishopt-claim/{name}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._engine = engine
        self._conn: sqlalchemy.Connection | None = None

    def acquire(self) -> None:
        conn = self._engine.connect()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._key})
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.rollback()  # ends the transaction: the server releases the lock
            conn.close()


class FileLock:
    """An exclusive ``flock`` on ``<database>.fishopt-lock``, for SQLite on a local disk."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class ThreadLock:
    """In-memory SQLite and unknown backends: one process, or no cross-process guarantee."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = False

    def acquire(self) -> None:
        self._lock.acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


def open_lock(storage: RDBStorage, url: str, study_name: str) -> Lock:
    if backend(url) == "postgresql":
        return PostgresLock(storage.engine, study_name)
    path = sqlite_path(url)
    if path is not None:
        return FileLock(path.with_name(path.name + ".fishopt-lock"))
    return ThreadLock()


def exact(url: str) -> bool:
    """Whether this backend guarantees the budget is never overshot."""
    return backend(url) == "postgresql" or sqlite_path(url) is not None


@dataclass(frozen=True)
class Counts:
    running: int
    finished: int  # COMPLETE + PRUNED
    waiting: int

    @property
    def claimed(self) -> int:
        return self.running + self.finished


def count(st: optuna.Study) -> Counts:
    trials = st.get_trials(deepcopy=False)
    return Counts(
        running=sum(t.state == TrialState.RUNNING for t in trials),
        finished=sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
    )


def fail_stale(st: optuna.Study) -> None:
    """Fail trials whose worker stopped beating; the storage's retry callback re-queues them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(st)


def stored_budget(st: optuna.Study) -> int | None:
    value = st.user_attrs.get(BUDGET_ATTR)
    return int(value) if value is not None else None


def set_budget(st: optuna.Study, n_trials: int) -> None:
    """Record a --n-trials budget in the study, so workers started without it agree."""
    if stored_budget(st) != n_trials:
        st.set_user_attr(BUDGET_ATTR, int(n_trials))
