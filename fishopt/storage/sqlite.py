"""SQLite shared by a few local workers: write-ahead logging, fast commits, and the cases
(a network filesystem, many workers) where PostgreSQL is the right storage instead."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from optuna.storages import RDBStorage

from fishopt.config import backend, sqlite_path

SQLITE_BUSY_TIMEOUT = 120  # seconds a writer waits for another process's lock
SQLITE_MAX_WORKERS = 4  # beyond this many processes, SQLite's single writer lock dominates
# Filesystems where SQLite's locking is unreliable (and WAL is unsupported).
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "davfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
        "fuse.glusterfs",
        "fuse.cephfs",
    }
)


def local_sqlite(url: str) -> bool:
    """A SQLite file in an existing local folder: WAL needs local shared memory."""
    path = sqlite_path(url)
    return path is not None and path.parent.is_dir() and network_filesystem(path) is None


def prepare_sqlite(url: str) -> None:
    """Write-ahead logging: readers (the dashboard) never block the workers' writes."""
    path = sqlite_path(url)
    if path is None or not local_sqlite(url):
        return  # nothing to prepare (Optuna reports a bad path)
    try:
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        pass  # a read-only or odd file: Optuna's own error below says what is wrong


def network_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The filesystem type holding ``path`` if it is a network one (from /proc/mounts)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None  # not Linux: no cheap way to tell
    target = path.expanduser().absolute()
    best, best_type = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target.as_posix() + "/").startswith(point.rstrip("/") + "/") and len(point) > len(best):
            best, best_type = point, parts[2]
    return best_type if best_type in NETWORK_FILESYSTEMS else None


def sqlite_warnings(url: str, workers: int, mounts: str | None = None) -> list[str]:
    """Why this SQLite URL is a poor fit for ``workers`` processes; empty when it is fine."""
    if backend(url) != "sqlite":
        return []
    out = []
    path = sqlite_path(url)
    fs = network_filesystem(path, mounts) if path is not None else None
    if fs is not None:
        out.append(
            f"{path} is on a network filesystem ({fs}); SQLite's file locks are unreliable "
            "there and trials can be lost or corrupted. Use PostgreSQL: --storage "
            "postgresql+psycopg://USER@HOST/DB"
        )
    if workers > SQLITE_MAX_WORKERS:
        out.append(
            f"{workers} workers on SQLite: every write waits for one file lock, so more than "
            f"{SQLITE_MAX_WORKERS} workers mostly wait. Use PostgreSQL for many workers: "
            "--storage postgresql+psycopg://USER@HOST/DB (see README, 'Many workers')"
        )
    return out


def sqlite_fast_commits(storage: RDBStorage) -> None:
    """WAL journal, fsync at checkpoints only (``synchronous=NORMAL``), on every connection.

    Optuna commits a dozen times per trial (each user attribute, each report); with SQLite's
    default rollback journal each commit is an fsync, which cost 0.5 s per trial here and made a
    study of cheap trials mostly waiting on the disk (bench figure 5). WAL also lets readers
    (the dashboard, other workers) proceed while one worker writes. A power cut may lose the
    last commits, never corrupt the file; a lost trial is simply run again.
    """
    from sqlalchemy import event

    def on_connect(dbapi_conn, _record) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections opened while creating tables lack the pragmas
