"""What each Optuna storage costs a trial when many workers share one study (no training).

    PYTHONPATH=. python -m bench.bench_storage [--trials 60] [--workers 1,2,8] [--pg URL]

Each worker is a process that runs a study's bookkeeping only: ask, four suggestions, three
reports each followed by a median-pruner check, two user-attribute writes, tell. That is what
a fishopt trial asks of the storage, without the training in between, so the figure is the
storage's ceiling in trials per second and its cost per trial in milliseconds of wall time.

Storages compared:
- ``fishopt sqlite``: fishopt's ``Storage`` (storage/rdb.py) on a SQLite file, as a study
  runs by default;
- ``optuna sqlite``: Optuna's plain ``RDBStorage`` on the same kind of file (what fishopt
  started from);
- ``fishopt postgresql``: fishopt's ``Storage`` on PostgreSQL (with ``--pg``);
- ``journal file``: Optuna's ``JournalStorage`` on one append-only file;
- ``grpc proxy``: Optuna's gRPC storage proxy in front of a SQLite file (when grpcio is
  installed: ``pip install grpcio``).

Prints a table; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import optuna

SPACE = {"optimizer": ["SGD", "Adam", "AdamW", "RMSprop"]}


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # ask/tell, no optimize


def _storage(kind: str, where: str) -> optuna.storages.BaseStorage:
    if kind == "fishopt":
        from fishopt.storage.connect import open_storage

        return open_storage(where)
    if kind == "optuna":
        return optuna.storages.RDBStorage(where, heartbeat_interval=60)
    if kind == "journal":
        backend = optuna.storages.journal.JournalFileBackend(where)
        return optuna.storages.JournalStorage(backend)
    if kind == "grpc":
        host, port = where.split(":")
        return optuna.storages.GrpcStorageProxy(host=host, port=int(port))
    raise ValueError(kind)


def _bookkeeping(kind: str, where: str, n: int, barrier, out) -> None:
    """One worker: ``n`` trials of bookkeeping only."""
    _quiet()
    study = optuna.load_study(
        study_name="bench",
        storage=_storage(kind, where),
        sampler=optuna.samplers.RandomSampler(),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        trial.suggest_categorical("optimizer", SPACE["optimizer"])
        lr = trial.suggest_float("lr", 1e-4, 3e-2, log=True)
        trial.suggest_int("n_layers", 1, 2)
        trial.suggest_int("units", 16, 128, log=True)
        trial.set_user_attr("seed", 0)  # who the trial is, when it starts
        state = optuna.trial.TrialState.COMPLETE
        for epoch in range(1, 4):
            trial.report(lr * epoch, epoch)
            if trial.should_prune():
                state = optuna.trial.TrialState.PRUNED
                break
        trial.set_user_attr("history", [{"epoch": e, "valid_f1": lr} for e in range(3)])
        study.tell(trial, None if state == optuna.trial.TrialState.PRUNED else lr, state=state)
    out.put(time.perf_counter() - t0)


def measure(kind: str, where: str, workers: int, n: int) -> float:
    """Trials per second of ``workers`` processes sharing one fresh study."""
    _quiet()
    optuna.create_study(study_name="bench", storage=_storage(kind, where), direction="maximize")
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_bookkeeping, args=(kind, where, n, barrier, out))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"{kind}: a worker failed")
    return workers * n / wall


def _grpc_server(url: str, port: int) -> Callable[[], None]:
    """A gRPC proxy in a process of its own, in front of ``url``; returns its stopper."""
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_serve, args=(url, port), daemon=True)
    proc.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    return proc.kill


def _serve(url: str, port: int) -> None:
    _quiet()
    optuna.storages.run_grpc_proxy_server(
        optuna.storages.RDBStorage(url), host="127.0.0.1", port=port
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_storage", description=__doc__)
    ap.add_argument("--trials", type=int, default=60, help="trials per worker")
    ap.add_argument("--workers", default="1,2,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", help="a PostgreSQL URL whose database may be emptied")
    args = ap.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    try:
        import grpc  # noqa: F401

        has_grpc = True
    except ImportError:
        has_grpc = False
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="fishopt-storage-") as tmp:
        arms: list[tuple[str, Callable[[int], tuple[str, str, Callable[[], None]]]]] = []

        def sqlite(kind: str) -> Callable[[int], tuple[str, str, Callable[[], None]]]:
            def make(i: int) -> tuple[str, str, Callable[[], None]]:
                return kind, f"sqlite:///{tmp}/{kind}-{i}.db", lambda: None

            return make

        arms.append(("fishopt sqlite", sqlite("fishopt")))
        arms.append(("optuna sqlite", sqlite("optuna")))
        if args.pg:
            url = args.pg

            def pg(i: int) -> tuple[str, str, Callable[[], None]]:
                from fishopt.storage.connect import open_storage

                storage = open_storage(url, heartbeat=False)
                for s in storage.get_all_studies():
                    storage.delete_study(s._study_id)
                return "fishopt", url, lambda: None

            arms.append(("fishopt postgresql", pg))
        arms.append(("journal file", lambda i: ("journal", f"{tmp}/journal-{i}.log", lambda: None)))
        if has_grpc:

            def grpc_arm(i: int) -> tuple[str, str, Callable[[], None]]:
                port = _free_port()
                url = f"sqlite:///{tmp}/grpc-{i}.db"
                optuna.storages.RDBStorage(url)  # tables first, then the server
                return "grpc", f"127.0.0.1:{port}", _grpc_server(url, port)

            arms.append(("grpc proxy (SQLite)", grpc_arm))
        i = 0
        for label, make in arms:
            rates = []
            for w in counts:
                per = []
                for _ in range(args.rounds):
                    i += 1
                    kind, where, stop = make(i)
                    try:
                        per.append(measure(kind, where, w, args.trials))
                    finally:
                        stop()
                rates.append(statistics.median(per))
                print(f"  {label}, {w} worker(s): {rates[-1]:.0f} trials/s", flush=True)
            rows.append((label, rates))
    head = f"{'storage':<22}" + "".join(f"{f'{w} worker(s)':>15}" for w in counts)
    print("\nbookkeeping-only trials per second (median of rounds), ms of wall per trial:")
    print(head)
    for label, rates in rows:
        cells = "".join(f"{f'{r:.0f}/s {1000 / r:.1f}ms':>15}" for r in rates)
        print(f"{label:<22}{cells}")
    if not has_grpc:
        print("(grpc proxy not measured: pip install grpcio)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
