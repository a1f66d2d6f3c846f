"""Opening the Optuna storage: the one place that turns a URL into a storage object.

SQLite gets a long busy timeout so a few local workers can share a file; PostgreSQL gets
liveness checks and a pool sized for many workers. Every error that might quote the URL is
re-raised with the password masked.
"""

from __future__ import annotations

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from fishopt.config import mask_url
from fishopt.errors import FishoptError

HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats
GRACE_PERIOD = 30  # a RUNNING trial silent for this long is failed and retried
MAX_RETRY = 2


def engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 120}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10, "pool_recycle": 1800}


def open_storage(url: str, *, heartbeat: bool = True) -> RDBStorage:
    """An RDB storage with heartbeats, so a killed worker's trial is failed and retried."""
    kwargs: dict = {}
    if heartbeat:
        kwargs = {
            "heartbeat_interval": HEARTBEAT_INTERVAL,
            "grace_period": GRACE_PERIOD,
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY, inherit_intermediate_values=False
            ),
        }
    try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs(url), **kwargs)
        if url.startswith("sqlite"):
            sqlite_fast_commits(storage)
        return storage
    except ImportError as exc:
        raise FishoptError(
            f"storage {mask_url(url)}: driver missing ({exc.name}); for "
            "PostgreSQL install psycopg: pip install 'psycopg[binary]'"
        ) from None
    except Exception as exc:  # SQLAlchemy/driver errors; their text may contain the URL
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FishoptError(f"cannot open storage {mask_url(url)}: {mask_url(first)}") from None


def study_names(storage: RDBStorage) -> list[optuna.study.StudySummary]:
    return optuna.study.get_all_study_summaries(storage, include_best_trial=True)


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
