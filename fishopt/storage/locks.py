"""The study-wide lock under which workers claim budget slots.

The lock lives where the storage does: a PostgreSQL transaction-level advisory lock (released by
the server when the worker's connection dies, even on SIGKILL; it lives and dies with one
transaction, so it holds behind a transaction pooler such as PgBouncer) or an ``flock`` on a
file beside a SQLite database (released by the kernel when the process dies). Other backends
get no lock and may overshoot by at most workers - 1 (README says so).
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

import sqlalchemy
from optuna.storages import RDBStorage

from fishopt.config import StorageURL


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

    def __init__(self, engine: sqlalchemy.Engine, name: str, purpose: str = "claim") -> None:
        digest = hashlib.sha256(f"fishopt-{purpose}/{name}".encode()).digest()
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


def open_lock(storage: RDBStorage, url: StorageURL, study_name: str) -> Lock:
    if url.backend == "postgresql":
        return PostgresLock(storage.engine, study_name)
    path = url.sqlite_path
    if path is not None:
        return FileLock(path.with_name(path.name + ".fishopt-lock"))
    return ThreadLock()
