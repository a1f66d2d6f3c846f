"""Chaos: many faults during one study, then a check that nothing was lost.

    PYTHONPATH=. python -m bench.chaos [--workers 6] [--budget 30] [--epochs 15] [--seed 0]
                                       [--kills 6] [--restarts 2] [--stops 1]
                                       [--sqlite-workers 4] [--sqlite-kills 4] [--pgbouncer]
                                       [--out FILE]

On a throwaway PostgreSQL server (``bench.pgserver``), N ``fishopt worker`` processes share one
study on ``--data digits``. A supervisor restarts any worker that exits non-zero (as Kubernetes'
``restartPolicy: OnFailure`` or compose's ``restart: on-failure`` would). At seeded random
moments (a random share of the budget started, then a random delay) it SIGKILLs a worker that
is running a trial, restarts PostgreSQL (``pg_ctl stop -m fast`` + start: every connection cut), and
SIGSTOPs one training worker for longer than the stale timeout before SIGCONT. With
``--pgbouncer``, the same again with the workers behind PgBouncer (transaction pooling, 10 server
connections). Then the same on SQLite with SIGKILLs only. At the end ``audit`` checks the study:

- exactly the budget COMPLETE (no pruner: nothing PRUNED), nothing RUNNING or WAITING;
- trial numbers unique and contiguous;
- every FAIL retried exactly once, with its parameters and its seed;
- every COMPLETE trial's value, curve and reported epochs agree and span all epochs;
- the best trial's weights present in the artifact store, their sha256 as recorded;
- SQLite: ``PRAGMA integrity_check`` = ok.

Workers run exactly the command the cluster recipes run (``worker_argv``; ``deploy/``), with
every setting in the environment (``worker_env``). The run prints ``key=value`` lines, one per
fault count and check, and exits 1 if a check failed. ``tests/storage/test_chaos.py`` runs a short
version with the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from bench import pgserver
from fishopt import config, redact
from fishopt.bundle import artifacts
from fishopt.errors import FishoptError
from fishopt.storage.connect import open_storage

REPO = Path(__file__).resolve().parent.parent
STUDY = "chaos"

SPEC = """description = "chaos run: faults during a shared study"
kind = "custom"
epochs = {epochs}
seed = 5
n_trials = {budget}
split = [0.7, 0.2, 0.1]

[sampler]
name = "random"

[pruner]
name = "none"

[fixed]
hidden = [32]
batch_size = 16

[space]
optimizer = ["SGD", "Adam", "AdamW"]
lr = {{ low = 1e-3, high = 1e-1, log = true }}
"""


STOP_AT_MOST = 60.0  # seconds a SIGSTOPped worker is held at most

# 0: budget spent; -9: our SIGKILL; 75: lost the storage for longer than one heartbeat interval.
EXPECTED_EXITS = (0, -signal.SIGKILL, 75)


def worker_argv(study: str) -> list[str]:
    """``fishopt ARGV``: the worker command of the chaos run and of every recipe in deploy/."""
    return ["worker", study, "--threads", "1"]


# The settings a worker takes from its environment, here and in deploy/ (config.ENV_*, libpq's).
WORKER_ENV = (
    config.ENV_STORAGE,
    config.ENV_DATA,
    config.ENV_CACHE,
    config.ENV_ARTIFACTS,
    config.ENV_HEARTBEAT_INTERVAL,
    config.ENV_GRACE_PERIOD,
    config.ENV_MAX_RETRY,
    "PGPASSWORD",
)


@dataclass(frozen=True)
class Plan:
    """What one chaos run does: its study, its workers and the faults to inject."""

    backend: str  # postgresql | pgbouncer (PostgreSQL behind PgBouncer) | sqlite
    workers: int
    budget: int
    epochs: int
    kills: int
    restarts: int = 0  # PostgreSQL restarts
    stops: int = 0  # SIGSTOP past the stale timeout, then SIGCONT
    seed: int = 0
    interval: int = 2  # heartbeat interval, s
    grace: int = 6  # stale after, s
    max_retry: int = 10  # a trial can be hit more than once; never let a retry chain run out
    timeout: float = 540.0  # the whole run, s
    # Faults come once this share of the budget has started (the SIGSTOP just after): a short
    # run (the suite's) takes them all in its first trials, before the budget is spent.
    spread: float = 0.6
    jitter: float = 2.0  # each fault waits up to this many seconds more, s

    @property
    def faults(self) -> list[str]:
        return ["kill"] * self.kills + ["restart"] * self.restarts + ["stop"] * self.stops


def worker_env(plan: Plan, storage: str, work: Path, password: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FISHOPT_")}
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    settings = {
        config.ENV_STORAGE: storage,
        config.ENV_DATA: "digits",
        config.ENV_CACHE: str(work / "cache"),
        config.ENV_ARTIFACTS: str(work / "artifacts"),
        config.ENV_HEARTBEAT_INTERVAL: str(plan.interval),
        config.ENV_GRACE_PERIOD: str(plan.grace),
        config.ENV_MAX_RETRY: str(plan.max_retry),
    }
    if password is not None:
        settings["PGPASSWORD"] = password
    assert set(settings) <= set(WORKER_ENV)
    env.update(settings)
    return env


# ------------------------------------------------------------------------------ supervisor


class Process(Protocol):
    """What the supervisor needs of a worker process (``subprocess.Popen`` has it)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


# Starts ``fishopt ARGS`` with this environment, stdout and stderr to the file descriptor.
Launch = Callable[[list[str], dict, int], Process]


def fresh_interpreter(args: list[str], env: dict, out: int) -> subprocess.Popen:
    """A worker as users start one: ``python -m fishopt.cli ARGS``. (The suite forks its
    workers warm instead, tests/forkserver.py: the same code without 4 s of imports each.)"""
    return subprocess.Popen(
        [sys.executable, "-m", "fishopt.cli", *args],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


@dataclass
class Slot:
    """One worker seat: the process in it now, and how its earlier processes ended."""

    index: int
    log: Path
    proc: Process | None = None
    exits: list[int] = field(default_factory=list)
    done: bool = False  # exited 0: the budget is spent


class Supervisor:
    """Keeps N workers running: a worker that exits non-zero is started again."""

    def __init__(
        self, argv: list[str], env: dict, folder: Path, n: int, launch: Launch = fresh_interpreter
    ) -> None:
        self.argv, self.env, self.launch = argv, env, launch
        self.slots = [Slot(i, folder / f"w{i}.log") for i in range(n)]
        self.starts = 0

    def start(self, slot: Slot) -> None:
        with slot.log.open("a") as handle:
            slot.proc = self.launch(self.argv, self.env, handle.fileno())
        self.starts += 1

    def start_all(self) -> None:
        for slot in self.slots:
            self.start(slot)

    def poll(self) -> None:
        for slot in self.slots:
            if slot.done or slot.proc is None or slot.proc.poll() is None:
                continue
            slot.exits.append(slot.proc.returncode)
            if slot.proc.returncode == 0:
                slot.done = True
            else:
                self.start(slot)

    def alive(self) -> dict[int, Slot]:
        return {s.proc.pid: s for s in self.slots if s.proc is not None and s.proc.poll() is None}

    @property
    def finished(self) -> bool:
        return all(s.done for s in self.slots)

    def stop_all(self) -> None:
        for s in self.slots:
            if s.proc is not None and s.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s.proc.pid, signal.SIGCONT)
                s.proc.kill()
                s.proc.wait()

    def exit_codes(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for s in self.slots:
            for code in s.exits:
                counts[code] = counts.get(code, 0) + 1
        return counts

    def output(self) -> str:
        return "".join(s.log.read_text(errors="replace") for s in self.slots if s.log.exists())


# ---------------------------------------------------------------------------------- faults


@dataclass
class Faults:
    """What was injected, for the report."""

    kills: int = 0
    restarts: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    stops: int = 0
    stop_seconds: list[float] = field(default_factory=list)
    stopped_trials: list[int] = field(default_factory=list)  # RUNNING on the worker at SIGSTOP
    planned: int = 0


class Study:
    """The chaos study as the injector sees it (tolerates a storage that is restarting)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._storage = None

    def trials(self) -> list[FrozenTrial] | None:
        try:
            if self._storage is None:
                self._storage = open_storage(self.url, heartbeat=False)
            st = optuna.load_study(study_name=STUDY, storage=self._storage)
            return st.get_trials(deepcopy=False)
        except (KeyError, FishoptError, Exception):  # not created yet, or the server restarting
            return None

    def state(self, number: int) -> TrialState | None:
        return next((t.state for t in self.trials() or [] if t.number == number), None)

    def training(self, epochs: int) -> dict[int, int]:
        """pid -> trial number of each RUNNING trial with two epochs or more still to train: its
        worker is in the middle of it, not finishing it and taking the claim lock for the next
        (a worker stopped while it holds that lock stops every claim until SIGCONT)."""
        out = {}
        for t in self.trials() or []:
            who = str(t.user_attrs.get("worker", ""))
            if t.state == TrialState.RUNNING and ":" in who and (t.last_step or 0) <= epochs - 2:
                out[int(who.rsplit(":", 1)[1])] = t.number
        return out


def moments(plan: Plan, rng: random.Random) -> list[tuple[float, float, str]]:
    """When each fault comes: (share of the budget started, extra delay in s, fault). Started,
    not finished: the last faults still find trials running. A SIGSTOP comes last: while its
    worker is not heard from past the stale timeout, the others may take the rest of the
    budget, and a kill after it would find no trial left to land in."""
    faults = plan.faults
    rng.shuffle(faults)
    return sorted(
        (
            rng.uniform(plan.spread, plan.spread + 0.1)
            if f == "stop"
            else rng.uniform(0.05, plan.spread),
            rng.uniform(0, plan.jitter),
            f,
        )
        for f in faults
    )


def inject(
    plan: Plan, sup: Supervisor, study: Study, server: pgserver.Postgres | None
) -> tuple[Faults, bool]:
    """Run the study to its end while injecting the plan's faults; (faults, ended in time)."""
    rng = random.Random(plan.seed)
    queue = moments(plan, rng)
    faults = Faults(planned=len(queue))
    stopped: dict[int, tuple[int, float]] = {}  # pid -> (its trial, when it was stopped)
    stale_after = plan.grace + 2 * plan.interval + 2  # well past the stale timeout
    due: float | None = None
    began = time.monotonic()
    while not sup.finished:
        if time.monotonic() - began > plan.timeout:
            return faults, False
        sup.poll()
        now = time.monotonic()
        for pid, (number, at) in list(stopped.items()):
            # Held past the stale timeout until another worker has failed its trial (that
            # happens when one claims a slot), at most STOP_AT_MOST seconds.
            if now - at >= stale_after and (
                now - at >= STOP_AT_MOST or study.state(number) == TrialState.FAIL
            ):
                os.kill(pid, signal.SIGCONT)
                faults.stop_seconds.append(round(now - at, 1))
                del stopped[pid]
        if queue and due is None:
            ts = study.trials()
            started = sum(t.state != TrialState.WAITING for t in ts or [])
            if ts is not None and started >= queue[0][0] * plan.budget:
                due = now + queue[0][1]
        if queue and due is not None and now >= due:
            head = queue.pop(0)
            if not _inject_one(head[2], plan, rng, sup, study, server, faults, stopped):
                # No target for it now: the next fault goes first, so one that needs a worker
                # in the middle of a trial does not hold up a restart behind it.
                queue.insert(min(1, len(queue)), head)
            due = None
        time.sleep(0.2)
    for pid in stopped:  # the study ended while a worker was stopped (it was not needed)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    return faults, True


def _inject_one(
    fault: str,
    plan: Plan,
    rng: random.Random,
    sup: Supervisor,
    study: Study,
    server: pgserver.Postgres | None,
    faults: Faults,
    stopped: dict[int, tuple[int, float]],
) -> bool:
    """Inject ``fault`` now if there is a target; whether it was injected."""
    if fault == "restart":
        assert server is not None
        faults.restart_seconds.append(round(server.restart(), 1))
        faults.restarts += 1
        return True
    # A SIGKILL may land anywhere in a trial (the locks it holds die with it); a SIGSTOP only
    # in the middle of one, where the worker holds no claim lock.
    window = plan.epochs + 1 if fault == "kill" else plan.epochs
    training = {pid: n for pid, n in study.training(window).items() if pid in sup.alive()}
    training = {pid: n for pid, n in training.items() if pid not in stopped}
    if not training:
        return False  # nobody is training right now: try again at the next poll
    pid = rng.choice(sorted(training))
    if fault == "kill":
        os.kill(pid, signal.SIGKILL)
        faults.kills += 1
    else:
        os.kill(pid, signal.SIGSTOP)
        stopped[pid] = (training[pid], time.monotonic())
        faults.stops += 1
        faults.stopped_trials.append(training[pid])
    return True


# ----------------------------------------------------------------------------------- audit


@dataclass
class Audit:
    """The study's state after the run, and every way it broke an invariant."""

    trials: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    duplicate_numbers: int = 0
    retried_once: int = 0  # FAIL trials with exactly one retry, same params and seed
    curves_intact: int = 0
    best_trial: int | None = None
    best_artifact: str = "not checked"
    integrity: str = "not checked"
    problems: list[str] = field(default_factory=list)

    def lines(self, prefix: str) -> list[str]:
        keys = [f.name for f in fields(self) if f.name != "problems"]
        out = [f"{prefix}.{k}={getattr(self, k)}" for k in keys]
        return [*out, f"{prefix}.problems={len(self.problems)}"]


def retry_of(t: FrozenTrial) -> int | None:
    """The number of the original trial this one retries, through any retries between
    (Optuna's retry history starts with it; fishopt's requeue records it as ``retry_of``)."""
    history = RetryHeartbeatStaleTrialCallback.retry_history(t)
    return history[0] if history else t.user_attrs.get("retry_of")


def audit(
    trials: list[FrozenTrial],
    budget: int,
    epochs: int,
    study: optuna.Study | None = None,
    artifacts_dir: Path | None = None,
) -> Audit:
    """Check a finished shared study against the invariants in the module docstring."""
    a = Audit(trials=len(trials))
    bad = a.problems.append
    numbers = sorted(t.number for t in trials)
    a.duplicate_numbers = len(numbers) - len(set(numbers))
    if numbers != list(range(len(trials))):
        bad(f"trial numbers not unique and contiguous: {numbers}")
    states = [t.state for t in trials]
    a.complete, a.pruned = states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED)
    a.failed, a.running = states.count(TrialState.FAIL), states.count(TrialState.RUNNING)
    a.waiting = states.count(TrialState.WAITING)
    if a.complete != budget or a.pruned:
        bad(f"{a.complete} COMPLETE and {a.pruned} PRUNED; budget {budget}")
    if a.running or a.waiting:
        bad(f"{a.running} RUNNING and {a.waiting} WAITING left")
    by_number = {t.number: t for t in trials}
    retries: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        origin = retry_of(t)
        if origin is not None:
            retries.setdefault(int(origin), []).append(t)
    for t in trials:
        # A retry killed in its turn is retried again under the same origin: the chain of an
        # original failed trial must end in exactly one COMPLETE run (no work done twice).
        if t.state != TrialState.FAIL or retry_of(t) is not None:
            continue
        chain = retries.get(t.number, [])
        done = [r for r in chain if r.state == TrialState.COMPLETE]
        if len(done) != 1:
            bad(f"failed trial {t.number}: {len(done)} complete retries among {len(chain)}")
            continue
        (r,) = done
        seeds = (t.user_attrs.get("seed"), r.user_attrs.get("seed"))
        # A trial failed before all its parameters were drawn is retried with those it had.
        if not t.params.items() <= r.params.items():
            bad(f"trial {r.number} retries {t.number} with other parameters")
            continue
        if seeds[0] is not None and seeds[0] != seeds[1]:
            bad(f"trial {r.number} retries {t.number} with another seed")
            continue
        a.retried_once += 1
    for origin in retries:
        if origin not in by_number or by_number[origin].state != TrialState.FAIL:
            bad(f"a retry of trial {origin}, which did not fail")
    for t in trials:
        if t.state == TrialState.COMPLETE:
            why = _curve_problem(t, epochs)
            if why:
                bad(f"trial {t.number}: {why}")
            else:
                a.curves_intact += 1
    if study is not None and artifacts_dir is not None:
        a.best_artifact = _best_artifact(a, study, trials, artifacts_dir)
    return a


def _curve_problem(t: FrozenTrial, epochs: int) -> str | None:
    history = t.user_attrs.get("history")
    if not history or t.value is None:
        return "no curve or no value"
    curve = [r["valid_f1"] for r in history]
    if [r["epoch"] for r in history] != list(range(1, epochs + 1)):
        return f"curve has epochs {[r['epoch'] for r in history]}, not 1..{epochs}"
    if t.user_attrs.get("epochs_run") != len(curve):
        return "epochs_run differs from the curve"
    # The value is the best epoch's valid F1; the stored curve is rounded to 6 places.
    if not math.isclose(t.value, max(curve), abs_tol=1e-6):
        return f"value {t.value} is not the curve's best {max(curve)}"
    if curve[t.user_attrs["best_epoch"] - 1] != max(curve):
        return "best_epoch does not point at the curve's best"
    reported = t.intermediate_values
    if sorted(reported) != list(range(1, epochs + 1)) or any(
        abs(reported[r["epoch"]] - r["valid_f1"]) > 1e-6 for r in history
    ):
        return "reported epochs differ from the stored curve"
    return None


def _best_artifact(a: Audit, study: optuna.Study, trials: list[FrozenTrial], folder: Path) -> str:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return "no complete trial"
    best = max(float(t.value) for t in done)  # type: ignore[arg-type]
    stored = artifacts.stored_trials(study)
    if not stored or stored[0].value != best:
        a.problems.append(f"no stored weights for the best value {best}")
        return "missing"
    a.best_trial = stored[0].number
    try:
        artifacts.fetch(stored[0], folder)  # reads the file and checks its sha256
    except FishoptError as exc:
        a.problems.append(str(exc))
        return "sha256 mismatch" if "sha256" in str(exc) else "missing"
    return "ok"


def integrity(path: Path) -> str:
    """SQLite's own check of every page and index of the file."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(r[0]) for r in rows)


# ------------------------------------------------------------------------------------- run


@dataclass
class Result:
    plan: Plan
    faults: Faults
    audit: Audit
    seconds: float
    worker_starts: int
    exit_codes: dict[int, int]
    tracebacks: int
    output: str = field(repr=False, default="")

    def lines(self) -> list[str]:
        p, f, b = self.plan, self.faults, self.plan.backend
        codes = ",".join(f"{c}:{n}" for c, n in sorted(self.exit_codes.items()))
        return [
            f"{b}.workers={p.workers}",
            f"{b}.budget={p.budget}",
            f"{b}.epochs={p.epochs}",
            f"{b}.heartbeat={p.interval}s grace={p.grace}s",
            f"{b}.faults_planned={f.planned}",
            f"{b}.sigkills={f.kills}",
            f"{b}.pg_restarts={f.restarts}",
            f"{b}.pg_restart_seconds={','.join(map(str, f.restart_seconds)) or '-'}",
            f"{b}.sigstops={f.stops}",
            f"{b}.sigstop_seconds={','.join(map(str, f.stop_seconds)) or '-'}",
            f"{b}.stopped_trials={','.join(map(str, f.stopped_trials)) or '-'}",
            f"{b}.worker_starts={self.worker_starts}",
            f"{b}.worker_exits={codes}",
            f"{b}.tracebacks={self.tracebacks}",
            *self.audit.lines(b),
            f"{b}.seconds={self.seconds:.0f}",
        ]

    @property
    def ok(self) -> bool:
        return not self.audit.problems

    def errors(self) -> list[str]:
        """The workers' one-line errors, each once (why a worker exited non-zero)."""
        lines = [line.strip() for line in self.output.splitlines() if "error: " in line]
        return sorted({line.split("] ", 1)[-1] for line in lines})


def run(plan: Plan, work: Path | None = None, launch: Launch = fresh_interpreter) -> Result:
    """One chaos run in a fresh folder (and, for PostgreSQL, a fresh server)."""
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fishopt-chaos-")))
        server = None
        if plan.backend in ("postgresql", "pgbouncer"):
            server = stack.enter_context(pgserver.postgres(max_connections=100))
            url = server.url  # the audit's own URL; workers get the password from PGPASSWORD
            if plan.backend == "pgbouncer":  # workers through a pooler of 10 connections
                url = stack.enter_context(pgserver.pgbouncer(server, pool_size=10)).url
            worker_url = url.replace(f":{pgserver.PASSWORD}@", "@")
            env = worker_env(plan, worker_url, work, password=pgserver.PASSWORD)
        else:
            url = worker_url = f"sqlite:///{work / 'chaos.db'}"
            env = worker_env(plan, worker_url, work)
        spec = work / f"{STUDY}.toml"
        spec.write_text(SPEC.format(epochs=plan.epochs, budget=plan.budget))
        open_storage(url, heartbeat=False)  # the tables, once, before the workers race
        sup = Supervisor(worker_argv(str(spec)), env, work, plan.workers, launch)
        began = time.monotonic()
        try:
            sup.start_all()
            faults, in_time = inject(plan, sup, Study(url), server)
        finally:
            sup.stop_all()
        seconds = time.monotonic() - began
        storage = open_storage(url, heartbeat=False)
        study = optuna.load_study(study_name=STUDY, storage=storage)
        result = audit(
            study.get_trials(deepcopy=False), plan.budget, plan.epochs, study, work / "artifacts"
        )
        storage.engine.dispose()
        if not in_time:
            result.problems.append(f"the study did not end within {plan.timeout:.0f}s")
        if faults.kills + faults.restarts + faults.stops < faults.planned:
            result.problems.append(
                f"{faults.planned - faults.kills - faults.restarts - faults.stops} planned "
                "faults were not injected before the study ended"
            )
        for trial in faults.stopped_trials:
            t = next((t for t in study.get_trials(deepcopy=False) if t.number == trial), None)
            if t is None or t.state != TrialState.FAIL:
                result.problems.append(f"stopped worker's trial {trial} was not failed as stale")
        if plan.backend == "sqlite":
            result.integrity = integrity(work / "chaos.db")
            if result.integrity != "ok":
                result.problems.append(f"integrity_check: {result.integrity}")
        output = sup.output()
        odd = {c: n for c, n in sup.exit_codes().items() if c not in EXPECTED_EXITS}
        if odd:
            result.problems.append(f"workers exited with unexpected codes {odd}")
        if output.count("Traceback"):
            result.problems.append(f"{output.count('Traceback')} tracebacks in the workers' logs")
        return Result(
            plan=plan,
            faults=faults,
            audit=result,
            seconds=seconds,
            worker_starts=sup.starts,
            exit_codes=sup.exit_codes(),
            tracebacks=output.count("Traceback"),
            output=output,
        )


# ------------------------------------------------------------------------------------ main


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    ap.add_argument("--only", help="one run: postgresql, pgbouncer or sqlite")
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--stops", type=int, default=1)
    ap.add_argument("--sqlite-workers", type=int, default=4)
    ap.add_argument("--sqlite-kills", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--pgbouncer", action="store_true", help="also the PostgreSQL run through PgBouncer"
    )
    ap.add_argument("--out", type=Path, help="write the counts as Markdown (bench/CHAOS.md)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    redact.quiet_warnings()  # the audit reads Optuna's (experimental) retry history
    plans = [
        Plan("postgresql", args.workers, args.budget, args.epochs, args.kills,
             args.restarts, args.stops, args.seed),
        Plan("sqlite", args.sqlite_workers, args.budget, args.epochs, args.sqlite_kills,
             seed=args.seed),
    ]  # fmt: skip
    if args.pgbouncer or args.only == "pgbouncer":
        plans.insert(1, Plan("pgbouncer", args.workers, args.budget, args.epochs, args.kills,
                             args.restarts, args.stops, args.seed))  # fmt: skip
    plans = [p for p in plans if args.only in (None, p.backend)]
    results = []
    for plan in plans:
        work = Path(tempfile.mkdtemp(prefix=f"fishopt-chaos-{plan.backend}-"))
        result = run(plan, work)
        results.append(result)
        if result.ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"{plan.backend}.logs={work}", flush=True)  # kept, to read why
        for line in result.lines():
            print(line, flush=True)
        for problem in result.audit.problems:
            print(f"{plan.backend}.problem: {problem}", flush=True)
        for line in result.errors():
            print(f"{plan.backend}.worker_error: {line}", flush=True)
    if args.out:
        args.out.write_text(markdown(results, args))
    return 0 if all(r.ok for r in results) else 1


def markdown(results: list[Result], args: argparse.Namespace) -> str:
    from bench.common import machine

    m = machine(1)
    rows = [r.lines() for r in results]
    keys = [line.split("=", 1)[0].split(".", 1)[1] for line in rows[0]]
    table = ["| | " + " | ".join(r.plan.backend for r in results) + " |"]
    table.append("|---|" + "---|" * len(results))
    for i, key in enumerate(keys):
        table.append(f"| {key} | " + " | ".join(r[i].split("=", 1)[1] for r in rows) + " |")
    command = "python -m bench.chaos " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in vars(args).items()
        if k != "out" and v is not False and v is not None
    )
    return "\n".join(
        [
            "# Chaos run",
            "",
            f"`{command}`",
            "",
            f"Machine: {m['cpu']}, {m['cores']}; load at start {m['load average at start']}",
            "",
            *table,
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
