"""``fishopt doctor``: what is wrong with a shared storage, and the safe fix.

It reports, per study, RUNNING trials with the age of their last heartbeat (stale ones belong to
dead workers), RUNNING trials that never sent a heartbeat, duplicate or missing trial numbers,
queued retries, and the heartbeat settings in use; for SQLite also the filesystem warnings.
``--fix`` fails stale trials through Optuna's own ``fail_stale_trials``, so the storage's retry
callback queues their parameters again, exactly as a live worker would.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from fishopt import config
from fishopt.errors import FishoptError
from fishopt.search import claim
from fishopt.search.storage import backend, open_storage, sqlite_warnings


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: int = 0

    def say(self, line: str) -> None:
        self.lines.append(line)

    def problem(self, line: str) -> None:
        self.problems += 1
        self.lines.append(f"  PROBLEM: {line}")


@dataclass(frozen=True)
class Running:
    trial: FrozenTrial
    age: float | None  # seconds since the last heartbeat; None if it never sent one
    started: float | None  # seconds since it started


def heartbeat_ages(storage: RDBStorage, trials: list[FrozenTrial]) -> list[Running]:
    """Heartbeat ages by the database's clock, the one Optuna's staleness check uses."""
    ids = [t._trial_id for t in trials]
    with storage.engine.connect() as conn:
        now = conn.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        rows = conn.execute(
            sqlalchemy.select(
                models.TrialHeartbeatModel.trial_id, models.TrialHeartbeatModel.heartbeat
            ).where(models.TrialHeartbeatModel.trial_id.in_(ids))
        ).all()
    if isinstance(now, str):  # SQLite returns text for CURRENT_TIMESTAMP
        now = dt.datetime.fromisoformat(now)
    assert isinstance(now, dt.datetime)
    now = now.replace(tzinfo=None)
    beats = {trial_id: beat.replace(tzinfo=None) for trial_id, beat in rows}
    # datetime_start is the worker's local clock; datetime.now() here is the best we have.
    local_now = dt.datetime.now()
    out = []
    for t in trials:
        beat = beats.get(t._trial_id)
        age = (now - beat).total_seconds() if beat is not None else None
        started = (local_now - t.datetime_start).total_seconds() if t.datetime_start else None
        out.append(Running(t, age, started))
    return out


def silent_after(hb: config.Heartbeat) -> float:
    """A healthy worker beats within milliseconds of creating a trial; allow for clock skew."""
    return max(3.0 * hb.grace_period, 60.0)


def fail_silent(st: optuna.Study, storage: RDBStorage, hb: config.Heartbeat) -> list[int]:
    """Fail (and queue again) RUNNING trials that never sent a heartbeat and started long ago.

    Their worker died between creating the trial and its first heartbeat; Optuna's staleness
    check skips trials without heartbeats, so without this they would hold a budget slot forever.
    """
    running = st.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    dead = [
        r.trial
        for r in heartbeat_ages(storage, running)
        if r.age is None and r.started is not None and r.started > silent_after(hb)
    ]
    _fail_and_retry(st, storage, dead)
    return [t.number for t in dead]


def _fail_and_retry(st: optuna.Study, storage: RDBStorage, dead: list[FrozenTrial]) -> None:
    callback = storage.get_heartbeat_stale_trial_callback()
    for t in dead:
        try:
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        if callback is not None:
            callback(st, storage.get_trial(t._trial_id))


def trial_numbers(storage: RDBStorage, study_id: int) -> list[int]:
    """Every row's number, straight from the table: Optuna's API would hide a duplicate."""
    with storage.engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.select(models.TrialModel.number).where(
                models.TrialModel.study_id == study_id
            )
        ).all()
    return [int(n) for (n,) in rows if n is not None]


def examine(
    url: str, hb: config.Heartbeat, name: str | None = None, *, fix: bool = False
) -> Report:
    report = Report()
    storage = open_storage(url, heartbeat=hb)
    report.say(f"storage {config.mask_url(url)} ({backend(url)})")
    report.say(f"heartbeat settings used here: {hb.describe()}")
    report.say(
        f"  (workers read {config.ENV_HEARTBEAT_INTERVAL}, {config.ENV_GRACE_PERIOD}, "
        f"{config.ENV_MAX_RETRY} or --heartbeat-interval/--grace-period/--max-retry)"
    )
    for warning in sqlite_warnings(url, 1):
        report.problem(warning)
    names = optuna.study.get_all_study_names(storage)
    if name is not None:
        if name not in names:
            raise FishoptError(
                f"no study {name!r} in {config.mask_url(url)}; studies there: "
                f"{', '.join(names) or 'none'}"
            )
        names = [name]
    if not names:
        report.say("no studies")
    for study_name in names:
        st = optuna.load_study(study_name=study_name, storage=storage)
        _examine_study(st, storage, hb, report, fix)
    return report


def _examine_study(
    st: optuna.Study, storage: RDBStorage, hb: config.Heartbeat, report: Report, fix: bool
) -> None:
    trials = st.get_trials(deepcopy=False)
    by_state = Counter(t.state.name for t in trials)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(by_state.items())) or "no trials"
    budget = claim.stored_budget(st)
    report.say(
        f"study {st.study_name!r}: {len(trials)} trials ({states})"
        + (f"; budget {budget}" if budget is not None else "")
    )
    numbers = trial_numbers(storage, st._study_id)
    duplicates = sorted(n for n, c in Counter(numbers).items() if c > 1)
    if duplicates:
        report.problem(f"duplicate trial numbers {duplicates}")
    missing = sorted(set(range(len(numbers))) - set(numbers))
    if missing:
        report.problem(f"trial numbers not contiguous; missing {missing[:10]}")
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    if budget is not None and finished > budget:
        report.problem(f"{finished} finished trials overshoot the budget of {budget}")
    running = [t for t in trials if t.state == TrialState.RUNNING]
    stale: list[Running] = []
    silent: list[Running] = []
    for r in heartbeat_ages(storage, running):
        who = r.trial.user_attrs.get("worker", "unknown worker")
        if r.age is None:
            started = f"started {r.started:.0f}s ago" if r.started is not None else ""
            report.say(f"  trial {r.trial.number} RUNNING on {who}: no heartbeat yet, {started}")
            if r.started is not None and r.started > silent_after(hb):
                silent.append(r)
                report.problem(
                    f"trial {r.trial.number} never sent a heartbeat in {r.started:.0f}s "
                    "(run by a process without heartbeats, or killed at once)"
                )
        elif r.age > hb.grace_period:
            stale.append(r)
            report.problem(
                f"trial {r.trial.number} on {who} is stale: last heartbeat {r.age:.0f}s ago "
                f"(grace period {hb.grace_period}s); its worker is gone"
            )
        else:
            report.say(f"  trial {r.trial.number} RUNNING on {who}: heartbeat {r.age:.0f}s ago")
    retries = [t for t in trials if t.state == TrialState.WAITING]
    if retries:
        report.say(f"  {len(retries)} trial(s) WAITING to be run (queued retries or repeats)")
    if fix and (stale or silent):
        _fix(st, storage, stale, silent, report)


def _fix(
    st: optuna.Study,
    storage: RDBStorage,
    stale: list[Running],
    silent: list[Running],
    report: Report,
) -> None:
    before = {t.number for t in st.get_trials(deepcopy=False)}
    claim.fail_stale(st)  # Optuna's own: FAIL + the retry callback
    _fail_and_retry(st, storage, [r.trial for r in silent])  # the ones Optuna skips
    after = st.get_trials(deepcopy=False)
    for r in [*stale, *silent]:
        now = next(t for t in after if t._trial_id == r.trial._trial_id)
        if now.state == TrialState.FAIL:
            report.problems -= 1
            report.say(f"  fixed: trial {r.trial.number} marked FAIL")
    queued = [t.number for t in after if t.number not in before]
    if queued:
        report.say(f"  fixed: retries queued as trial(s) {queued}")
