"""SQLite shared by a few local workers: write-ahead logging, fast commits, and the cases
(a network filesystem, many workers) where PostgreSQL is the right storage instead."""

from __future__ import annotations

import sqlite3

from optuna.storages import RDBStorage

from fishopt.config import StorageURL

SQLITE_BUSY_TIMEOUT = 120  # seconds a writer waits for another process's lock
SQLITE_MAX_WORKERS = 4  # beyond this many processes, SQLite's single writer lock dominates


def prepare_sqlite(url: StorageURL) -> None:
    """Write-ahead logging: readers (the dashboard) never block the workers' writes."""
    path = url.sqlite_path
    if path is None or not url.local_sqlite:
        return  # nothing to prepare (Optuna reports a bad path)
    try:
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        pass  # a read-only or odd file: Optuna's own error below says what is wrong


def sqlite_warnings(url: StorageURL, workers: int) -> list[str]:
    """Why this SQLite URL is a poor fit for ``workers`` processes; empty when it is fine."""
    if url.backend != "sqlite":
        return []
    out = []
    path, fs = url.sqlite_path, url.network_fs
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
