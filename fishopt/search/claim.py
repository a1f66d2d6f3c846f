"""The study's trial budget shared by all workers: claiming a slot atomically.

Optuna's MaxTrialsCallback counts finished trials after the fact, so N workers can overshoot
the budget by N-1. Here a worker takes a study-wide lock, fails stale trials, counts the trials
that are RUNNING or finished, and creates (or pops a queued) trial only while that count is below
the budget; the lock is released as soon as the trial exists. RUNNING trials count, so a slot is
never handed out twice; a trial that ends FAIL (a killed worker, an interrupt) frees its slot for
its retry.

The lock lives where the storage does: a PostgreSQL transaction-level advisory lock (released by
the server when the worker's connection dies, even on SIGKILL; it lives and dies with one
transaction, so it holds behind a transaction pooler such as PgBouncer) or an ``flock`` on a file
beside a SQLite database (released by the kernel when the process dies). Other backends get no
lock and may overshoot by at most workers - 1 (README says so).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import threading
import time
from pathlib import Path
from typing import Protocol

import optuna
import sqlalchemy
from optuna.storages import RDBStorage

from fishopt.config import backend, sqlite_path
from fishopt.search.spec import StudySpec

BUDGET_ATTR = "fishopt_budget"  # study user attr: the global trial budget, set by --n-trials


class Lock(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None: ...


class PostgresLock:
    """``pg_try_advisory_xact_lock`` in a transaction of its own; ending it releases the lock.

    A waiting worker tries again after a short, growing pause instead of blocking inside the
    server: behind a transaction pooler (PgBouncer) a blocked waiter would hold one of the
    pool's few server connections, and once waiters held them all, the lock's holder could
    not run the queries that end its claim: every worker stuck until the pooler's
    ``query_wait_timeout`` (seen with 12 workers and a pool of 10). A failed try ends its
    transaction, so a waiter holds no server connection between tries.
    """

    FIRST_PAUSE = 0.002  # seconds; doubled after each failed try, up to LONGEST_PAUSE
    LONGEST_PAUSE = 0.05  # a claim takes tens of ms: a waiter never sleeps much longer

    def __init__(self, engine: sqlalchemy.Engine, name: str) -> None:
        digest = hashlib.sha256(f"fishopt-claim/{name}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._engine = engine
        self._conn: sqlalchemy.Connection | None = None

    def acquire(self) -> None:
        conn = self._engine.connect()
        pause = self.FIRST_PAUSE
        try:
            while not conn.execute(
                sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": self._key}
            ).scalar():
                conn.rollback()  # no transaction (and no pooled server connection) between tries
                time.sleep(pause * (0.5 + random.random()))  # jitter: waiters spread out
                pause = min(2 * pause, self.LONGEST_PAUSE)
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


def stored_budget(st: optuna.Study) -> int | None:
    value = st.user_attrs.get(BUDGET_ATTR)
    return int(value) if value is not None else None


def set_budget(st: optuna.Study, n_trials: int) -> None:
    """Record a --n-trials budget in the study, so workers started without it agree."""
    if stored_budget(st) != n_trials:
        st.set_user_attr(BUDGET_ATTR, int(n_trials))


def spec_budget(
    spec: StudySpec, n_trials: int | None = None, distinct_grid: bool = True
) -> int | None:
    """A study's trial budget before it is recorded: flag, then spec, then the grid's size."""
    if n_trials is not None:
        return n_trials
    if spec.n_trials is not None:
        return spec.n_trials
    if spec.tuned:
        from fishopt.search.tuned import budget as tuned_budget

        return tuned_budget(spec.tuned)
    if spec.sampler["name"] == "grid":
        from fishopt.search.space import grid_size

        return grid_size(spec, distinct_grid)
    return None


def budget(st: optuna.Study, spec: StudySpec) -> int | None:
    """The global budget: the study's recorded --n-trials, else the spec's, else the grid."""
    from fishopt.search.studies import ATTR

    attrs = st.user_attrs  # one read: this runs before every claim
    if attrs.get(BUDGET_ATTR) is not None:
        return int(attrs[BUDGET_ATTR])
    return spec_budget(spec, distinct_grid=distinct_grid(attrs.get(ATTR, {})))


GRID_ATTR = "grid"  # in the study's identity: "distinct" once duplicate grid points are dropped


def distinct_grid(identity: dict) -> bool:
    """Whether a study (its identity) drops grid points that repeat a network: all studies
    made since that was added; older ones keep their full grid."""
    return identity.get(GRID_ATTR) == "distinct"
