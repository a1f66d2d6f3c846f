"""Opening the Optuna storage: the one place that turns a URL into a storage object.

SQLite gets a long busy timeout and write-ahead logging so a few local workers (and a dashboard)
can share a file; PostgreSQL gets liveness checks and a small per-process pool, so many workers
fit under the server's connection limit. Every error that might quote the URL is re-raised with
the password masked. Heartbeats are always on for fishopt's own runs: a worker that dies has its
trial failed after the grace period and re-run by another worker.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Container, Sequence
from datetime import datetime, timedelta
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from fishopt import config
from fishopt.config import backend, mask_url
from fishopt.errors import FishoptError
from fishopt.search import statements
from fishopt.search.owned import Owned
from fishopt.search.sqlite import (
    SQLITE_BUSY_TIMEOUT,
    local_sqlite,
    prepare_sqlite,
    sqlite_fast_commits,
)

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
    "server login has been failing",  # PgBouncer, while the server is away
    "results from command",  # psycopg: a reply cut off mid-command (a pooler dropping it)
)


def engine_kwargs(url: str) -> dict:
    if backend(url) == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    if backend(url) == "postgresql":
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


class Storage(RDBStorage):
    """Optuna's RDB storage plus two things a worker needs.

    - ``set_trial_user_attrs``: many user attributes in one transaction (one lookup, one
      upsert), instead of a lookup, an upsert and a commit per attribute;
    - a heartbeat that survives a lost connection and says when it last got through: Optuna's
      heartbeat thread dies on the first error, and the worker would train on as a trial that
      others will fail and retry. Here a failed beat is remembered and the next one tried
      again, and ``heartbeat_failing_since`` tells the trial loop to stop.
    """

    retry_for: float = 0.0  # seconds to retry a call on a dropped connection (0: never)
    on_reconnect: Callable[[str], None] | None = None
    _down_since: float | None = None  # monotonic time of the first dropped call, until one works
    _beat_ok_at: float | None = None
    _beat_failed_at: float | None = None  # the first failure since the last success

    def heartbeat_failing_since(self) -> float | None:
        """``time.monotonic()`` of the first failed beat since the last good one, or None."""
        return self._beat_failed_at

    def reachable(self) -> bool:
        """Whether a fresh connection gets an answer now (pre-ping replaces dead ones)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
        except Exception:
            return False
        self._beat_failed_at = None
        return True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._owned = Owned()  # this process's trials: read back without a query
        # Other workers' unfinished trials as last read, with their row counts (per study).
        self._seen: dict[int, dict[int, tuple[tuple, FrozenTrial]]] = {}
        super().__init__(*args, **kwargs)

    # ---------------------------------------------------------------------------- writes

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        self._owned.started(trial)
        return trial

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
        previous_distribution: BaseDistribution | None,
    ) -> None:
        """A state check and an insert, built once (Optuna: the trial loaded through the ORM).
        Optuna's trial cache passes the distribution it knows; without one Optuna's own
        lookup checks that the parameter keeps a compatible distribution across the study."""
        if self.engine.name not in statements.FAST or previous_distribution is None:
            super()._set_trial_param(
                trial_id, param_name, param_value_internal, distribution, previous_distribution
            )
        else:
            check_distribution_compatibility(previous_distribution, distribution)
            row = {
                "trial_id": trial_id,
                "param_name": param_name,
                "param_value": param_value_internal,
                "distribution_json": distribution_to_json(distribution),
            }
            with _create_scoped_session(self.scoped_session, True) as session:
                self._check_running(session, trial_id)
                session.execute(statements.INSERT_PARAM, row)
        self._owned.param(trial_id, param_name, param_value_internal, distribution)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's write in three statements (a locked read, a value upsert, the update)
        instead of four; the end times it stores are kept with this process's copy, so the
        reads that follow a trial's end need no query."""
        if self.engine.name not in statements.FAST:
            self._owned.drop(trial_id)
            return super().set_trial_state_values(trial_id, state, values)
        try:
            with _create_scoped_session(self.scoped_session) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
                self.check_trial_is_updatable(trial_id, trial.state)
                if values is not None:
                    self._upsert_values(session, trial_id, values)
                if state == TrialState.RUNNING and trial.state != TrialState.WAITING:
                    return False
                trial.state = state
                if state == TrialState.RUNNING:
                    trial.datetime_start = datetime.now()
                if state.is_finished():
                    trial.datetime_complete = datetime.now()
                start, complete = trial.datetime_start, trial.datetime_complete
        except optuna.exceptions.UpdateFinishedTrialError:
            self._owned.drop(trial_id)  # finished by another worker: read it from now on
            raise
        except sqlalchemy.exc.IntegrityError:
            return False
        except Exception:
            self._owned.drop(trial_id)  # the write may have landed: read it from now on
            raise
        if state == TrialState.RUNNING:
            self._owned.claim(trial_id)
        elif state.is_finished():
            stored = [float(v) for v in values] if values is not None else None
            self._owned.finish(trial_id, state, stored, start, complete)
        return True

    def _upsert_values(self, session: Any, trial_id: int, values: Sequence[float]) -> None:
        model = models.TrialValueModel
        rows = []
        for objective, v in enumerate(values):
            stored, kind = model.value_to_stored_repr(v)
            rows.append(
                {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
            )
        table = model.__table__
        stmt = statements.upsert(
            self.engine.name, table, ("trial_id", "objective"), "value", "value_type"
        )
        session.execute(stmt, rows)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        """One statement per report, the state check included (Optuna: a lookup of the trial,
        one of the step, then an insert or an update): a study reports every epoch, and epochs
        can be fractions of a second."""
        if self.engine.name not in statements.FAST:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
            self._owned.intermediate(trial_id, step, intermediate_value)
            return
        model = models.TrialIntermediateValueModel
        stored, kind = model.intermediate_value_to_stored_repr(intermediate_value)
        row = {
            "trial_id": trial_id,
            "step": step,
            "intermediate_value": stored,
            "intermediate_value_type": kind,
        }
        stmt = statements.upsert_if_running(self.engine.name, model.__table__, ("trial_id", "step"))
        with _create_scoped_session(self.scoped_session) as session:
            if session.execute(stmt, row).first() is None:
                self._check_running(session, trial_id)  # says why: missing or finished
                raise RuntimeError(f"trial {trial_id}: epoch {step} was not recorded")
        self._owned.intermediate(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, value)
        self._owned.user_attrs(trial_id, {key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, value)
        self._owned.system_attr(trial_id, key, value)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self._beat(trial_id)
        except Exception:  # the database is gone: remember it, keep beating
            if self._beat_failed_at is None:
                self._beat_failed_at = time.monotonic()
            return
        self._beat_ok_at = time.monotonic()
        self._beat_failed_at = None

    def _beat(self, trial_id: int) -> None:
        if self.engine.name not in statements.FAST:
            super().record_heartbeat(trial_id)
            return
        with _create_scoped_session(self.scoped_session, True) as session:
            session.execute(statements.heartbeat(self.engine.name), {"trial_id": trial_id})

    # ----------------------------------------------------------------------------- reads

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """This process's trial from memory; any other in three queries instead of six."""
        own = self._owned.get(trial_id)
        if own is not None:
            return own
        trials = self._load(statements.LOAD_ONE, {"trial_id": trial_id})
        if not trials:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        self._owned.read(trials[0])
        return trials[0]

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        """What Optuna's trial cache asks for (trials newer than it has, and the unfinished
        ones it has), with this process's own trials taken from memory: a sampler or pruner
        call that finds nothing new costs one query, not seven."""
        after = trial_id_greater_than
        unfinished = {t for t in included_trial_ids if t <= after}

        def in_scope(tid: int) -> bool:
            return tid > after or tid in unfinished

        running = {t for t in self._owned.running_ids() if in_scope(t)}
        finished = {t for t in self._owned.finished_ids() if in_scope(t)}
        params = {
            "study_id": study_id,
            "after": after,
            "unfinished": sorted(unfinished),
            "finished": sorted(finished),
            "running": sorted(running),
        }
        # One query says what changed; only that is loaded through the ORM. Other workers'
        # unfinished trials are re-read when they add a row or change state, not on every
        # call (Optuna re-reads each of them, with every epoch and attribute, every time).
        with _create_scoped_session(self.scoped_session) as session:
            rows = session.execute(statements.SIGNATURES, params).all()
        seen = self._seen.setdefault(study_id, {})
        changed = [tid for tid, *sig in rows if tid not in seen or seen[tid][0] != tuple(sig)]
        loaded = [
            t
            for i in range(0, len(changed), 500)  # a bounded IN list (SQLite's variable limit)
            for t in self._load(statements.LOAD_IDS, {"ids": changed[i : i + 500]})
        ]
        signature = {tid: tuple(sig) for tid, *sig in rows}
        for t in loaded:
            self._owned.read(t)
            if t.state.is_finished():
                seen.pop(t._trial_id, None)  # Optuna's cache keeps it and never asks again
            elif t._trial_id in signature:
                seen[t._trial_id] = (signature[t._trial_id], t)
        fresh = {t._trial_id for t in loaded}
        loaded += [seen[tid][1] for tid, *_ in rows if tid not in fresh and tid in seen]
        ids = {t._trial_id for t in loaded}
        mine = [
            own
            for tid in sorted((running & self._owned.running_ids()) | finished)
            if tid not in ids and (own := self._owned.get(tid)) is not None
        ]
        self._owned.served(t._trial_id for t in mine if t.state.is_finished())
        trials = sorted(loaded + mine, key=lambda t: t._trial_id)
        return trials if states is None else [t for t in trials if t.state in states]

    def _load(self, query: Any, params: dict[str, Any]) -> list[FrozenTrial]:
        with _create_scoped_session(self.scoped_session) as session:
            found = session.execute(query, params).unique().scalars().all()
            return [self._build_frozen_trial_from_trial_model(m) for m in found]

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """One query (Optuna: the database clock, then the running trials, then their beats);
        Optuna asks before every trial."""
        assert self.heartbeat_interval is not None
        period = self.grace_period
        grace = timedelta(seconds=2 * self.heartbeat_interval if period is None else period)
        trial, beat = models.TrialModel, models.TrialHeartbeatModel
        with _create_scoped_session(self.scoped_session, True) as session:
            rows = session.execute(
                sqlalchemy.select(trial.trial_id, beat.heartbeat, sqlalchemy.func.now())
                .join(beat, beat.trial_id == trial.trial_id)
                .where(trial.study_id == study_id, trial.state == TrialState.RUNNING)
            ).all()
        # As Optuna: naive times, since PostgreSQL's clock is time zone aware and SQLite's not.
        return [tid for tid, at, now in rows if now.replace(tzinfo=None) - at > grace]

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        """One query (Optuna: the study, then its attributes); the budget is read per claim."""
        model = models.StudyUserAttributeModel
        with _create_scoped_session(self.scoped_session) as session:
            rows = session.execute(
                sqlalchemy.select(model.key, model.value_json).where(model.study_id == study_id)
            ).all()
            if not rows:
                models.StudyModel.find_or_raise_by_id(study_id, session)
        return {key: json.loads(value) for key, value in rows}

    def _check_running(self, session: Any, trial_id: int) -> None:
        state = session.execute(statements.STATE, {"trial_id": trial_id}).scalar()
        if state is None:
            raise KeyError(f"no trial with trial_id {trial_id}")
        if state.is_finished():
            self._owned.drop(trial_id)  # failed by another worker: read it from now on
        self.check_trial_is_updatable(trial_id, state)

    def state_counts(self, study_id: int) -> dict[TrialState, int]:
        """How many trials are in each state: one query (not every trial with its params)."""
        with _create_scoped_session(self.scoped_session) as session:
            rows = session.execute(
                sqlalchemy.select(models.TrialModel.state, sqlalchemy.func.count())
                .where(models.TrialModel.study_id == study_id)
                .group_by(models.TrialModel.state)
            ).all()
        return {state: int(n) for state, n in rows}

    def best_complete_value(self, study_id: int) -> float | None:
        """The highest value among the study's COMPLETE trials (a maximised study)."""
        with _create_scoped_session(self.scoped_session) as session:
            return session.execute(
                sqlalchemy.select(sqlalchemy.func.max(models.TrialValueModel.value))
                .join(models.TrialModel)
                .where(
                    models.TrialModel.study_id == study_id,
                    models.TrialModel.state == TrialState.COMPLETE,
                )
            ).scalar()

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        if not attrs:
            return
        model = models.TrialUserAttributeModel
        rows = [
            {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()
        ]
        with _create_scoped_session(self.scoped_session) as session:
            self._check_running(session, trial_id)
            if self.engine.name in statements.FAST:
                table = model.__table__
                session.execute(
                    statements.upsert(self.engine.name, table, ("trial_id", "key"), "value_json"),
                    rows,
                )
            else:
                for k, v in attrs.items():
                    self._set_trial_attr_without_commit(session, model, trial_id, k, v)
        self._owned.user_attrs(trial_id, attrs)


# The storage calls a worker makes while it runs trials; a dropped connection is retried in
# them for up to ``Storage.retry_for`` seconds, so a database restart costs a pause, not a trial.
RETRIED = (
    "create_new_trial",
    "set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_trial_user_attrs",
    "get_trial",
    "get_all_trials",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_study_id_from_name",
    "get_study_directions",
    "get_trial_id_from_study_id_trial_number",
    "_get_stale_trial_ids",
    "state_counts",
    "best_complete_value",
)


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


def _retrying(name: str) -> Any:
    def call(self: Storage, *args: Any, **kwargs: Any) -> Any:
        own = Storage.__dict__.get("_own_" + name)
        method = own.__get__(self) if own is not None else getattr(super(Storage, self), name)
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


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Record many user attributes of a running trial at once (one transaction where the
    storage is fishopt's; one write each elsewhere)."""
    storage = backend_of(trial.study)
    if isinstance(storage, Storage):
        storage.set_trial_user_attrs(trial._trial_id, attrs)
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


def open_storage(url: str, *, heartbeat: bool | config.Heartbeat = True) -> Storage:
    """An RDB storage with heartbeats, so a killed worker's trial is failed and retried.

    ``heartbeat=True`` takes the settings from the environment (``config.resolve_heartbeat``).
    Opening is retried a few times when several workers create the tables at once.
    """
    hb = config.resolve_heartbeat() if heartbeat is True else heartbeat
    kwargs = _heartbeat_kwargs(hb) if isinstance(hb, config.Heartbeat) else {}
    if backend(url) == "sqlite":
        prepare_sqlite(url)
    for attempt in range(8):  # about 5 s of tries: longer than a PostgreSQL restart
        try:
            storage = Storage(url, engine_kwargs=engine_kwargs(url), **kwargs)
            if backend(url) == "sqlite" and local_sqlite(url):
                sqlite_fast_commits(storage)
            return storage
        except ImportError as exc:
            raise FishoptError(
                f"storage {mask_url(url)}: driver missing ({exc.name}); for "
                "PostgreSQL install psycopg: pip install 'psycopg[binary]'"
            ) from None
        except Exception as exc:  # SQLAlchemy/driver errors; their text may contain the URL
            # The driver's words, not the wrapper's ("An exception is raised during the commit").
            wrapped = isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__
            text = str(exc.__cause__ if wrapped else exc).strip()
            if attempt < 7 and any(t in text.lower() for t in _TRANSIENT):
                time.sleep(0.2 + random.random())
                continue
            first = text.splitlines()[0] if text else type(exc).__name__
            raise FishoptError(
                config.redact(f"cannot open storage {mask_url(url)}: {first}", config.secrets(url))
            ) from None
    raise AssertionError("unreachable")


# ------------------------------------------------------------------- SQLite with several workers


def backend_of(study: optuna.Study) -> Any:
    """The storage behind Optuna's per-study cache wrapper."""
    return getattr(study._storage, "_backend", study._storage)


# Storage's own methods come first so that the retrying wrapper calls them, not Optuna's.
for _name in RETRIED:
    if _name in Storage.__dict__:
        setattr(Storage, "_own_" + _name, Storage.__dict__[_name])
        delattr(Storage, _name)
    setattr(Storage, _name, _retrying(_name))
