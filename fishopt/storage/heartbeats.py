"""Who is alive: heartbeats, trials of dead workers, a lost storage.

- A RUNNING trial whose heartbeats stopped for the grace period belongs to a dead worker
  (SIGKILL, a lost machine): ``fail_stale`` marks it FAIL through Optuna, whose retry callback
  queues its parameters again.
- A RUNNING trial that never sent a heartbeat (its worker died between creating it and the first
  beat) is skipped by Optuna's check; ``fail_silent`` fails it once it is clearly old.
- A worker paused past the grace period finds its trial failed by another worker when it
  resumes (``TakenOver``): it drops that trial, says so, and goes on.
- A worker whose own heartbeats stop getting through has lost the storage: ``storage_watch``
  stops its trial at the next epoch boundary (``StorageLost``) unless the storage comes back
  within one heartbeat interval.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from fishopt import config
from fishopt.errors import FishoptError
from fishopt.storage import fence
from fishopt.storage.fence import models
from fishopt.storage.rdb import Storage

EXIT_STORAGE_LOST = 75  # EX_TEMPFAIL: try again once the storage is back
# What an interrupted trial's retry keeps of its user attributes: its seed's repeat index and,
# in the tuned protocol, its phase (a confirm run must stay one, with its paired seed).
RETRY_KEEPS = ("repeat", "repeat_of", "phase", "confirm_of", "at_defaults")


class StorageLost(FishoptError):
    """The storage stopped answering this worker's heartbeats."""

    exit_code = EXIT_STORAGE_LOST


class TakenOver(FishoptError):
    """This worker's trial was failed by another worker (its heartbeats had stopped: the
    process was paused or its machine froze) and is retried there."""

    def __init__(self, number: int) -> None:
        super().__init__(
            f"trial {number} was failed as stale by another worker while this one was not "
            "heard from, and is retried there; going on with the next trial"
        )


@dataclass(frozen=True)
class Running:
    trial: FrozenTrial
    age: float | None  # seconds since the last heartbeat; None if it never sent one
    started: float | None  # seconds since it started


def fail_stale(st: optuna.Study) -> None:
    """Fail trials whose worker stopped beating; the storage's retry callback re-queues them."""
    optuna.storages.fail_stale_trials(st)


def heartbeat_ages(storage: RDBStorage, trials: list[FrozenTrial]) -> list[Running]:
    """Heartbeat ages by the database's clock, the one Optuna's staleness check uses."""
    ids = [fence.trial_id(t) for t in trials]
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
        beat = beats.get(fence.trial_id(t))
        age = (now - beat).total_seconds() if beat is not None else None
        started = (local_now - t.datetime_start).total_seconds() if t.datetime_start else None
        out.append(Running(t, age, started))
    return out


def silent_after(hb: config.Heartbeat) -> float:
    """A healthy worker beats within milliseconds of creating a trial; allow for clock skew."""
    return max(3.0 * hb.grace_period, 60.0)


def fail_and_retry(st: optuna.Study, storage: RDBStorage, dead: list[FrozenTrial]) -> None:
    """Mark trials FAIL and queue their retries, as Optuna does for stale ones."""
    callback = storage.get_heartbeat_stale_trial_callback()
    for t in dead:
        try:
            storage.set_trial_state_values(fence.trial_id(t), TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        if callback is not None:
            callback(st, storage.get_trial(fence.trial_id(t)))


def retry_failed_own(st: optuna.Study, storage: RDBStorage, trial_id: int) -> bool:
    """Queue a retry of this worker's trial that ended FAIL because the storage failed under
    it (Optuna told it FAIL once a write got through), as a dead worker's trial is queued;
    whether one was queued. Best effort: with the storage still away the trial stays RUNNING,
    goes stale and another worker retries it."""
    try:
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.FAIL or trial.user_attrs.get("interrupted"):
            return False
        history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history
        if any(history(t)[-1:] == [trial.number] for t in st.get_trials(deepcopy=False)):
            return False  # another worker failed it as stale and queued it already
        callback = storage.get_heartbeat_stale_trial_callback()
        if callback is None:
            return False
        callback(st, trial)
    except Exception:
        return False
    return True


def fail_dead(st: optuna.Study, storage: Storage, hb: config.Heartbeat) -> bool:
    """Free the budget slots of dead workers' trials (stale, or never beat) and retry them;
    whether any was found. One query when all is well: it runs before every claim."""
    running = storage.running_trials(fence.study_id(st))
    grace = storage.stale_after() if storage.get_heartbeat_interval() else None
    stale = grace is not None and any(
        age is not None and age > grace for _tid, _start, age in running
    )
    # A RUNNING trial with no heartbeat row that started long ago: Optuna never fails it.
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    silent = [
        tid
        for tid, start, age in running
        if age is None and start is not None and (now - start).total_seconds() > silent_after(hb)
    ]
    if not stale and not silent:
        return False
    fail_stale(st)
    fail_and_retry(st, storage, [storage.get_trial(i) for i in silent])
    return True


def storage_watch(
    storage: Storage, hb: config.Heartbeat, log: Callable[[str], None]
) -> Callable[[], None]:
    """The per-epoch check: raise ``StorageLost`` once heartbeats have failed for an interval.

    A short outage (a database restart) costs nothing: the check waits out the rest of one
    interval for a beat to get through, then says the storage is back and training goes on.
    """

    def check() -> None:
        since = storage.heartbeat_failing_since() if isinstance(storage, Storage) else None
        if since is None:
            return
        log("storage not answering heartbeats; waiting up to one interval for it")
        deadline = since + hb.interval
        while time.monotonic() < deadline:
            if storage.reachable():
                log("reconnected to the storage; the trial goes on")
                return
            time.sleep(0.5)
        raise StorageLost(
            f"lost the storage (no heartbeat got through for {hb.interval}s); this trial "
            "will be retried by a worker once the storage is back"
        )

    return check
