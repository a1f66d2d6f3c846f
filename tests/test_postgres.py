"""Many workers on a real PostgreSQL: sharing, SIGKILL recovery, a live dashboard, passwords.

Needs FISHOPT_TEST_PG (``.ci/run`` starts PostgreSQL 15 and exports it). Without it the tests
skip locally, but fail in CI (CI=true): a silently skipped PostgreSQL suite proves nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from optuna.trial import TrialState
from worker_support import (
    REPO,
    check_study,
    env_for,
    retried_from,
    spec_file,
    start,
    training,
    trials,
    wait_exit,
    wait_for,
    warm_cache,
    worker_args,
)

from fishopt import config, redact
from fishopt.search import claim, studies
from fishopt.storage import locks
from fishopt.storage.connect import open_storage


@pytest.fixture(scope="module")
def fish_cache(tiny_fish: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("pg-cache")
    warm_cache(tiny_fish, cache)
    return cache


def _password(url: str) -> str:
    pw = sqlalchemy.engine.make_url(url).password
    assert pw, "the test URL should carry a password"
    return str(pw)


def _without_password(url: str) -> str:
    return sqlalchemy.engine.make_url(url).set(password=None).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_four_workers_share_a_study_while_the_dashboard_reads_it(
    pg_url: str, tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    name = f"pg4-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, epochs=2, n_trials=8)
    secret = _password(pg_url)
    port = _free_port()
    open_storage(pg_url, heartbeat=False)  # tables exist (compose runs `fishopt studies` first)
    dashboard = start_dashboard(pg_url, port, tmp_path)
    workers = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for("the dashboard", lambda: _get(f"{base}/api/studies"), timeout=90)
        workers = [
            start(
                worker_args(spec, tiny_fish, fish_cache, "--name", name),
                tmp_path / f"w{i}.log",
                env_for(pg_url),
            )
            for i in range(4)
        ]
        reads = 0
        while any(w.proc.poll() is None for w in workers):
            studies = _get(f"{base}/api/studies")
            match = [
                s for s in (studies or {}).get("study_summaries", []) if s["study_name"] == name
            ]
            if match and _get(f"{base}/api/studies/{match[0]['study_id']}?after=0"):
                reads += 1
            time.sleep(0.2)
        codes = wait_exit(workers)
        outputs = [w.output() for w in workers]
        assert codes == [0, 0, 0, 0], outputs
        assert reads >= 3, "the dashboard should have served the study during the run"
        for out in outputs:
            assert "Traceback" not in out and "rror" not in out, out
            assert secret not in out
    finally:
        dashboard.proc.kill()
        dashboard.proc.wait()
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
    ts = trials(pg_url, name)
    check_study(ts, budget=8)
    assert len({t.user_attrs["worker"] for t in ts}) >= 2
    # No password in anything stored: study or trial attributes of any kind.
    stored = json.dumps(
        [[t.user_attrs, t.system_attrs, t.params] for t in ts], default=str
    ) + json.dumps(_study_attrs(pg_url, name), default=str)
    assert secret not in stored


def start_dashboard(url: str, port: int, tmp_path: Path):  # type: ignore[no-untyped-def]
    """optuna-dashboard on the same storage; its password comes from PGPASSWORD."""
    import shutil
    import subprocess
    import sys

    from worker_support import Worker

    exe = shutil.which("optuna-dashboard") or str(
        Path(sys.executable).with_name("optuna-dashboard")
    )
    log = tmp_path / "dashboard.log"
    env = env_for(url, PGPASSWORD=_password(url))
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [exe, "--host", "127.0.0.1", "--port", str(port), _without_password(url)],
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return Worker(proc, log)


def _get(url: str) -> dict | None:
    try:
        r = httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def _study_attrs(url: str, name: str) -> list:
    import optuna

    st = optuna.load_study(study_name=name, storage=url)
    return [st.user_attrs, st._storage.get_study_system_attrs(st._study_id)]


@pytest.mark.slow
def test_sigkill_one_of_four_workers_retries_its_trial_once(
    pg_url: str, tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    name = f"pgkill-{uuid.uuid4().hex[:8]}"
    epochs = 12
    # A budget the victim cannot miss out on (it may start last); cut down after the kill.
    spec = spec_file(tmp_path, epochs=epochs, n_trials=50)
    workers = [
        start(
            worker_args(spec, tiny_fish, fish_cache, "--name", name),
            tmp_path / f"w{i}.log",
            env_for(pg_url),
        )
        for i in range(4)
    ]
    victim = workers[0]
    try:
        wait_for(
            "the victim in training",
            lambda: training(victim, pg_url, name, max_step=epochs - 3),
        )
        victim.proc.send_signal(signal.SIGKILL)
        killed_at = datetime.now()
        victim.proc.wait()
        # Its trial at the moment it died (RUNNING until the grace period has passed).
        killed = training(victim, pg_url, name, max_step=epochs, alive=False)
        assert killed is not None
        budget = _cut_budget(pg_url, name)
        codes = wait_exit(workers[1:])
        assert codes == [0, 0, 0], [w.output() for w in workers[1:]]
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
    ts = trials(pg_url, name)
    check_study(ts, budget=budget, failed=1)
    dead = next(t for t in ts if t.number == killed.number)
    assert dead.state == TrialState.FAIL
    retries = [t for t in ts if retried_from(t) == killed.number]
    assert len(retries) == 1
    (retry,) = retries
    assert retry.state == TrialState.COMPLETE
    assert retry.params == dead.params and retry.user_attrs["seed"] == dead.user_attrs["seed"]
    assert retry.user_attrs["worker"] != dead.user_attrs["worker"]
    delay = (retry.datetime_start - killed_at).total_seconds()
    print(f"\nSIGKILL -> retried trial {retry.number} started after {delay:.1f}s (grace 3s)")
    assert delay >= 3 - 1  # not before the grace period (1 s slack: the DB clock ticks in s)


def _cut_budget(url: str, name: str) -> int:
    """Lower the study's global budget while workers run: what is running now, plus one.

    Done under the workers' own claim lock, so no worker claims a slot in between; they read
    the budget before every claim."""
    import optuna

    storage = open_storage(url, heartbeat=False)
    st = optuna.load_study(study_name=name, storage=storage)
    lock = locks.open_lock(storage, storage.url, name)
    lock.acquire()
    try:
        budget = studies.tally(st.get_trials(deepcopy=False)).claimed + 1
        claim.set_budget(st, budget)
    finally:
        lock.release()
    return budget


@pytest.mark.slow
def test_password_never_appears_in_output(pg_url: str, tmp_path: Path) -> None:
    secret = "S3cret-never-shown"
    parsed = sqlalchemy.engine.make_url(pg_url)
    refused = f"postgresql+psycopg://fishopt:{secret}@127.0.0.1:1/fishopt_test"
    wrong = parsed.set(password=secret).render_as_string(hide_password=False)
    no_pw = _without_password(pg_url)
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(
        f"{parsed.host}:{parsed.port or 5432}:{parsed.database}:{parsed.username}:"
        f"{parsed.password}\n"
    )
    pgpass.chmod(0o600)
    runs = {
        "refused": start(["studies", "--storage", refused], tmp_path / "a.log", env_for(refused)),
        "wrong": start(
            ["worker", "optimizers", "--storage", wrong], tmp_path / "b.log", env_for(wrong)
        ),
        "PGPASSWORD": start(
            ["studies", "--storage", no_pw],
            tmp_path / "c.log",
            env_for(no_pw, PGPASSWORD=_password(pg_url)),
        ),
        ".pgpass": start(
            ["studies", "--storage", no_pw],
            tmp_path / "d.log",
            env_for(no_pw, PGPASSFILE=str(pgpass)),
        ),
    }
    codes = dict(zip(runs, wait_exit(list(runs.values())), strict=True))
    out = {k: w.output() for k, w in runs.items()}
    assert codes["refused"] == 2 and "cannot open storage" in out["refused"], out["refused"]
    assert "fishopt:***@127.0.0.1:1" in out["refused"]
    assert codes["wrong"] == 2 and "password authentication failed" in out["wrong"], out["wrong"]
    # The password may come from PGPASSWORD or .pgpass instead of the URL.
    assert codes["PGPASSWORD"] == 0 and "studies in" in out["PGPASSWORD"], out["PGPASSWORD"]
    assert codes[".pgpass"] == 0 and "studies in" in out[".pgpass"], out[".pgpass"]
    for text in out.values():
        assert secret not in text and _password(pg_url) not in text
        assert "Traceback" not in text


def test_tracebacks_and_logs_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://fishopt:hunter2-pw@db.example:5432/x"
    monkeypatch.setenv(config.ENV_STORAGE, url)
    monkeypatch.setenv("PGPASSWORD", "other-pw-123")
    try:
        raise RuntimeError(f"could not use {url} (password hunter2-pw, other-pw-123)")
    except RuntimeError as exc:
        text = redact.format_exception(exc)
    assert "hunter2-pw" not in text and "other-pw-123" not in text
    assert "fishopt:***@db.example" in text
    import logging

    record = logging.LogRecord("optuna", logging.WARNING, __file__, 1, "url %s", (url,), None)
    redact.RedactFilter().filter(record)
    assert "hunter2-pw" not in record.getMessage()
    # Even a URL SQLAlchemy cannot parse has its password found.
    assert config.secrets("postgresql+psycopg//fishopt:pw-in-bad-url@host/db", env={}) == (
        "pw-in-bad-url",
    )


def _pg_cluster(action: str) -> None:
    """Stop, start or restart the local PostgreSQL cluster of the test URL (needs root)."""
    import shutil
    import subprocess

    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        pytest.skip("needs pg_ctlcluster as root to stop and start PostgreSQL")
    fast = ["-m", "fast"] if action in ("stop", "restart") else []
    subprocess.run(["pg_ctlcluster", "15", "main", action, *fast], check=True)
    if action in ("start", "restart"):
        wait_for("PostgreSQL to accept connections", lambda: _reachable(), timeout=60)


def _reachable() -> bool:
    try:
        engine = sqlalchemy.create_engine(
            os.environ["FISHOPT_TEST_PG"], connect_args={"connect_timeout": 2}
        )
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.mark.slow
def test_worker_that_loses_the_storage_exits_and_its_trial_is_retried(
    pg_url: str, tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """The database goes away mid-trial: the worker stops within two heartbeat intervals with
    a clear message instead of training on, and once the database is back another worker
    retries the trial it left RUNNING."""
    name = f"lost-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, epochs=400, n_trials=1, name=name)
    interval = 2
    env = env_for(pg_url)
    beats = ["--heartbeat-interval", str(interval), "--grace-period", "5"]
    args = ["worker", str(spec), "--data", str(tiny_fish), "--cache-dir", str(fish_cache)]
    w = start([*args, "--threads", "1", *beats], tmp_path / "w1.log", env)
    try:
        wait_for("a trial in training", lambda: training(w, pg_url, name, max_step=50))
        _pg_cluster("stop")
        stopped = time.monotonic()
        code = w.proc.wait(timeout=60)
        took = time.monotonic() - stopped
    finally:
        _pg_cluster("start")
        if w.proc.poll() is None:
            w.proc.kill()
    out = w.output()
    assert code == 75, out
    assert "lost the storage" in out and "Traceback" not in out, out
    # Two intervals, plus the epoch in flight and process exit on a busy 2-core machine.
    assert took < 2 * interval + 4, f"exited {took:.1f}s after the database stopped"

    w2 = start([*args, "--threads", "1", *beats], tmp_path / "w2.log", env)
    assert wait_exit([w2]) == [0], w2.output()
    ts = trials(pg_url, name)
    check_study(ts, budget=1, failed=1)
    done = next(t for t in ts if t.state == TrialState.COMPLETE)
    assert retried_from(done) == 0, "the abandoned trial 0 was run again"


@pytest.mark.slow
def test_a_postgresql_restart_costs_the_workers_a_pause_not_the_study(
    pg_url: str, tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """`pg_ctlcluster 15 main restart` while two workers train: they reconnect and the study
    ends with exactly its budget, nothing left RUNNING."""
    name = f"restart-{uuid.uuid4().hex[:8]}"
    budget = 6
    spec = spec_file(tmp_path, epochs=60, n_trials=budget, name=name)
    beats = ["--heartbeat-interval", "5", "--grace-period", "15"]
    args = ["worker", str(spec), "--data", str(tiny_fish), "--cache-dir", str(fish_cache)]
    ws = [
        start([*args, "--threads", "1", *beats], tmp_path / f"w{i}.log", env_for(pg_url))
        for i in range(2)
    ]
    try:
        wait_for(
            "both workers in training",
            lambda: all(training(w, pg_url, name, max_step=40) for w in ws),
        )
        _pg_cluster("restart")
        codes = wait_exit(ws, timeout=300)
    finally:
        for w in ws:
            if w.proc.poll() is None:
                w.proc.kill()
    logs = [w.output() for w in ws]
    assert codes == [0, 0], logs
    check_study(trials(pg_url, name), budget=budget)
    for log in logs:
        assert "reconnected to the storage" in log, log
        assert "Traceback" not in log, log
