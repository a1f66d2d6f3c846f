"""Connections on PostgreSQL with N workers, straight to the server and through PgBouncer.

    PYTHONPATH=. python -m bench.pgbouncer [--workers 12] [--budget 36] [--epochs 3] [--pool 10]

One throwaway PostgreSQL server (``max_connections`` 100, so the direct run fits) and PgBouncer
in transaction pooling in front of it (``--pool`` server connections). The same study is run
twice with N ``fishopt worker`` processes (the command of ``bench.chaos`` and ``deploy/``): once
with the server's URL, once with PgBouncer's. ``pg_stat_activity`` is sampled every 0.1 s
during each run; the peak count of client backends (the sampler's own excluded) is printed,
and for the PgBouncer run also the peak of client connections PgBouncer held. Prints
``key=value`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from bench import chaos, pgserver
from fishopt.storage.connect import open_storage


def sample(probe: Callable[[], int], stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a refused sample (a full server): next one counts
            peak[0] = max(peak[0], probe())
        time.sleep(0.1)


def one_run(
    url: str,
    server: pgserver.Postgres,
    bouncer: pgserver.Bouncer | None,
    args: argparse.Namespace,
    work: Path,
) -> dict:
    plan = chaos.Plan("postgresql", args.workers, args.budget, args.epochs, kills=0)
    spec = work / f"{chaos.STUDY}.toml"
    spec.write_text(chaos.SPEC.format(epochs=args.epochs, budget=args.budget))
    worker_url = url.replace(f":{pgserver.PASSWORD}@", "@")
    env = chaos.worker_env(plan, worker_url, work, password=pgserver.PASSWORD)
    open_storage(url, heartbeat=False).engine.dispose()
    sup = chaos.Supervisor(chaos.worker_argv(str(spec)), env, work, args.workers)
    stop = threading.Event()
    server_peak, client_peak = [0], [0]
    threads = [threading.Thread(target=sample, args=(server.connections, stop, server_peak))]
    if bouncer is not None:
        threads.append(threading.Thread(target=sample, args=(bouncer.clients, stop, client_peak)))
    began = time.monotonic()
    for t in threads:
        t.start()
    sup.start_all()
    try:
        while not sup.finished and time.monotonic() - began < 600:
            sup.poll()
            if any(code != 0 for s in sup.slots for code in s.exits):
                break  # a refused worker: report it, do not restart it forever
            time.sleep(0.2)
    finally:
        sup.stop_all()
        stop.set()
        for t in threads:
            t.join()
    storage = open_storage(url, heartbeat=False)
    trials = optuna.load_study(study_name=chaos.STUDY, storage=storage).get_trials()
    storage.engine.dispose()
    return {
        "peak_server_connections": server_peak[0],
        "peak_client_connections": client_peak[0] if bouncer is not None else server_peak[0],
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "worker_exits": ",".join(f"{c}:{n}" for c, n in sorted(sup.exit_codes().items())),
        "refused": sup.output().count("too many clients"),
        "seconds": round(time.monotonic() - began),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pgbouncer", description=__doc__)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--budget", type=int, default=36)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--pool", type=int, default=10, help="PgBouncer's server connections")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    print(f"workers={args.workers}")
    print(f"pool={args.pool}")
    with (
        pgserver.postgres(max_connections=100) as server,
        pgserver.pgbouncer(server, pool_size=args.pool) as bouncer,
    ):
        for label, url, via in (("direct", server.url, None), ("pgbouncer", bouncer.url, bouncer)):
            # A fresh database each time (PgBouncer has opened nothing to it before its run).
            server.sql(f"DROP DATABASE IF EXISTS {pgserver.DATABASE} WITH (FORCE)", "postgres")
            server.sql(f"CREATE DATABASE {pgserver.DATABASE}", "postgres")
            with tempfile.TemporaryDirectory(prefix=f"fishopt-{label}-") as tmp:
                result = one_run(url, server, via, args, Path(tmp))
            for key, value in result.items():
                print(f"{label}.{key}={value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
