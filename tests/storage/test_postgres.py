"""Many workers on a real PostgreSQL: sharing, SIGKILL recovery, a live dashboard, passwords.

Needs FISHOPT_TEST_PG (``.ci/run`` starts PostgreSQL 15 and exports it). Without it the tests
skip locally, but fail in CI (CI=true): a silently skipped PostgreSQL suite proves nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from needs import executable, require
from optuna.trial import FrozenTrial, TrialState
from worker_support import (
    GRACE,
    Held,
    check_study,
    env_for,
    retried_from,
    spec_file,
    start,
    start_dashboard,
    training,
    trials,
    wait_exit,
    wait_for,
    worker_args,
)

from fishopt import config, redact
from fishopt.search import claim, studies
from fishopt.storage import fence, locks
from fishopt.storage.connect import open_storage


def _password(url: str) -> str:
    pw = sqlalchemy.engine.make_url(url).password
    assert pw, "the test URL should carry a password"
    return str(pw)


def _without_password(url: str) -> str:
    return sqlalchemy.engine.make_url(url).set(password=None).render_as_string(hide_password=False)


@pytest.mark.slow(seconds=30)
def test_four_workers_share_a_study_fishopt_dashboard_shows_it_a_sigkilled_ones_trial_is_retried(
    pg_url: str, tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """`fishopt dashboard` (password from PGPASSWORD, as compose runs it) serves the study
    while one worker's trial is held in training; that worker is then SIGKILLed, and the other
    three finish the budget, its trial retried exactly once (one run of four workers checks
    both: each is the costliest start-up of the suite)."""
    name = f"pg4-{uuid.uuid4().hex[:8]}"
    # A budget the victim cannot miss out on (it may start last); cut down after the kill.
    spec = spec_file(tmp_path, epochs=4, n_trials=50)
    secret = _password(pg_url)
    open_storage(pg_url, heartbeat=False)  # tables exist (compose runs `fishopt studies` first)
    dashboard, base = start_dashboard(
        _without_password(pg_url), tmp_path, env=env_for(pg_url, PGPASSWORD=secret)
    )
    hold = Held(tmp_path / "go")  # only the victim's trials are held
    workers = [
        start(
            worker_args(spec, tiny_fish, fish_cache, "--name", name),
            tmp_path / f"w{i}.log",
            env_for(pg_url, **(hold.env if i == 0 else {})),
        )
        for i in range(4)
    ]
    victim = workers[0]
    held = hold.wait(victim)

    def served_running() -> bool:
        summaries = (_get(f"{base}/api/studies") or {}).get("study_summaries", [])
        match = [s for s in summaries if s["study_name"] == name]
        detail = _get(f"{base}/api/studies/{match[0]['study_id']}?after=0") if match else None
        return detail is not None and any(
            t["number"] == held and t["state"] == "Running" for t in detail["trials"]
        )

    wait_for("the dashboard to show the held trial running", served_running)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    # Its trial after it died: still RUNNING (only the grace period tells it is dead).
    killed = training(victim, pg_url, name, max_step=hold.epoch, alive=False)
    assert killed is not None and killed.number == held
    budget = _cut_budget(pg_url, name)
    codes = wait_exit(workers[1:])
    outputs = [w.output() for w in workers[1:]]
    assert codes == [0, 0, 0], outputs
    for out in [*outputs, victim.output(), dashboard.output()]:
        assert "Traceback" not in out and "rror" not in out, out
        assert secret not in out
    ts = trials(pg_url, name)
    check_study(ts, budget=budget, failed=1)
    assert len({t.user_attrs["worker"] for t in ts}) >= 2
    dead = next(t for t in ts if t.number == killed.number)
    assert dead.state == TrialState.FAIL
    retries = [t for t in ts if retried_from(t) == killed.number]
    assert len(retries) == 1
    (retry,) = retries
    assert retry.state == TrialState.COMPLETE
    assert retry.params == dead.params and retry.user_attrs["seed"] == dead.user_attrs["seed"]
    assert retry.user_attrs["worker"] != dead.user_attrs["worker"]
    # In order: its last heartbeat, a grace period of silence, failed, then retried.
    beat = _last_heartbeat(pg_url, dead)
    assert dead.datetime_complete is not None and retry.datetime_start is not None
    assert (dead.datetime_complete - beat).total_seconds() >= GRACE
    assert retry.datetime_start >= dead.datetime_complete
    # No password in anything stored: study or trial attributes of any kind.
    stored = json.dumps(
        [[t.user_attrs, t.system_attrs, t.params] for t in ts], default=str
    ) + json.dumps(_study_attrs(pg_url, name), default=str)
    assert secret not in stored


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


def _last_heartbeat(url: str, trial: FrozenTrial) -> datetime:
    """The trial's last heartbeat, by the database's clock (the one staleness is judged by)."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            beat = conn.execute(
                sqlalchemy.text("SELECT heartbeat FROM trial_heartbeats WHERE trial_id = :t"),
                {"t": fence.trial_id(trial)},
            ).scalar_one()
    finally:
        engine.dispose()
    return beat.replace(tzinfo=None)


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


@pytest.mark.slow(seconds=15)
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


@contextlib.contextmanager
def cluster_stopped() -> Iterator[None]:
    """The local PostgreSQL cluster of the test URL stopped for the block, then running again
    whatever happened in it (other tests, and other sessions, use it)."""
    ctl = executable("pg_ctlcluster", "pg_ctlcluster")
    if os.geteuid() != 0:
        require("root", "stopping and starting PostgreSQL needs root")
    subprocess.run([ctl, "15", "main", "stop", "-m", "fast"], check=True)
    try:
        yield
    finally:
        # A start can fail while the stopped server's socket is still being released: the
        # next test process would meet a server that is down, so try a few times.
        for attempt in range(5):
            if _reachable():
                break
            done = subprocess.run([ctl, "15", "main", "start"], capture_output=True, text=True)
            if done.returncode == 0:
                break
            if attempt == 4:
                raise RuntimeError(f"pg_ctlcluster start failed:\n{done.stdout}{done.stderr}")
            time.sleep(1 + attempt)
        wait_for("PostgreSQL to accept connections", _reachable, timeout=120)


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


@pytest.mark.slow(seconds=22)
@pytest.mark.stops_postgresql
def test_worker_that_loses_the_storage_exits_and_its_trial_is_retried(
    pg_url: str, tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """The database goes away mid-trial: the worker stops at the next epoch boundary with a
    clear message (exit 75) instead of training on, and once the database is back another
    worker retries the trial it left RUNNING."""
    name = f"lost-{uuid.uuid4().hex[:8]}"
    # Far more epochs than any machine trains while the test waits: training on never ends.
    spec = spec_file(tmp_path, epochs=1_000_000, n_trials=1, name=name)
    env = env_for(pg_url)
    beats = ["--heartbeat-interval", "2", "--grace-period", "5"]
    args = ["worker", str(spec), "--data", str(tiny_fish), "--cache-dir", str(fish_cache)]
    hold = Held(tmp_path / "go")
    w = start([*args, "--threads", "1", *beats], tmp_path / "w1.log", {**env, **hold.env})
    held = hold.wait(w)
    with cluster_stopped():
        hold.release()  # the trial goes on to its next epoch boundary with the database gone
        code = wait_exit([w])[0]
    out = w.output()
    assert code == 75, out
    assert "lost the storage" in out and "Traceback" not in out, out

    # Once the database is back, another worker fails the abandoned trial (stale) and runs its
    # parameters again: held in training, that retry is all this test needs to see.
    hold2 = Held(tmp_path / "go2", epoch=1)
    w2 = start([*args, "--threads", "1", *beats], tmp_path / "w2.log", {**env, **hold2.env})
    retry_number = hold2.wait(w2)
    ts = {t.number: t for t in trials(pg_url, name)}
    assert ts[held].state == TrialState.FAIL
    assert retried_from(ts[retry_number]) == held, "the abandoned trial is run again"
    assert ts[retry_number].params == ts[held].params
    assert ts[retry_number].user_attrs["seed"] == ts[held].user_attrs["seed"]


@pytest.mark.slow(seconds=15)
@pytest.mark.stops_postgresql
def test_a_postgresql_restart_costs_the_workers_a_pause_not_the_study(
    pg_url: str, tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """PostgreSQL stops and starts again while two workers train: their next storage calls
    wait for it, they reconnect, and the study ends with exactly its budget."""
    name = f"restart-{uuid.uuid4().hex[:8]}"
    budget = 6
    spec = spec_file(tmp_path, epochs=4, n_trials=budget, name=name)
    # The patience for a dropped connection is one heartbeat interval: longer than a restart.
    beats = ["--heartbeat-interval", "20", "--grace-period", "60"]
    args = ["worker", str(spec), "--data", str(tiny_fish), "--cache-dir", str(fish_cache)]
    holds = [Held(tmp_path / f"go{i}") for i in range(2)]
    ws = [
        start([*args, "--threads", "1", *beats], tmp_path / f"w{i}.log", env_for(pg_url, **h.env))
        for i, h in enumerate(holds)
    ]
    for h, w in zip(holds, ws, strict=True):
        h.wait(w)
    before = [len(w.output()) for w in ws]  # what each had said before the database stopped
    with cluster_stopped():
        for h in holds:
            h.release()  # each worker's next storage call meets the stopped database
    codes = wait_exit(ws, timeout=300)
    logs = [w.output() for w in ws]
    assert codes == [0, 0], logs
    check_study(trials(pg_url, name), budget=budget)
    for log, said in zip(logs, before, strict=True):
        assert "reconnected to the storage" in log[said:], log
        assert "Traceback" not in log, log
