"""The one trial loop: claim a budget slot, run a trial, repeat until the budget is spent.

``fishopt study`` runs it in-process, ``fishopt worker`` runs it on its own, ``--jobs N`` runs N
of it in child processes (``jobs``). Every path claims slots under the study's lock (``claim``),
so any mix of them on one study finishes with exactly the budget. Signals are handled so that no
trial is ever left RUNNING:

- a worker, on SIGTERM/SIGINT once, finishes the current trial, stores it and exits 0; twice, it
  stops the trial at its next epoch boundary, marks it FAIL (``interrupted``), queues it again
  and exits 128 + signal. ``fishopt study`` (a person at a terminal) stops at the first Ctrl-C;
- SIGKILL (or a lost machine): the trial's heartbeats stop and another worker retries it
  (``storage.heartbeats``);
- a lost storage: the trial stops at its next epoch boundary and the worker exits 75 with a
  message; the trial is retried once the storage is back.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from fishopt.config import mask_url
from fishopt.errors import FishoptError
from fishopt.search import requeue, space, studies, tuned
from fishopt.search.objective import TrainedHook, objective, repeat_callback
from fishopt.search.session import Options, Progress, Session, open_session
from fishopt.search.studies import origin_number
from fishopt.storage import fence, heartbeats, locks
from fishopt.storage.retry import retried

Log = Callable[[str], None]
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]
KeepModel = Callable[[Path, Log], TrainedHook]  # artifacts folder, log -> the keep-best hook
MAX_FAILS_IN_A_ROW = 3  # a worker whose trials keep failing has a bug to report, not a budget
# What a dropped database connection looks like from inside Optuna's storage calls.
STORAGE_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InternalError,  # psycopg's, when a pooler cuts a reply off
    optuna.exceptions.StorageInternalError,
)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------------------ signals


@dataclass
class Flags:
    """What the signal handler has asked for, and whether it may interrupt right now."""

    soft: bool = False  # finish the current trial, then exit
    hard: bool = False  # stop now
    signum: int = 0
    interruptible: bool = False  # True only while idly waiting (no storage write)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.hard else 0


@contextlib.contextmanager
def handle_signals(flags: Flags, log: Log, first_stops: bool = False) -> Iterator[None]:
    """SIGINT/SIGTERM once = finish the trial (or stop, with ``first_stops``); twice = stop.

    Restores the old handlers.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if flags.hard:
            return  # already stopping; cleanup is short and must not be cut
        flags.signum = signum
        if not flags.soft and not first_stops:
            flags.soft = True
            log(f"{name}: finishing the current trial, then exiting (send it again to stop now)")
            return
        flags.soft = flags.hard = True
        if not first_stops:
            log(f"{name} again: stopping now; the current trial is failed and queued again")
        if flags.interruptible:
            raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class Outcome:
    ran: int  # trials this process ran to an end state
    reason: str  # budget | timeout | signal | interrupted | storage
    exit_code: int


POLL_FIRST, POLL_MAX = 0.05, 0.5  # seconds between counts while waiting for running trials
DEAD_CHECK_EVERY = 1.0  # seconds between checks for dead workers' trials (``fail_dead``)


def _sleep(seconds: float, flags: Flags) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (flags.soft or flags.hard):
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))


def run(
    session: Session,
    *,
    flags: Flags,
    log: Log,
    callbacks: Sequence[TrialCallback] = (),
    on_trained: TrainedHook | None = None,
) -> Outcome:
    """Claim and run trials until the budget is spent, the timeout passes or a signal comes."""
    st, lock, hb, ctx = session.study, session.lock, session.heartbeat, session.ctx
    timeout = session.opts.timeout if session.opts.timeout is not None else ctx.spec.timeout
    if session.budget is None and timeout is None:
        raise FishoptError(
            f"study {st.study_name!r} has neither a trial budget nor a timeout; "
            "pass --n-trials or --timeout"
        )
    # A second signal stops training at the next epoch boundary (objective polls it), so the
    # interrupt never lands inside one of Optuna's storage writes.
    inner = objective(
        ctx,
        on_trained,
        stop_now=lambda: flags.hard,
        check_alive=heartbeats.storage_watch(session.storage, hb, log),
        tags={"worker": worker_id()},
        precision=session.precision,
    )
    current: dict[str, optuna.Trial] = {}
    taken: list[int] = []  # this worker's trial, failed as stale by another worker

    def claimed(trial: optuna.Trial) -> float:
        # Optuna has created (or popped) the trial under our lock: the slot is ours.
        lock.release()
        current["trial"] = trial
        try:
            if flags.hard:  # the second signal came while this trial was being created
                space.suggest(trial, ctx.spec)  # its parameters, so it can be queued again
                raise KeyboardInterrupt
            return inner(trial)
        except KeyboardInterrupt:
            flags.interruptible = False
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            taken.append(trial.number)
            raise heartbeats.TakenOver(trial.number) from None
        except STORAGE_ERRORS as exc:  # said in one line (Optuna logs the rest as a traceback)
            raise heartbeats.StorageLost(mask_url(_first_line(exc))) from None
        finally:
            flags.interruptible = False

    last: dict[str, FrozenTrial] = {}

    def remember(_s: optuna.Study, t: FrozenTrial) -> None:
        last["trial"] = t
        log(describe(t))

    all_callbacks = [repeat_callback(ctx.spec), remember, *callbacks]
    # The tuned protocol decides which trial comes next (which optimizer, which phase).
    plan = (lambda s, ts: tuned.plan(s, ctx.spec.tuned, ts)) if ctx.spec.tuned else None
    # One cheap count per poll. A worker waits when the budget is all claimed: the last trials
    # often end within a second, so the first polls come fast (a worker that waited 0.5 s for
    # the last 0.1 s trial left a core idle for the rest), and then slow down to 0.5 s.
    poll = POLL_FIRST
    started = time.monotonic()
    checked_dead = -math.inf
    ran = fails_in_row = 0
    waiting_said = False
    try:
        while True:
            if flags.soft or flags.hard:
                return Outcome(ran, "signal", flags.exit_code)
            if timeout is not None and time.monotonic() - started >= timeout:
                return Outcome(ran, "timeout", 0)
            _acquire(lock, hb.interval, log)
            try:
                counts = studies.state_tally(st)
                # Only a RUNNING trial can belong to a dead worker: with none, skip the check.
                # Death is judged over a grace period of seconds, so once a second is enough
                # (a worker of 0.1 s trials checked ten times a second).
                if counts.running and time.monotonic() - checked_dead >= DEAD_CHECK_EVERY:
                    checked_dead = time.monotonic()
                    if heartbeats.fail_dead(st, session.storage, hb):
                        counts = studies.state_tally(st)
                total = session.budget
                if total is not None and counts.finished >= total:
                    return Outcome(ran, "budget", 0)
                if (
                    (total is None or counts.claimed < total)
                    and not (flags.soft or flags.hard)
                    and (counts.waiting or plan is None or plan(st, st.get_trials(deepcopy=False)))
                ):
                    last.clear()
                    taken.clear()
                    current.pop("trial", None)
                    try:
                        # Dead trials were failed within a second (or none is RUNNING): see
                        # ``claiming``.
                        with _claiming(session.storage):
                            st.optimize(claimed, n_trials=1, callbacks=all_callbacks)
                    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
                        # Paused past the grace period (a frozen machine, SIGSTOP): the trial
                        # was failed and is retried elsewhere. Refused in the objective
                        # (then Optuna's tell says "Cannot tell a FAIL trial") or in the tell.
                        refused = isinstance(exc, optuna.exceptions.UpdateFinishedTrialError)
                        if "trial" not in current or not (taken or refused):
                            raise
                        log(str(heartbeats.TakenOver(current["trial"].number)))
                        continue
                    ran += 1
                    waiting_said = False
                    poll = POLL_FIRST
                    state = last["trial"].state if "trial" in last else TrialState.FAIL
                    fails_in_row = fails_in_row + 1 if state == TrialState.FAIL else 0
                    if fails_in_row >= MAX_FAILS_IN_A_ROW:
                        raise FishoptError(
                            f"{fails_in_row} trials in a row failed in this worker; "
                            f"see `fishopt show {st.study_name}` and the log above"
                        )
                    continue
            finally:
                lock.release()
            if not waiting_said:
                log(
                    f"budget {total}: {counts.finished} finished, {counts.running} running; "
                    "waiting for running trials to finish or go stale"
                )
                waiting_said = True
            flags.interruptible = True
            try:
                _sleep(poll, flags)
                poll = min(poll * 1.5, POLL_MAX)
            finally:
                flags.interruptible = False
    except KeyboardInterrupt:
        flags.interruptible = False
        _after_interrupt(st, lock, current.get("trial"))
        return Outcome(ran, "interrupted", 128 + (flags.signum or signal.SIGINT))
    except Exception as exc:
        # Optuna's own error handling can fail in odd ways when the database is gone (its
        # cleanup reads the trial back); whatever surfaces, a storage that does not answer
        # now is the cause to report.
        lost = _from_storage(exc) or not _answers(session)
        if not lost:
            raise
        lock.release()
        if "trial" in current:
            heartbeats.retry_failed_own(st, session.storage, fence.trial_id(current["trial"]))
        message = str(exc) if isinstance(exc, heartbeats.StorageLost) else _first_line(exc)
        log(f"error: {mask_url(message)}")
        return Outcome(ran, "storage", heartbeats.EXIT_STORAGE_LOST)


def _claiming(storage: object) -> contextlib.AbstractContextManager:
    """fishopt's storage's ``claiming`` scope; nothing for another storage (a bench's
    in-memory bound)."""
    claiming = getattr(storage, "claiming", None)
    return claiming() if claiming is not None else contextlib.nullcontext()


def _from_storage(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a storage failure: Optuna's cleanup
    after a failed write can itself fail (``AssertionError``) when the database takes reads
    but no writes (a full disk under a SQLite file)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (heartbeats.StorageLost, *STORAGE_ERRORS)):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _answers(session: Session) -> bool:
    reachable = getattr(session.storage, "reachable", None)
    return reachable() if reachable is not None else True


def _acquire(lock: locks.Lock, patience: float, log: Log) -> None:
    """Take the claim lock, riding out a dropped database connection for ``patience`` s."""
    first = time.monotonic()
    dropped = []  # waiting for another worker's lock is not a reconnect: say only a drop

    def again(exc: BaseException) -> bool:
        if isinstance(exc, sqlalchemy.exc.OperationalError):
            dropped.append(exc)
            return True
        return False

    retried(lock.acquire, again, patience=patience)
    if dropped:
        log(f"reconnected to the storage after {time.monotonic() - first:.1f}s")


def _cause_line(exc: BaseException) -> str:
    """The driver's own first line under Optuna's and SQLAlchemy's wrappers."""
    cause = exc.__cause__ or exc.__context__ or exc
    while isinstance(cause, optuna.exceptions.StorageInternalError) and cause.__cause__:
        cause = cause.__cause__
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


def _first_line(exc: BaseException) -> str:
    return (
        f"lost the storage ({_cause_line(exc)}); the running trial "
        "will be retried by a worker once the storage is back"
    )


def _after_interrupt(st: optuna.Study, lock: locks.Lock, trial: optuna.Trial | None) -> None:
    """Nothing stays RUNNING, and the interrupted parameters go back in the queue."""
    lock.release()
    if trial is not None:
        storage, tid = fence.storage_of(st), fence.trial_id(trial)
        frozen = storage.get_trial(tid)
        if not frozen.user_attrs.get("interrupted"):
            storage.set_trial_user_attr(tid, "interrupted", True)
        if frozen.state == TrialState.RUNNING:  # interrupted outside Optuna's own handling
            storage.set_trial_state_values(tid, TrialState.FAIL)
    lock.acquire()
    try:
        requeue.requeue_interrupted(st)
    finally:
        lock.release()


def describe(t: FrozenTrial) -> str:
    took = (
        f" in {(t.datetime_complete - t.datetime_start).total_seconds():.1f}s"
        if t.datetime_complete and t.datetime_start
        else ""
    )
    value = f" valid F1 {t.value:.3f}" if t.value is not None else ""
    origin = origin_number(t)
    retry = f" (retry of trial {origin})" if origin != t.number else ""
    return f"trial {t.number} {t.state.name}{value}{took}{retry}"


# ------------------------------------------------------------------------------ one worker


def run_worker(
    opts: Options,
    log: Log,
    progress: Progress | None = None,
    *,
    distributed: bool = True,
    first_signal_stops: bool = False,
    callbacks: Sequence[TrialCallback] = (),
    on_session: Callable[[Session], None] | None = None,
    keep_model: KeepModel | None = None,
) -> tuple[Session, Outcome]:
    """Options to a finished worker: the session, then the loop, with signals handled.

    ``fishopt worker``, each ``--jobs`` child and ``fishopt study`` (in-process, with a
    progress display through ``progress``, ``callbacks`` and ``on_session``) all call this.
    ``keep_model`` makes, from the artifacts folder, the hook that keeps the best model as it
    is found (``bundle.artifacts.keep_best``); the caller passes it, so the trial loop knows
    nothing of bundles.
    """
    try:
        session = open_session(opts, progress or Progress(log=log), distributed=distributed)
    except STORAGE_ERRORS as exc:  # the database (or its pooler) went away while joining
        raise heartbeats.StorageLost(
            mask_url(f"lost the storage while joining the study ({_cause_line(exc)})")
        ) from None
    for warning in session.warnings:
        log(f"warning: {warning}")
    # A dropped connection is retried for one heartbeat interval: a database restart costs a
    # pause; a database that stays away stops the worker within two intervals.
    session.storage.retry_for = session.heartbeat.interval
    session.storage.on_reconnect = log
    log(
        f"joined study {session.study.study_name!r} in {session.settings.storage.masked}:\n"
        f"  {session.heartbeat.describe()}\n"
        f"  budget {session.budget}, {torch_threads()} torch threads, {session.precision}, data "
        + ("from cache" if session.cache_hit else f"decoded in {session.load_seconds:.0f}s")
        + (f", {session.requeued} interrupted trial(s) queued again" if session.requeued else "")
    )
    if on_session is not None:
        on_session(session)
    flags = Flags()
    with handle_signals(flags, log, first_stops=first_signal_stops):
        outcome = run(
            session,
            flags=flags,
            log=log,
            callbacks=callbacks,
            on_trained=keep_model(session.settings.artifacts_dir, log) if keep_model else None,
        )
    log(f"done: {outcome.ran} trial(s) run here; stopped: {outcome.reason}")
    return session, outcome


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()
