"""The study-wide lock under which workers claim budget slots.

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
from pathlib import Path
from typing import Protocol

import sqlalchemy
from optuna.storages import RDBStorage

from fishopt.config import StorageURL


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


def open_lock(storage: RDBStorage, url: StorageURL, study_name: str) -> Lock:
    if url.backend == "postgresql":
        return PostgresLock(storage.engine, study_name)
    path = url.sqlite_path
    if path is not None:
        return FileLock(path.with_name(path.name + ".fishopt-lock"))
    return ThreadLock()
