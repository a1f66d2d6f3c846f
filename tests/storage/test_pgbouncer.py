"""fishopt behind PgBouncer in transaction pooling, with the ordinary URL and nothing else set.

A throwaway PostgreSQL with ``max_connections = 10`` and PgBouncer (pool of 5 server
connections) in front (``bench.pgserver``): six workers, about 15 client connections, finish
exactly the budget; the study lock stays exclusive with more waiters than the pool has server
connections; a pooler that dies costs a worker one line and exit 75, and the trial is retried
once it is back. Needs Debian's ``postgresql-15`` and ``pgbouncer`` (`.ci/run` installs them):
required in CI, skipped elsewhere.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from optuna.trial import TrialState
from worker_support import (
    REPO,
    Held,
    check_study,
    env_for,
    retried_from,
    spec_file,
    start,
    trials,
    wait_exit,
)

from bench import pgserver
from fishopt.storage import locks
from fishopt.storage.connect import open_storage

# One throwaway server for the module's tests (about 40 s together): they stay together.
pytestmark = pytest.mark.slow(seconds=25)

MAX_CONNECTIONS = 10
POOL = 5  # PgBouncer's server connections, all workers together


@pytest.fixture(scope="module")
def bounced(server_binaries: None) -> Iterator[pgserver.Bouncer]:
    with (
        pgserver.postgres(max_connections=MAX_CONNECTIONS) as pg,
        pgserver.pgbouncer(pg, pool_size=POOL) as bouncer,
    ):
        yield bouncer


class Peaks:
    """Connections sampled while something runs: PgBouncer's clients and PostgreSQL's own."""

    def __init__(self, bouncer: pgserver.Bouncer) -> None:
        self.bouncer, self.clients, self.server = bouncer, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.clients = max(self.clients, self.bouncer.clients())
            self.server = max(self.server, self.bouncer.server.connections())
            time.sleep(0.1)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_more_workers_than_the_server_could_serve_finish_the_budget_through_pgbouncer(
    bounced: pgserver.Bouncer, tmp_path: Path
) -> None:
    """More workers than the server could take directly (each holds 2-3 connections): 6
    workers against 10 server connections here; `python -m bench.pgbouncer` runs 12 against
    20 and prints the peaks."""
    budget, jobs = 12, 6
    spec = spec_file(tmp_path, epochs=2, n_trials=budget, name="bounced")
    log = tmp_path / "study.log"
    with log.open("w") as out, Peaks(bounced) as peaks:
        code = subprocess.run(
            [sys.executable, "-m", "fishopt.cli", "study", str(spec), "--jobs", str(jobs),
             "--data", "digits", "--storage", bounced.url, "--threads", "1"],
            cwd=REPO, env=env_for(bounced.url), stdout=out, stderr=subprocess.STDOUT,
            timeout=240,
        ).returncode  # fmt: skip
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text and "too many" not in text, text[-3000:]
    ts = trials(bounced.url, "bounced")
    check_study(ts, budget=budget)
    print(f"\n{jobs} workers: peak {peaks.clients} client connections at PgBouncer, "
          f"{peaks.server} on PostgreSQL (max_connections {MAX_CONNECTIONS})")  # fmt: skip
    assert peaks.clients > MAX_CONNECTIONS, "the workers should need more than the server has"
    assert peaks.server <= POOL


def test_the_study_lock_is_exclusive_with_more_waiters_than_server_connections(
    bounced: pgserver.Bouncer,
) -> None:
    """Each holder reads a counter, waits, and writes it back plus one, in two transactions
    beside the lock's: two holders at once lose an update. A session-level lock would leak
    between PgBouncer's clients; a waiter blocked inside the server would hold a pooled
    connection, and with more waiters than the pool the holder could never finish."""
    bounced.server.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")  # a new database
    bounced.server.sql("CREATE TABLE IF NOT EXISTS lock_probe (n int)")
    bounced.server.sql("DELETE FROM lock_probe")
    bounced.server.sql("INSERT INTO lock_probe VALUES (0)")
    workers, rounds = POOL + 4, 5
    inside, most, errors = [0], [0], []
    guard = threading.Lock()

    def worker() -> None:
        try:
            # All at once against a new database, too: the tables are created once, in turn.
            storage = open_storage(bounced.url, heartbeat=False)
        except Exception as exc:
            errors.append(exc)
            return
        lock = locks.open_lock(storage, storage.url, "lock-probe")
        try:
            for _ in range(rounds):
                lock.acquire()
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                try:
                    with storage.engine.begin() as conn:
                        n = conn.execute(sqlalchemy.text("SELECT n FROM lock_probe")).scalar()
                    time.sleep(0.01)
                    with storage.engine.begin() as conn:
                        conn.execute(sqlalchemy.text("UPDATE lock_probe SET n = :n"), {"n": n + 1})
                finally:
                    with guard:
                        inside[0] -= 1
                    lock.release()
        except Exception as exc:
            errors.append(exc)
        finally:
            storage.engine.dispose()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "workers stuck on the study lock"
    assert not errors, errors
    assert most[0] == 1, f"{most[0]} holders at once"
    assert bounced.server.sql("SELECT n FROM lock_probe") == [(workers * rounds,)]


def test_a_pooler_that_dies_costs_one_line_and_the_trial_is_retried(
    bounced: pgserver.Bouncer, tmp_path: Path
) -> None:
    """The trial is held in training while PgBouncer dies; at its next storage call the
    worker says so in one line and exits 75; once the pooler is back, another worker retries
    the abandoned trial."""
    name = "pooler-lost"
    spec = spec_file(tmp_path, epochs=3, n_trials=1, name=name)
    beats = ["--heartbeat-interval", "1", "--grace-period", "3"]
    args = ["worker", str(spec), "--data", "digits", "--threads", "1", *beats]
    with pgserver.pgbouncer(bounced.server, pool_size=4) as own:
        env = env_for(own.url)
        hold = Held(tmp_path / "go")
        w = start(args, tmp_path / "w1.log", {**env, **hold.env})
        try:
            held = hold.wait(w)
            own.kill()
            hold.release()  # the trial reports its epoch to a pooler that is gone
            code = w.proc.wait(timeout=60)
        finally:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGKILL)
        out = w.output()
        assert code == 75, out
        assert "lost the storage" in out and "Traceback" not in out, out
        lines = [line for line in out.splitlines() if "] error: " in line]
        assert len(lines) == 1, out  # one line says it all

        own.start()  # back, on the same port: the next worker retries the abandoned trial
        w2 = start(args, tmp_path / "w2.log", env)
        assert wait_exit([w2], timeout=120) == [0], w2.output()
        ts = trials(own.url, name)
    check_study(ts, budget=1, failed=1)
    done = next(t for t in ts if t.state == TrialState.COMPLETE)
    assert retried_from(done) == held
