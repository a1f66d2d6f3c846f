"""Helpers for the multi-worker tests: real worker processes, storage polling, invariants.

Workers are real ``python -m fishopt.cli worker`` processes, forked from a server that has
imported torch already (``forkserver``: the same code, 4 s less CPU per start). Tests wait for
states by polling the storage (never by sleeping a fixed time) and check the study afterwards.
A test that needs a trial "still training" when it acts holds it there (``Held``,
fishopt/search/hold.py) and checks the order of events, never how many seconds they took. Every
process started here is killed at the end of the test that started it, whatever happened
(``kill_leftovers``, from conftest).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import forkserver
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from fishopt.storage.connect import open_storage

REPO = Path(__file__).resolve().parent.parent
# Beats every second; silent for 10 s means dead. A shorter grace period misjudges a live worker
# on a loaded 2-core machine (its heartbeat thread starved for seconds) and fails its trial.
GRACE = 10
HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", str(GRACE)]


def spec_file(folder: Path, epochs: int, n_trials: int, name: str = "tiny") -> Path:
    """A tiny custom study: random search over optimizer and lr, one 16-unit layer."""
    path = folder / f"{name}.toml"
    path.write_text(
        f"""description = "multi-worker test study"
kind = "custom"
epochs = {epochs}
seed = 3
n_trials = {n_trials}
split = [0.7, 0.2, 0.1]

[sampler]
name = "random"

[pruner]
name = "none"

[fixed]
hidden = [16]
batch_size = 16

[space]
optimizer = ["SGD", "Adam", "AdamW"]
lr = {{ low = 1e-3, high = 1e-1, log = true }}
"""
    )
    return path


@dataclass
class Worker:
    proc: forkserver.Forked
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def env_for(storage: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FISHOPT_")}
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        FISHOPT_STORAGE=storage,
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


_STARTED: list[Worker] = []  # every process started by ``start``, for ``kill_leftovers``


def start(args: list[str], log: Path, env: dict[str, str]) -> Worker:
    """``fishopt ARGS`` as a real process, forked warm (``forkserver``), output to a file (a
    pipe could fill and block)."""
    # Best-model artifacts go beside the log, not into the repository's ./fishopt-artifacts.
    env = {"FISHOPT_ARTIFACTS": str(log.parent / "artifacts"), **env}
    with log.open("w") as handle:
        proc = forkserver.warm(args, env, handle.fileno())
    worker = Worker(proc, log)
    _STARTED.append(worker)
    return worker


def kill_leftovers() -> None:
    """SIGKILL every process ``start`` started that still runs (a test failed or timed out)."""
    while _STARTED:
        w = _STARTED.pop()
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


@dataclass(frozen=True)
class Held:
    """Trials held at an epoch boundary (``FISHOPT_TEST_HOLD``) until ``release()``.

    Give ``env`` to one process; ``wait(worker)`` returns the number of the trial it holds,
    once it is held: RUNNING, ``epoch - 1`` epochs reported, the next not yet."""

    path: Path  # the release file; ``<path>.held`` appears when a trial waits
    epoch: int = 2

    @property
    def env(self) -> dict[str, str]:
        return {"FISHOPT_TEST_HOLD": f"{self.epoch}:{self.path}"}

    def wait(self, worker: Worker, timeout: float = 180.0) -> int:
        marker = self.path.with_name(self.path.name + ".held")

        def held() -> bool:
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker {worker.pid} exited:\n{worker.output()[-3000:]}")
            return marker.exists()

        wait_for(f"worker {worker.pid} to hold a trial at epoch {self.epoch}", held, timeout)
        return int(marker.read_text())

    def release(self) -> None:
        self.path.touch()


def worker_args(spec: Path, fish: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "worker",
        str(spec),
        "--data",
        str(fish),
        "--cache-dir",
        str(cache),
        "--threads",
        "1",
        *HEARTBEAT,
        *extra,
    ]


def wait_for(what: str, check: Callable[[], object], timeout: float = 180.0) -> object:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


_STORAGES: dict[str, object] = {}


def trials(storage: str, name: str) -> list[FrozenTrial]:
    """The study's trials now (one storage object per URL: polling must be cheap)."""
    if storage not in _STORAGES:
        _STORAGES[storage] = open_storage(storage, heartbeat=False)
    try:
        st = optuna.load_study(study_name=name, storage=_STORAGES[storage])
    except KeyError:
        return []
    return st.get_trials(deepcopy=False)


def training(
    worker: Worker, storage: str, name: str, max_step: int = 10, alive: bool = True
) -> FrozenTrial | None:
    """A RUNNING trial of ``worker`` that has reported an epoch, but at most ``max_step``:
    it is training now and has epochs ahead of it."""
    if alive and worker.proc.poll() is not None:
        raise AssertionError(f"worker {worker.pid} exited early:\n{worker.output()[-3000:]}")
    for t in trials(storage, name):
        if (
            t.state == TrialState.RUNNING
            and str(t.user_attrs.get("worker", "")).endswith(f":{worker.pid}")
            and t.last_step is not None
            and t.last_step <= max_step
        ):
            return t
    return None


def wait_exit(workers: list[Worker], timeout: float = 180.0) -> list[int]:
    end = time.monotonic() + timeout
    codes = []
    for w in workers:
        try:
            codes.append(w.proc.wait(timeout=max(1.0, end - time.monotonic())))
        except subprocess.TimeoutExpired:
            for other in workers:
                if other.proc.poll() is None:
                    other.proc.kill()
            raise AssertionError(f"worker {w.pid} did not exit:\n{w.output()[-3000:]}") from None
    return codes


def kill_all(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGKILL)
            w.proc.wait()


def retried_from(t: FrozenTrial) -> int | None:
    return RetryHeartbeatStaleTrialCallback.retried_trial_number(t)


def check_study(ts: list[FrozenTrial], budget: int, failed: int = 0) -> None:
    """The invariants every shared study must keep."""
    numbers = sorted(t.number for t in ts)
    assert numbers == list(range(len(ts))), f"trial numbers not unique/contiguous: {numbers}"
    states = [t.state for t in ts]
    assert TrialState.RUNNING not in states, "a trial was left RUNNING"
    finished = [t for t in ts if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == budget, f"{len(finished)} finished, budget {budget}"
    assert sum(s == TrialState.FAIL for s in states) == failed
    for t in finished:
        curve = [r["valid_f1"] for r in t.user_attrs["history"]]
        assert len(curve) == t.user_attrs["epochs_run"]
        best = max(curve)
        # The value is the best epoch's valid F1; the stored curve is rounded to 6 places.
        assert math.isclose(t.value, best, abs_tol=1e-6), (t.number, t.value, curve)
        assert curve[t.user_attrs["best_epoch"] - 1] == best
        reported = t.intermediate_values
        assert sorted(reported) == [r["epoch"] for r in t.user_attrs["history"]]
        assert all(
            abs(reported[r["epoch"]] - r["valid_f1"]) < 1e-6 for r in t.user_attrs["history"]
        )


def start_dashboard(storage: str, folder: Path, *args: str, env: dict[str, str]) -> tuple:
    """``fishopt dashboard --port 0 ARGS`` as a process; (Worker, its loopback base URL).

    Port 0: the kernel picks a free port as the server binds it, and the server prints it (a
    port found free beforehand can be taken by another process before the server binds it).
    """
    import re

    log = folder / "dashboard.log"
    cmd = ["dashboard", "--storage", storage, "--port", "0"]
    dash = start([*cmd, "--artifacts-dir", str(folder / "artifacts"), *args], log, env)
    address = re.compile(r"at http://(?:127\.0\.0\.1|0\.0\.0\.0)(:\d+)/dashboard")

    def served() -> str | None:
        if dash.proc.poll() is not None:
            raise AssertionError(f"dashboard exited: {dash.output()}")
        m = address.search(dash.output())
        return f"http://127.0.0.1{m.group(1)}" if m else None

    return dash, wait_for("the dashboard's address", served)


def signal_taken(worker: Worker, signum: int) -> bool:
    """Whether ``signum``, sent to the process, is no longer pending in the kernel: a thread has
    taken it, so Python runs the handler before the main thread's next bytecode; a trial held
    at an epoch boundary has acted on it before it can see its release file."""
    status = Path(f"/proc/{worker.pid}/status").read_text()
    bit = 1 << (signum - 1)
    pending = [int(line.split()[1], 16) for line in status.splitlines() if "Pnd:" in line]
    return not any(mask & bit for mask in pending)
