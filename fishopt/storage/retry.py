"""Storage calls retried across a dropped database connection, with one patience per outage.

A worker's calls (writes of its trial, reads of the study) are retried for up to the storage's
``retry_for`` seconds when the connection drops (the server restarted or went away), so a
restart costs a pause, not a trial. The patience is shared by every call: once it is spent,
calls fail at once until the database answers again, so a worker stops within two intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import optuna
import sqlalchemy


def _disconnected(exc: BaseException) -> bool:
    """A lost connection (the server or its pooler restarted or went away), not a bad
    statement. A client-side InternalError (no SQLSTATE: psycopg's "received 2 results from
    command 'BEGIN'") is a reply cut off mid-command, as PgBouncer does when its server goes."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    return (
        isinstance(cause, sqlalchemy.exc.OperationalError)
        or (isinstance(cause, sqlalchemy.exc.DBAPIError) and bool(cause.connection_invalidated))
        or (
            isinstance(cause, sqlalchemy.exc.InternalError)
            and getattr(cause.orig, "sqlstate", "") is None
        )
    )


def _retrying(cls: type, name: str) -> Any:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        own = cls.__dict__.get("_own_" + name)
        method = own.__get__(self) if own is not None else getattr(super(cls, self), name)
        retried = False
        while True:
            try:
                result = method(*args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if retried and name == "set_trial_state_values":
                    return True  # the write that seemed lost had landed before the drop
                raise
            except Exception as exc:
                if not _disconnected(exc) or self.retry_for <= 0:
                    raise
                now = time.monotonic()
                if self._down_since is None:
                    self._down_since = now
                # One patience for every call: once it is spent, calls fail at once until
                # the database answers again, so a worker stops within two intervals.
                if now >= self._down_since + self.retry_for:
                    raise
                retried = True
                time.sleep(0.5)
                continue
            if self._down_since is not None:
                down, self._down_since = time.monotonic() - self._down_since, None
                if self.on_reconnect is not None:
                    self.on_reconnect(f"reconnected to the storage after {down:.1f}s")
            return result

    call.__name__ = name
    return call


T = TypeVar("T")


def retried(
    call: Callable[[], T],
    again: Callable[[BaseException], bool],
    *,
    patience: float,
    wait: Callable[[], float] = lambda: 0.5,
) -> T:
    """``call()``, tried again while it raises an error ``again`` accepts and ``patience``
    seconds have not passed since the first try; the last error is raised as it is. Used to
    open a storage and to take the claim lock; a worker's storage calls (``_retrying``) differ
    in sharing one patience per outage across all calls."""
    first = time.monotonic()
    while True:
        try:
            return call()
        except Exception as exc:
            if not again(exc) or time.monotonic() - first >= patience:
                raise
        time.sleep(wait())


def install_retries(cls: type, names: Iterable[str]) -> None:
    """Wrap ``cls``'s methods ``names`` (its own first, else the inherited ones) in retries."""
    for name in names:
        if name in cls.__dict__:
            setattr(cls, "_own_" + name, cls.__dict__[name])
            delattr(cls, name)
        setattr(cls, name, _retrying(cls, name))
