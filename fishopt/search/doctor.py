"""``fishopt doctor``: what is wrong with a shared storage, and the safe fix.

It reports, per study, RUNNING trials with the age of their last heartbeat (stale ones belong to
dead workers), RUNNING trials that never sent a heartbeat, duplicate or missing trial numbers,
queued retries, and the heartbeat settings in use; for SQLite also the filesystem warnings.
``--fix`` fails stale trials through Optuna's own ``fail_stale_trials``, so the storage's retry
callback queues their parameters again, exactly as a live worker would.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from fishopt import config
from fishopt.search import claim, studies
from fishopt.storage import fence, heartbeats, reads
from fishopt.storage.connect import open_storage
from fishopt.storage.sqlite import sqlite_warnings


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: int = 0

    def say(self, line: str) -> None:
        self.lines.append(line)

    def problem(self, line: str) -> None:
        self.problems += 1
        self.lines.append(f"  PROBLEM: {line}")


def examine(
    url: config.StorageURL, hb: config.Heartbeat, name: str | None = None, *, fix: bool = False
) -> Report:
    report = Report()
    storage = open_storage(url, heartbeat=hb)
    report.say(f"storage {url.masked} ({url.backend})")
    report.say(f"heartbeat settings used here: {hb.describe()}")
    report.say(
        f"  (workers read {config.ENV_HEARTBEAT_INTERVAL}, {config.ENV_GRACE_PERIOD}, "
        f"{config.ENV_MAX_RETRY} or --heartbeat-interval/--grace-period/--max-retry)"
    )
    for warning in sqlite_warnings(url, 1):
        report.problem(warning)
    names = studies.names(storage)
    if name is not None:
        if name not in names:
            raise studies.missing_error([name], storage, url)
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
    numbers = reads.trial_numbers(storage, st)
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
    stale: list[heartbeats.Running] = []
    silent: list[heartbeats.Running] = []
    for r in heartbeats.heartbeat_ages(storage, running):
        who = r.trial.user_attrs.get("worker", "unknown worker")
        if r.age is None:
            started = f"started {r.started:.0f}s ago" if r.started is not None else ""
            report.say(f"  trial {r.trial.number} RUNNING on {who}: no heartbeat yet, {started}")
            if r.started is not None and r.started > heartbeats.silent_after(hb):
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
    stale: list[heartbeats.Running],
    silent: list[heartbeats.Running],
    report: Report,
) -> None:
    before = {t.number for t in st.get_trials(deepcopy=False)}
    heartbeats.fail_stale(st)  # Optuna's own: FAIL + the retry callback
    heartbeats.fail_and_retry(st, storage, [r.trial for r in silent])  # the ones Optuna skips
    after = st.get_trials(deepcopy=False)
    for r in [*stale, *silent]:
        now = next(t for t in after if fence.trial_id(t) == fence.trial_id(r.trial))
        if now.state == TrialState.FAIL:
            report.problems -= 1
            report.say(f"  fixed: trial {r.trial.number} marked FAIL")
    queued = [t.number for t in after if t.number not in before]
    if queued:
        report.say(f"  fixed: retries queued as trial(s) {queued}")
