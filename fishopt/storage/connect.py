"""Opening the Optuna storage: the one place that turns a storage URL into a storage object.

SQLite gets a long busy timeout and write-ahead logging so a few local workers (and a dashboard)
can share a file; PostgreSQL gets liveness checks and a small per-process pool, so many workers
fit under the server's connection limit. Every error that might quote the URL is re-raised with
the password masked. Heartbeats are always on for fishopt's own runs: a worker that dies has its
trial failed after the grace period and re-run by another worker.
"""

from __future__ import annotations

import contextlib
import random
import weakref
from collections.abc import Iterator
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback

from fishopt import config
from fishopt.config import StorageURL
from fishopt.errors import FishoptError
from fishopt.storage import fence
from fishopt.storage.locks import PostgresLock
from fishopt.storage.rdb import Storage
from fishopt.storage.retry import retried
from fishopt.storage.sqlite import SQLITE_BUSY_TIMEOUT, prepare_sqlite, sqlite_fast_commits

# The engine of every storage this process opened, closed together at its end (``close_all``);
# an engine can outlive its storage object, kept by a reference cycle.
_ENGINES: weakref.WeakSet[sqlalchemy.engine.Engine] = weakref.WeakSet()

# How long opening a storage keeps trying through a refused or restarting server: longer than
# a PostgreSQL restart, short enough that a mistyped port is reported within seconds.
OPEN_PATIENCE = 5.0

# Errors from several processes creating the same tables at once, or from a server that is
# restarting; worth another try.
_TRANSIENT = (
    "already exists",
    "duplicate key",
    "unique constraint",
    "database is locked",
    "deadlock",
    "serialize",
    # The server restarting (or its pooler waiting for it): a worker started meanwhile waits.
    "connection refused",
    "starting up",
    "shutting down",
    "not yet accepting connections",
    "terminating connection due to administrator command",  # a fast shutdown, mid-open
    "server closed the connection unexpectedly",
    "server login has been failing",  # PgBouncer, while the server is away
    "results from command",  # psycopg: a reply cut off mid-command (a pooler dropping it)
)


def engine_kwargs(url: StorageURL) -> dict:
    if url.backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    if url.backend == "postgresql":
        # Each worker needs about two connections (trial + heartbeat thread); a small pool per
        # process keeps N workers under max_connections (100 by default) with room to spare.
        return {
            "pool_pre_ping": True,  # a connection dropped by the server is replaced, not used
            "pool_size": 2,
            "max_overflow": 4,
            "pool_timeout": 60,
            "pool_recycle": 1800,
            "connect_args": {
                "connect_timeout": 10,
                "application_name": "fishopt",
                # No server-side prepared statements (psycopg prepares a query after its 5th
                # run): a transaction pooler such as PgBouncer hands each transaction to any
                # server connection, where that statement does not exist. fishopt's statements
                # are short; preparing them saved nothing measurable.
                "prepare_threshold": None,
            },
        }
    return {"pool_pre_ping": True, "pool_recycle": 1800}


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Record many user attributes of a running trial at once (one transaction where the
    storage is fishopt's; one write each elsewhere)."""
    storage = fence.backend_of(trial.study)
    if isinstance(storage, Storage):
        storage.set_trial_user_attrs(fence.trial_id(trial), attrs)
    else:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)


def _heartbeat_kwargs(hb: config.Heartbeat) -> dict:
    return {
        "heartbeat_interval": hb.interval,
        "grace_period": hb.grace_period,
        "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(
            max_retry=hb.max_retry, inherit_intermediate_values=False
        ),
    }


@contextlib.contextmanager
def _schema_lock(url: StorageURL) -> Iterator[None]:
    """On PostgreSQL, one process at a time checks and creates the tables.

    Workers started together against a new database all create the same tables; the losers
    block inside the server on the winner's catalog locks. Behind a transaction pooler each
    blocked creator holds one of the pool's few server connections, and with more starters
    than the pool the winner could not get one to finish: every worker waited for PgBouncer's
    ``query_wait_timeout`` (120 s) and then failed. The lock is the polling advisory lock of
    the claims, so a waiter holds no server connection between tries.
    """
    if url.backend != "postgresql":
        yield
        return
    engine = sqlalchemy.create_engine(url.text, poolclass=sqlalchemy.pool.NullPool, **{
        k: v for k, v in engine_kwargs(url).items() if k == "connect_args"
    })  # fmt: skip
    lock = PostgresLock(engine, "tables", purpose="schema")
    try:
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
    finally:
        engine.dispose()


def open_storage(url: StorageURL | str, *, heartbeat: bool | config.Heartbeat = True) -> Storage:
    """An RDB storage with heartbeats, so a killed worker's trial is failed and retried.

    ``url`` is parsed at the edge (``config.resolve_storage``); a plain string, as library
    callers and tests pass, is parsed here once. ``heartbeat=True`` takes the settings from the
    environment (``config.resolve_heartbeat``). Opening is retried a few times when several
    workers create the tables at once.
    """
    if isinstance(url, str):
        url = config.parse_storage(url)
    hb = config.resolve_heartbeat() if heartbeat is True else heartbeat
    kwargs = _heartbeat_kwargs(hb) if isinstance(hb, config.Heartbeat) else {}
    if url.backend == "sqlite":
        prepare_sqlite(url)

    def make() -> Storage:
        with _schema_lock(url):
            storage = Storage(url.text, engine_kwargs=engine_kwargs(url), **kwargs)
        storage.url = url
        if url.local_sqlite:
            sqlite_fast_commits(storage)
        _ENGINES.add(storage.engine)
        return storage

    def words(exc: BaseException) -> str:
        """The driver's words, not the wrapper's ("An exception is raised during the commit")."""
        wrapped = isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__
        return str(exc.__cause__ if wrapped else exc).strip()

    def transient(exc: BaseException) -> bool:
        return any(t in words(exc).lower() for t in _TRANSIENT)

    try:
        return retried(make, transient, patience=OPEN_PATIENCE, wait=lambda: 0.2 + random.random())
    except ImportError as exc:
        raise FishoptError(
            f"storage {url.masked}: driver missing ({exc.name}); for "
            "PostgreSQL install psycopg: pip install 'psycopg[binary]'"
        ) from None
    except Exception as exc:  # SQLAlchemy/driver errors; their text may contain the URL
        text = words(exc)
        first = text.splitlines()[0] if text else type(exc).__name__
        raise FishoptError(
            config.redact(f"cannot open storage {url.masked}: {first}", config.secrets(url.text))
        ) from None


def close_all() -> None:
    """Close the pooled connections of every storage this process opened. Closing the last
    connection to a SQLite file folds its write-ahead log back into the file, so a copy of
    ``fishopt.db`` alone holds every trial; PostgreSQL sees a clean goodbye, not a dropped
    connection. Connections another thread still holds are left to it."""
    for engine in list(_ENGINES):
        engine.dispose()
