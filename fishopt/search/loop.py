"""Workers: many processes, on one machine or many, running trials of one study.

A worker loads the data, joins (or creates) the study and runs trials until the study's global
budget is spent (``claim`` hands out slots so it is never overshot). Signals are handled so that
no trial is ever left RUNNING:

- SIGTERM/SIGINT once: the current trial finishes and is stored, then the worker exits 0;
- twice: the current trial is stopped at its next epoch boundary, marked FAIL (``interrupted``)
  and queued again for another worker, and the worker exits 128 + signal;
- SIGKILL (or a lost machine): the trial's heartbeats stop, and after the grace period another
  worker fails it and runs the same parameters again (with the same seed).

``run_jobs`` starts N such workers as local processes for ``fishopt study --jobs N``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from fishopt import config, data
from fishopt.bundle import artifacts
from fishopt.errors import FishoptError
from fishopt.search import claim, doctor, space
from fishopt.search import objective as study
from fishopt.search import session as runner
from fishopt.search import spec as specs
from fishopt.search.storage import backend, open_storage, sqlite_path, sqlite_warnings

Log = Callable[[str], None]
MAX_FAILS_IN_A_ROW = 3  # a worker whose trials keep failing has a bug to report, not a budget


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
def handle_signals(flags: Flags, log: Log) -> Iterator[None]:
    """SIGINT/SIGTERM once = finish the trial; twice = stop now. Restores the old handlers."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if flags.hard:
            return  # already stopping; cleanup is short and must not be cut
        flags.signum = signum
        if not flags.soft:
            flags.soft = True
            log(f"{name}: finishing the current trial, then exiting (send it again to stop now)")
            return
        flags.hard = True
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
    ran: int  # trials this worker ran to an end state
    reason: str  # budget | timeout | signal | interrupted
    exit_code: int


def resolve_budget(st: optuna.Study, spec: specs.StudySpec) -> int | None:
    """The global budget: the study's recorded --n-trials, else the spec's, else the grid."""
    stored = claim.stored_budget(st)
    return stored if stored is not None else runner.budget(spec, None)


def _sleep(seconds: float, flags: Flags) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (flags.soft or flags.hard):
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))


def work(
    ctx: study.Context,
    st: optuna.Study,
    lock: claim.Lock,
    *,
    hb: config.Heartbeat,
    flags: Flags,
    log: Log,
    timeout: float | None = None,
    on_trained: study.TrainedHook | None = None,
    callbacks: Sequence[runner.TrialCallback] = (),
    storage: RDBStorage | None = None,
) -> Outcome:
    """Claim and run trials until the budget is spent, the timeout passes or a signal comes."""
    if resolve_budget(st, ctx.spec) is None and timeout is None:
        raise FishoptError(
            f"study {st.study_name!r} has neither a trial budget nor a timeout; "
            "pass --n-trials or --timeout"
        )
    # A second signal stops training at the next epoch boundary (study.objective polls it),
    # so the interrupt never lands inside one of Optuna's storage writes.
    inner = study.objective(ctx, on_trained, stop_now=lambda: flags.hard)
    me = worker_id()
    current: dict[str, optuna.Trial] = {}

    def objective(trial: optuna.Trial) -> float:
        # Optuna has created (or popped) the trial under our lock: the slot is ours.
        lock.release()
        current["trial"] = trial
        trial.set_user_attr("worker", me)
        try:
            if flags.hard:  # the second signal came while this trial was being created
                space.suggest(trial, ctx.spec)  # its parameters, so it can be queued again
                raise KeyboardInterrupt
            return inner(trial)
        except KeyboardInterrupt:
            flags.interruptible = False
            trial.set_user_attr("interrupted", True)
            raise
        finally:
            flags.interruptible = False

    last: dict[str, FrozenTrial] = {}

    def remember(_s: optuna.Study, t: FrozenTrial) -> None:
        last["trial"] = t
        log(_describe(t))

    all_callbacks = [study.repeat_callback(ctx.spec), remember, *callbacks]
    poll = max(0.5, min(hb.interval, 5.0))
    started = time.monotonic()
    ran = fails_in_row = 0
    waiting_said = False
    try:
        while True:
            if flags.soft or flags.hard:
                return Outcome(ran, "signal", flags.exit_code)
            if timeout is not None and time.monotonic() - started >= timeout:
                return Outcome(ran, "timeout", 0)
            lock.acquire()
            try:
                claim.fail_stale(st)
                if storage is not None:
                    doctor.fail_silent(st, storage, hb)
                total = resolve_budget(st, ctx.spec)
                counts = claim.count(st)
                if total is not None and counts.finished >= total:
                    return Outcome(ran, "budget", 0)
                if (total is None or counts.claimed < total) and not (flags.soft or flags.hard):
                    st.optimize(objective, n_trials=1, callbacks=all_callbacks)
                    ran += 1
                    waiting_said = False
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
                    f"budget {total} is claimed ({counts.finished} finished, {counts.running} "
                    f"running); waiting for running trials to finish or go stale"
                )
                waiting_said = True
            flags.interruptible = True
            try:
                _sleep(poll, flags)
            finally:
                flags.interruptible = False
    except KeyboardInterrupt:
        flags.interruptible = False
        _after_interrupt(st, lock, current.get("trial"))
        return Outcome(ran, "interrupted", 128 + (flags.signum or signal.SIGINT))


def _after_interrupt(st: optuna.Study, lock: claim.Lock, trial: optuna.Trial | None) -> None:
    """Nothing stays RUNNING, and the interrupted parameters go back in the queue."""
    lock.release()
    if trial is not None:
        frozen = st._storage.get_trial(trial._trial_id)
        if frozen.state == TrialState.RUNNING:  # interrupted outside Optuna's own handling
            st._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            st._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    lock.acquire()
    try:
        study.requeue_interrupted(st)
    finally:
        lock.release()


def _describe(t: FrozenTrial) -> str:
    took = (
        f" in {(t.datetime_complete - t.datetime_start).total_seconds():.1f}s"
        if t.datetime_complete and t.datetime_start
        else ""
    )
    value = f" valid F1 {t.value:.3f}" if t.value is not None else ""
    origin = study.origin_number(t)
    retry = f" (retry of trial {origin})" if origin != t.number else ""
    return f"trial {t.number} {t.state.name}{value}{took}{retry}"


# ------------------------------------------------------------------------------ one worker


@dataclass(frozen=True)
class WorkerOptions:
    study: str  # a spec name or .toml path, or the name of a study already in storage
    data: str | None = None
    storage: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    epochs: int | None = None
    seed: int | None = None
    name: str | None = None
    image_size: str | None = None
    device: str = "auto"
    threads: int | None = None
    strict: bool = False
    cache_dir: Path | None = None
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    max_retry: int | None = None


def _spec_for(opts: WorkerOptions, storage: optuna.storages.BaseStorage) -> specs.StudySpec:
    """The spec file if there is one; else the spec recorded in the study in storage."""
    try:
        base = specs.load(opts.study)
    except FishoptError as not_a_file:
        try:
            stored = optuna.load_study(study_name=opts.name or opts.study, storage=storage)
        except KeyError:
            raise not_a_file from None
        identity = stored.user_attrs.get(study.ATTR)
        if not identity:
            raise FishoptError(
                f"study {stored.study_name!r} was not created by fishopt (no spec recorded)"
            ) from None
        recorded = identity["spec"]
        raw = {k: v for k, v in recorded.items() if k in specs.TOP_KEYS and v is not None}
        base = specs.parse(raw, name=recorded["name"], source=f"study {stored.study_name}")
    return base.with_overrides(
        epochs=opts.epochs,
        seed=opts.seed,
        image_size=data.parse_size(opts.image_size) if opts.image_size else None,
    )


def run_worker(opts: WorkerOptions, log: Log) -> Outcome:
    """``fishopt worker``: everything from flags to a finished worker."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = config.resolve(storage=opts.storage, cache_dir=opts.cache_dir)
    hb = config.resolve_heartbeat(opts.heartbeat_interval, opts.grace_period, opts.max_retry)
    runner.set_threads(opts.threads)
    device = runner.resolve_device(opts.device)
    storage = open_storage(settings.storage, heartbeat=hb)
    spec = _spec_for(opts, storage)
    source, how = data.choose_source(opts.data, settings.data)
    log(how)
    loaded = runner.build_context(spec, source, settings, device=device, strict=opts.strict)
    name = opts.name or spec.name
    st = study.open_study(loaded.ctx, storage, name)
    st.sampler = study.make_sampler(spec, distributed=True)
    lock = claim.open_lock(storage, settings.storage, name)
    lock.acquire()
    try:
        if opts.n_trials is not None:
            claim.set_budget(st, opts.n_trials)
        requeued = study.requeue_interrupted(st)
        running = claim.count(st).running
    finally:
        lock.release()
    for warning in sqlite_warnings(settings.storage, running + 1):
        log(f"warning: {warning}")
    if not claim.exact(settings.storage):
        log("warning: this storage has no cross-process lock; the budget may be overshot by up")
        log("  to workers - 1 trials. PostgreSQL or a local SQLite file avoid this.")
    log(
        f"joined study {name!r} in {config.mask_url(settings.storage)}: budget "
        f"{resolve_budget(st, spec)}, {hb.describe()}, {torch_threads()} torch threads"
        + (f", {requeued} interrupted trial(s) queued again" if requeued else "")
    )
    flags = Flags()
    with handle_signals(flags, log):
        outcome = work(
            loaded.ctx,
            st,
            lock,
            hb=hb,
            flags=flags,
            log=log,
            timeout=opts.timeout,
            on_trained=artifacts.keep_best(settings.artifacts_dir),
            storage=storage,
        )
    log(f"done: {outcome.ran} trial(s) run here; stopped: {outcome.reason}")
    return outcome


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# --------------------------------------------------------------------- N local workers (--jobs)


def child_argv(opts: WorkerOptions) -> list[str]:
    """The ``fishopt worker`` flags that reproduce ``opts`` (the storage URL travels by env)."""
    argv = ["worker", opts.study]
    pairs = [
        ("--data", opts.data),
        ("--n-trials", opts.n_trials),
        ("--timeout", opts.timeout),
        ("--epochs", opts.epochs),
        ("--seed", opts.seed),
        ("--name", opts.name),
        ("--image-size", opts.image_size),
        ("--device", opts.device),
        ("--threads", opts.threads),
        ("--cache-dir", opts.cache_dir),
        ("--heartbeat-interval", opts.heartbeat_interval),
        ("--grace-period", opts.grace_period),
        ("--max-retry", opts.max_retry),
    ]
    for flag, value in pairs:
        if value is not None:
            argv += [flag, str(value)]
    if opts.strict:
        argv.append("--strict")
    return argv


def run_jobs(opts: WorkerOptions, jobs: int, storage_url: str, log: Log) -> int:
    """Start ``jobs`` worker processes on this machine, relay their output, wait for them.

    The cores are divided between them (torch threads per worker). Each worker runs in its own
    session, so a terminal Ctrl-C reaches only this parent, which forwards every signal exactly
    once: Ctrl-C once lets the running trials finish, twice stops them.
    """
    if backend(storage_url) == "sqlite" and sqlite_path(storage_url) is None:
        raise FishoptError(
            f"--jobs {jobs}: an in-memory SQLite database cannot be shared between processes; "
            "use a file (sqlite:///fishopt.db) or PostgreSQL"
        )
    threads = opts.threads or max(1, (os.cpu_count() or 1) // jobs)
    argv = child_argv(WorkerOptions(**{**opts.__dict__, "threads": threads}))
    # The URL (maybe with a password) goes by environment, never on a command line `ps` shows.
    env = {**os.environ, config.ENV_STORAGE: storage_url}
    for warning in sqlite_warnings(storage_url, jobs):
        log(f"warning: {warning}")
    log(f"starting {jobs} workers x {threads} torch thread(s)")
    procs: list[subprocess.Popen[str]] = []
    relays: list[threading.Thread] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(jobs):
            p = subprocess.Popen(
                [sys.executable, "-m", "fishopt.cli", *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            procs.append(p)
            relay = threading.Thread(target=_relay, args=(p, f"w{i + 1}", log), daemon=True)
            relay.start()
            relays.append(relay)
        codes = [p.wait() for p in procs]
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    for relay in relays:
        relay.join(timeout=5)
    return next((c for c in codes if c != 0), 0)


def _relay(p: subprocess.Popen[str], tag: str, log: Log) -> None:
    assert p.stdout is not None
    for line in p.stdout:
        log(f"{tag} {line.rstrip()}")
