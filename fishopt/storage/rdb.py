"""fishopt's Optuna storage: Optuna's RDB storage with the writes and reads a worker makes
per trial cut to one statement each where that pays, and calls retried across a dropped
connection, so a database restart costs a pause rather than a trial.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Container, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from fishopt.config import StorageURL
from fishopt.storage import fence, statements
from fishopt.storage.fence import models
from fishopt.storage.owned import Owned
from fishopt.storage.retry import install_retries


class Storage(RDBStorage):
    """Optuna's RDB storage plus two things a worker needs.

    - ``set_trial_user_attrs``: many user attributes in one transaction (one lookup, one
      upsert), instead of a lookup, an upsert and a commit per attribute;
    - a heartbeat that survives a lost connection and says when it last got through: Optuna's
      heartbeat thread dies on the first error, and the worker would train on as a trial that
      others will fail and retry. Here a failed beat is remembered and the next one tried
      again, and ``heartbeat_failing_since`` tells the trial loop to stop.
    """

    url: StorageURL  # as parsed at the edge; set by ``connect.open_storage``
    retry_for: float = 0.0  # seconds to retry a call on a dropped connection (0: never)
    on_reconnect: Callable[[str], None] | None = None
    _down_since: float | None = None  # monotonic time of the first dropped call, until one works
    _beat_failed_at: float | None = None  # the first failure since the last success
    _claim: set[int] | None = None  # inside ``claiming``: the studies whose trials were read

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
        # Dialects whose prebuilt upserts fishopt runs; others go through Optuna's own code.
        self.fast = self.engine.name in statements.FAST

    @contextlib.contextmanager
    def claiming(self) -> Iterator[None]:
        """Around Optuna's creation of a trial by the trial loop, which has just counted the
        trials under the claim lock (and failed the dead ones, at most a second ago). Until the
        new trial's first report (or its end):

        - Optuna's own stale check before ``ask`` finds nothing without a query: the loop
          checks at most a second before, and a trial going stale now is found at its next
          check (staleness is judged over a grace period of seconds);
        - the study's trials are read from the database once. ``ask`` reads them to pop a
          waiting trial (that read is real: a trial requeued under the lock must be seen),
          then TPE reads them twice more to sample; every read re-asks for each unfinished
          trial, and what another worker wrote in those milliseconds a sampler could as well
          have missed by starting a moment earlier. A pruner's read, after a report, is real.
        """
        self._claim = set()
        try:
            yield
        finally:
            self._claim = None

    def _end_claim(self) -> None:
        self._claim = None

    # ---------------------------------------------------------------------------- writes

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        """A plain new trial in two statements (Optuna: the study locked through the ORM, an
        insert, a count of the trials before it, an update of its number, each through ORM
        objects); a trial from a template (an enqueued one) as Optuna makes it."""
        if template_trial is not None or not self.fast:
            trial = super()._create_new_trial(study_id, template_trial)
        else:
            start = datetime.now()
            with fence.rdb_connection(self) as conn:
                # The study's row locked, as Optuna does: numbers are counted, not sequenced.
                if conn.execute(statements.LOCK_STUDY, {"study_id": study_id}).first() is None:
                    raise KeyError(f"No study with study_id {study_id} exists.")
                trial_id, number = conn.execute(
                    statements.NEW_TRIAL,
                    {"study_id": study_id, "start": fence.stored_time(start)},
                ).one()
            trial = fence.new_frozen(trial_id, number, start)
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
        if not self.fast or previous_distribution is None:
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
            with fence.rdb_connection(self, True) as conn:
                self._check_running(conn, trial_id)
                conn.execute(statements.INSERT_PARAM, row)
        self._owned.param(trial_id, param_name, param_value_internal, distribution)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's write in three plain statements (a locked read, a value upsert, the update)
        instead of four through ORM objects; the end times it stores are kept with this
        process's copy, so the reads that follow a trial's end need no query."""
        if state.is_finished():
            self._end_claim()
        if not self.fast:
            self._owned.drop(trial_id)
            return super().set_trial_state_values(trial_id, state, values)
        try:
            with fence.rdb_connection(self) as conn:
                row = conn.execute(statements.LOCK_TRIAL, {"trial_id": trial_id}).first()
                if row is None:
                    raise KeyError(f"No trial with trial_id {trial_id} exists.")
                old, stored_start = row
                self.check_trial_is_updatable(trial_id, old)
                if values is not None:
                    self._upsert_values(conn, trial_id, values)
                if state == TrialState.RUNNING and old != TrialState.WAITING:
                    return False
                now = datetime.now()
                start = now if state == TrialState.RUNNING else fence.local_time(stored_start)
                complete = now if state.is_finished() else None
                conn.execute(
                    statements.SET_STATE,
                    {
                        "id": trial_id,
                        "new_state": state,
                        # Only a start that is set now: the stored one stays as it is.
                        "start": fence.stored_time(now) if state == TrialState.RUNNING else None,
                        "complete": None if complete is None else fence.stored_time(complete),
                    },
                )
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

    def _upsert_values(self, conn: Any, trial_id: int, values: Sequence[float]) -> None:
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
        conn.execute(stmt, rows)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        """One statement per report, the state check included (Optuna: a lookup of the trial,
        one of the step, then an insert or an update): a study reports every epoch, and epochs
        can be fractions of a second."""
        self._end_claim()
        if not self.fast:
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
        with fence.rdb_connection(self) as conn:
            if conn.execute(stmt, row).first() is None:
                self._check_running(conn, trial_id)  # says why: missing or finished
                raise RuntimeError(f"trial {trial_id}: epoch {step} was not recorded")
        self._owned.intermediate(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, value)
        self._owned.user_attrs(trial_id, {key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        """One statement, the state check included (Optuna: the trial through the ORM, a
        lookup of the attribute, then an insert): TPE writes one with every trial of a study
        that several workers share (its relative parameters, for the others' constant liar)."""
        if not self.fast:
            super().set_trial_system_attr(trial_id, key, value)
        else:
            model = models.TrialSystemAttributeModel
            row = {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
            stmt = statements.upsert_if_running(
                self.engine.name, model.__table__, ("trial_id", "key")
            )
            with fence.rdb_connection(self) as conn:
                written = conn.execute(stmt, row).first() is not None
                if not written:
                    self._check_running(conn, trial_id)  # raises if missing or finished
            if not written:  # a WAITING trial, which Optuna lets one write to
                super().set_trial_system_attr(trial_id, key, value)
        self._owned.system_attr(trial_id, key, value)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self._beat(trial_id)
        except Exception:  # the database is gone: remember it, keep beating
            if self._beat_failed_at is None:
                self._beat_failed_at = time.monotonic()
            return
        self._beat_failed_at = None

    def _beat(self, trial_id: int) -> None:
        if not self.fast:
            super().record_heartbeat(trial_id)
            return
        with fence.rdb_connection(self, True) as conn:
            conn.execute(statements.heartbeat(self.engine.name), {"trial_id": trial_id})

    # ----------------------------------------------------------------------------- reads

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """This process's trial from memory; any other in three queries instead of six."""
        own = self._owned.get(trial_id)
        if own is not None:
            return own
        trials = self._load([trial_id])
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
        if self._claim is not None:
            if study_id in self._claim:
                return []  # read a moment ago in this claim: nothing new (see ``claiming``)
            self._claim.add(study_id)
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
        # One query says what changed; only that is read. Other workers' unfinished trials
        # are re-read when they add a row or change state, not on every call (Optuna re-reads
        # each of them, with every epoch and attribute, every time), and then only the table
        # that grew, unless the state changed: a trial new to this worker, or one that ended,
        # is read whole, once.
        with fence.rdb_connection(self) as conn:
            rows = conn.execute(statements.SIGNATURES, params).all()
        seen = self._seen.setdefault(study_id, {})
        signature = {tid: tuple(sig) for tid, *sig in rows}
        whole = [t for t, sig in signature.items() if t not in seen or seen[t][0][0] != sig[0]]
        grown = [t for t, sig in signature.items() if t in seen and seen[t][0][0] == sig[0]]
        grown = [t for t in grown if seen[t][0] != signature[t]]
        loaded = [
            t
            for i in range(0, len(whole), 500)  # a bounded IN list (SQLite's variable limit)
            for t in self._load(whole[i : i + 500])
        ]
        loaded += self._grown(grown, seen, signature)
        for t in loaded:
            self._owned.read(t)
            if t.state.is_finished():
                seen.pop(fence.trial_id(t), None)  # Optuna's cache keeps it and never asks again
            elif fence.trial_id(t) in signature:
                seen[fence.trial_id(t)] = (signature[fence.trial_id(t)], t)
        fresh = {fence.trial_id(t) for t in loaded}
        loaded += [seen[tid][1] for tid, *_ in rows if tid not in fresh and tid in seen]
        ids = {fence.trial_id(t) for t in loaded}
        mine = [
            own
            for tid in sorted((running & self._owned.running_ids()) | finished)
            if tid not in ids and (own := self._owned.get(tid)) is not None
        ]
        self._owned.served(fence.trial_id(t) for t in mine if t.state.is_finished())
        trials = sorted(loaded + mine, key=lambda t: fence.trial_id(t))
        return trials if states is None else [t for t in trials if t.state in states]

    def _grown(
        self,
        ids: list[int],
        seen: dict[int, tuple[tuple, FrozenTrial]],
        signature: dict[int, tuple],
    ) -> list[FrozenTrial]:
        """Unfinished trials already seen, in the same state, with rows added to some tables:
        those tables' rows are read (one query per table) into copies of the trials seen."""
        if not ids:
            return []
        trials = {tid: seen[tid][1] for tid in ids}
        with fence.rdb_connection(self) as conn:
            for part, query in enumerate(statements.PARTS):
                which = [t for t in ids if seen[t][0][part + 1] != signature[t][part + 1]]
                if not which:
                    continue
                rows: dict[int, list[tuple]] = {t: [] for t in which}
                for i in range(0, len(which), 500):
                    for tid, *row in conn.execute(query, {"ids": which[i : i + 500]}):
                        rows[tid].append(tuple(row))
                for tid, got in rows.items():
                    trials[tid] = fence.with_part(trials[tid], part, got)
        return list(trials.values())

    def _load(self, ids: list[int]) -> list[FrozenTrial]:
        """Trials whole, in five plain queries (``fence.frozen_from_rows``)."""
        with fence.rdb_connection(self) as conn:
            rows: dict[int, tuple] = {}
            values: dict[int, list[tuple]] = {}
            for tid, number, state, start, complete, *value in conn.execute(
                statements.TRIAL_ROWS, {"ids": ids}
            ):
                rows[tid] = (tid, number, state, start, complete)
                values.setdefault(tid, [])
                if value[0] is not None:  # a trial without values joins one empty row
                    values[tid].append(tuple(value))
            if not rows:
                return []
            parts: list[dict[int, list[tuple]]] = []
            for query in statements.PARTS:
                part: dict[int, list[tuple]] = {tid: [] for tid in rows}
                for tid, *got in conn.execute(query, {"ids": ids}):
                    part[tid].append(tuple(got))
                parts.append(part)
        return [
            fence.frozen_from_rows(row, values[tid], [p[tid] for p in parts])
            for tid, row in rows.items()
        ]

    def running_trials(self, study_id: int) -> list[tuple[int, datetime | None, timedelta | None]]:
        """Each RUNNING trial in one query: its id, its start as stored (naive UTC, by the
        clock of the worker that created it) and the age of its last heartbeat by the
        database's clock (None: it never beat). The trial loop reads this before every claim."""
        trial, beat = models.TrialModel, models.TrialHeartbeatModel
        with fence.rdb_connection(self) as conn:
            rows = conn.execute(
                sqlalchemy.select(
                    trial.trial_id,
                    trial.__table__.c.datetime_start,
                    beat.heartbeat,
                    sqlalchemy.func.now(),
                )
                .outerjoin(beat, beat.trial_id == trial.trial_id)
                .where(trial.study_id == study_id, trial.state == TrialState.RUNNING)
            ).all()
        # As Optuna: naive times, since PostgreSQL's clock is time zone aware and SQLite's not.
        return [
            (tid, start, None if at is None else now.replace(tzinfo=None) - at)
            for tid, start, at, now in rows
        ]

    def stale_after(self) -> timedelta:
        """How long a trial's heartbeat may be silent before the trial counts as stale."""
        assert self.heartbeat_interval is not None
        period = self.grace_period
        return timedelta(seconds=2 * self.heartbeat_interval if period is None else period)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """One query (Optuna: the database clock, then the running trials, then their beats);
        Optuna asks before every trial; inside ``claiming``, the loop has just asked."""
        if self._claim is not None:
            return []
        grace = self.stale_after()
        return [
            tid
            for tid, _start, age in self.running_trials(study_id)
            if age is not None and age > grace
        ]

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        """One query (Optuna: the study, then its attributes); the budget is read per claim."""
        model = models.StudyUserAttributeModel
        with fence.rdb_connection(self) as conn:
            rows = conn.execute(
                sqlalchemy.select(model.key, model.value_json).where(model.study_id == study_id)
            ).all()
        if not rows:
            with fence.rdb_session(self) as session:
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
        with fence.rdb_connection(self) as conn:
            rows = conn.execute(
                sqlalchemy.select(models.TrialModel.state, sqlalchemy.func.count())
                .where(models.TrialModel.study_id == study_id)
                .group_by(models.TrialModel.state)
            ).all()
        return {state: int(n) for state, n in rows}

    def best_complete_value(self, study_id: int) -> float | None:
        """The highest value among the study's COMPLETE trials (a maximised study)."""
        with fence.rdb_connection(self) as conn:
            return conn.execute(
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
        if self.fast:
            table = model.__table__
            with fence.rdb_connection(self) as conn:
                self._check_running(conn, trial_id)
                conn.execute(
                    statements.upsert(self.engine.name, table, ("trial_id", "key"), "value_json"),
                    rows,
                )
        else:
            with fence.rdb_session(self) as session:
                self._check_running(session, trial_id)
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


install_retries(Storage, RETRIED)
