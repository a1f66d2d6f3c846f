"""``--jobs N``: N copies of the trial loop in local child processes, the cores divided.

Each child gets the same ``Options`` object (pickled by multiprocessing, not re-encoded as
command-line flags) and runs ``loop.run_worker``; the storage URL, which may hold a password,
travels inside that object, never on a command line that ``ps`` shows. Each child runs in its
own session, so a terminal Ctrl-C reaches only the parent, which forwards every signal exactly
once: Ctrl-C once lets the running trials finish, twice stops them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from multiprocessing import forkserver
from pathlib import Path
from types import FrameType

import optuna

from fishopt import config
from fishopt.errors import FishoptError
from fishopt.logline import log_lines
from fishopt.search.session import Options, prepare_data
from fishopt.storage.connect import open_storage
from fishopt.storage.sqlite import sqlite_warnings

Log = Callable[[str], None]
KeepModel = Callable[[Path, Log], Callable[..., None]]  # as ``loop.KeepModel``


def _child(opts: Options, tag: str, keep_model: KeepModel | None) -> None:
    """A child's whole life: its own process group, the loop, an exit code."""
    os.setsid()  # the terminal's Ctrl-C goes to the parent only, which forwards it once
    from fishopt import redact, shutdown
    from fishopt.search.loop import run_worker, worker_id

    redact.install()
    shutdown.install()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a fresh interpreter: say it again
    ident = worker_id()

    def log(message: str) -> None:
        for line in log_lines(message, f"{tag} [{ident}] ", opts.storage):
            print(line, file=sys.stderr, flush=True)

    try:
        _session, outcome = run_worker(opts, log, keep_model=keep_model)
    except FishoptError as exc:
        log(f"error: {exc}")
        sys.exit(exc.exit_code)
    sys.exit(outcome.exit_code)


# What every child imports: torch, the trial loop, the hook that keeps the best model, and
# torch._dynamo, which the first optimizer of every process imports (seconds each).
PRELOAD = ["fishopt.search.loop", "fishopt.bundle.artifacts", "torch._dynamo"]


def _context() -> mp.context.BaseContext:
    """Children forked from multiprocessing's fork server, which has imported ``PRELOAD`` and
    run nothing else: like a fresh interpreter, no torch threads or locks to inherit (forking
    this process, which has trained and opened connections, would be unsafe), yet each child
    starts in a fraction of a second instead of paying the imports again (3-5 s of CPU each,
    twice that with `--jobs` on a busy machine)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()  # started now, it imports in parallel with the caller
    return ctx


def run_jobs(opts: Options, jobs: int, log: Log, keep_model: KeepModel | None = None) -> int:
    """Start ``jobs`` workers on this machine, wait for them; the first non-zero exit code.
    ``keep_model`` is handed to each child's loop (a module-level function: it is pickled)."""
    url = config.resolve_storage(opts.storage)
    if url.backend == "sqlite" and url.sqlite_path is None:
        raise FishoptError(
            f"--jobs {jobs}: an in-memory SQLite database cannot be shared between processes; "
            "use a file (sqlite:///fishopt.db) or PostgreSQL"
        )
    ctx = _context()  # the fork server imports while this process prepares the study
    storage = open_storage(url, heartbeat=False)  # the tables, made once, before the children
    prepare_data(opts, storage, log)  # the data too: decoded once, read from the cache by each
    threads = opts.threads or max(1, (os.cpu_count() or 1) // jobs)
    child_opts = replace(opts, storage=url.text, threads=threads)
    for warning in sqlite_warnings(url, jobs):
        log(f"warning: {warning}")
    log(f"starting {jobs} workers x {threads} torch thread(s)")
    procs = [
        ctx.Process(
            target=_child, args=(child_opts, f"w{i + 1}", keep_model), name=f"fishopt-w{i + 1}"
        )
        for i in range(jobs)
    ]

    def forward(signum: int, _frame: FrameType | None) -> None:
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    codes = [p.exitcode or 0 for p in procs]
    # A child killed by a signal reports -signum; say it the shell's way.
    return next((c if c > 0 else 128 - c for c in codes if c != 0), 0)
