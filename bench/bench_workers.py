"""Trials per hour: 1 worker x 2 torch threads vs 2 workers x 1 thread, and SIGKILL recovery.

    PYTHONPATH=. python -m bench.bench_workers [--trials 8] [--epochs 4] [--per-class 150]
                                               [--repeats 2] [--grace 3]

Both runs train the same study spec (fixed 2655-256-128-9 MLP, Adam, random lr) on the same
synthetic data, each into its own SQLite file, with real ``fishopt worker`` processes. Figures:

- wall: from starting the processes to the last one exiting (includes start-up: imports,
  data from cache, joining the study);
- steady: trials / (last trial end - first trial start), read from the storage.

Then 2 workers run a study with a short heartbeat; one is SIGKILLed while training, and the time
from the kill to its retried trial starting (on the other worker) is printed. Prints figures;
never passes or fails on time.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from fishopt import data
from fishopt.storage.connect import open_storage

REPO = Path(__file__).resolve().parent.parent

SPEC = """description = "bench: worker throughput"
kind = "custom"
epochs = {epochs}
seed = 0
n_trials = {trials}

[sampler]
name = "random"

[pruner]
name = "none"

[fixed]
hidden = [256, 128]
optimizer = "Adam"
batch_size = 50

[space]
lr = {{ low = 1e-4, high = 3e-3, log = true }}
"""


def _env(storage: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FISHOPT_")}
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        FISHOPT_STORAGE=storage,
        PYTHONUNBUFFERED="1",
    )
    return env


def _worker(
    spec: Path,
    data_arg: str,
    cache: Path,
    storage: str,
    threads: int,
    log: Path,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen:
    handle = log.open("w")
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fishopt.cli",
                "worker",
                str(spec),
                "--data",
                data_arg,
                "--cache-dir",
                str(cache),
                "--threads",
                str(threads),
                *extra,
            ],
            cwd=REPO,
            env=_env(storage),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    finally:
        handle.close()


def _trials(storage: str, name: str = "bench") -> list[optuna.trial.FrozenTrial]:
    try:
        st = optuna.load_study(study_name=name, storage=open_storage(storage, heartbeat=False))
    except KeyError:
        return []
    return st.get_trials(deepcopy=False)


def throughput(
    workers: int, threads: int, spec: Path, data_arg: str, cache: Path, folder: Path
) -> tuple[float, float, int]:
    storage = f"sqlite:///{folder / f'w{workers}x{threads}.db'}"
    t0 = time.perf_counter()
    procs = [
        _worker(spec, data_arg, cache, storage, threads, folder / f"w{workers}x{threads}-{i}.log")
        for i in range(workers)
    ]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"a worker failed: {codes}; see {folder}")
    done = [t for t in _trials(storage) if t.state == TrialState.COMPLETE]
    span = max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    return len(done) / wall * 3600, len(done) / span.total_seconds() * 3600, len(done)


def kill_latency(spec: Path, data_arg: str, cache: Path, folder: Path, grace: int) -> float:
    storage = f"sqlite:///{folder / 'kill.db'}"
    hb = ("--heartbeat-interval", "1", "--grace-period", str(grace))
    procs = [
        _worker(spec, data_arg, cache, storage, 1, folder / f"kill-{i}.log", hb) for i in range(2)
    ]
    victim = procs[0]
    killed = None
    while killed is None:
        if victim.poll() is not None:
            raise SystemExit(f"the victim finished before it could be killed; see {folder}")
        for t in _trials(storage, "kill"):
            if (
                t.state == TrialState.RUNNING
                and t.intermediate_values
                and str(t.user_attrs.get("worker", "")).endswith(f":{victim.pid}")
            ):
                killed = t
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    killed_at = datetime.now()
    victim.wait()
    procs[1].wait()
    retry = next(
        t
        for t in _trials(storage, "kill")
        if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number
    )
    return (retry.datetime_start - killed_at).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--grace", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="fishopt-bench-workers-"))
    cache = folder / "cache"
    data_arg = f"synthetic:{args.per_class}:118x89"
    ds, _ = data.load(data.parse_source(data_arg), cache)  # generate + decode once, untimed
    spec = folder / "bench.toml"
    spec.write_text(SPEC.format(epochs=args.epochs, trials=args.trials))
    print(
        f"{len(ds.y)} images x {ds.X.shape[1]} features, 2655-256-128-9 MLP, "
        f"{args.epochs} epochs, {args.trials} trials, {os.cpu_count()} cores; logs in {folder}"
    )
    results: dict[tuple[int, int], list[tuple[float, float]]] = {(1, 2): [], (2, 1): []}
    for r in range(args.repeats):  # alternate, so drifting load on a shared machine hits both
        for workers, threads in ((1, 2), (2, 1)):
            run = folder / f"run{r}"
            run.mkdir(exist_ok=True)
            wall, steady, n = throughput(workers, threads, spec, data_arg, cache, run)
            results[(workers, threads)].append((wall, steady))
            print(
                f"run {r + 1}: {workers} worker(s) x {threads} thread(s): {n} trials, "
                f"{wall:7.0f} trials/h wall, {steady:7.0f} trials/h steady",
                flush=True,
            )
    (w1, s1), (w2, s2) = (
        tuple(statistics.median(x[i] for x in results[key]) for i in (0, 1))
        for key in ((1, 2), (2, 1))
    )
    print(f"median trials/h: 1x2 wall {w1:.0f} steady {s1:.0f}; 2x1 wall {w2:.0f} steady {s2:.0f}")
    print(
        f"ratio (2 workers x 1 thread) / (1 worker x 2 threads): "
        f"wall {w2 / w1:.2f}, steady {s2 / s1:.2f}",
        flush=True,
    )
    kill_spec = folder / "kill.toml"
    kill_spec.write_text(SPEC.format(epochs=max(args.epochs, 6), trials=4))
    delay = kill_latency(kill_spec, data_arg, cache, folder, args.grace)
    print(
        f"SIGKILL -> retried trial started after {delay:.1f}s "
        f"(heartbeat 1s, grace period {args.grace}s)"
    )


if __name__ == "__main__":
    main()
