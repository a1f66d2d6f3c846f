"""Workers on SQLite with real processes and real signals; heartbeat settings; the doctor.

PostgreSQL runs of the same scenarios are in test_postgres.py.
"""

from __future__ import annotations

import signal
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import typer
from optuna.trial import TrialState
from typer.testing import CliRunner
from worker_support import (
    GRACE,
    Held,
    check_study,
    env_for,
    kill_all,
    retried_from,
    signal_taken,
    spec_file,
    start,
    trials,
    wait_exit,
    wait_for,
    worker_args,
)

from fishopt import config
from fishopt.cli import app
from fishopt.errors import FishoptError
from fishopt.search import claim
from fishopt.storage import locks
from fishopt.storage.connect import open_storage
from fishopt.storage.sqlite import sqlite_warnings

EPOCHS = 4  # trials are held at epoch 2 (worker_support.Held) while the test acts on them


# ------------------------------------------------------------------------------ real processes


@pytest.mark.slow
def test_study_jobs_3_on_sqlite_share_one_study_exactly(tiny_fish: Path, tmp_path: Path) -> None:
    """Three children share one study, and the data: decoded once, by the parent, into an empty
    cache, then read from it by every child."""
    fish_cache = tmp_path / "fresh-cache"
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    spec = spec_file(tmp_path, epochs=2, n_trials=6)
    # Every child's first trial waits at epoch 1 until all three have one: a child that starts
    # first cannot take the whole budget before the others are up, however fast the CPU.
    hold = Held(tmp_path / "go", epoch=1)
    common = ["--data", str(tiny_fish), "--cache-dir", str(fish_cache), "--storage", url]
    env = env_for(url, **hold.env, FISHOPT_HEARTBEAT_INTERVAL="1", FISHOPT_GRACE_PERIOD=str(GRACE))
    w = start(["study", str(spec), *common, "--jobs", "3"], tmp_path / "study.log", env)

    def three_held() -> bool:
        assert w.proc.poll() is None, w.output()
        return sum(t.state == TrialState.RUNNING for t in trials(url, "tiny")) == 3

    wait_for("a trial in each of the three children", three_held)
    hold.release()
    assert wait_exit([w]) == [0], w.output()
    out = w.output()
    assert "starting 3 workers" in out
    assert out.count("data from cache") == 3, out
    assert "Traceback" not in out and "locked" not in out, out
    ts = trials(url, "tiny")
    check_study(ts, budget=6)
    assert len({t.user_attrs["worker"] for t in ts}) == 3  # each child ran trials
    assert len({t.params["lr"] for t in ts}) == len(ts)  # no two workers drew the same lr
    # Every trial's seed is derived from the study seed and its number, so it can be re-run.
    from fishopt.search.objective import derive_seed

    assert all(t.user_attrs["seed"] == derive_seed(3, t.number) for t in ts)


@pytest.mark.slow
def test_study_beside_a_worker_finishes_with_exactly_the_budget(
    tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """`fishopt study` is one more worker: it claims slots under the same lock."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    spec = spec_file(tmp_path, epochs=2, n_trials=8)
    env = env_for(url, FISHOPT_HEARTBEAT_INTERVAL="1", FISHOPT_GRACE_PERIOD=str(GRACE))
    common = ["--data", str(tiny_fish), "--cache-dir", str(fish_cache), "--threads", "1"]
    # The worker holds its first trial at epoch 1; the study process starts only then, and the
    # worker goes on only once the study has claimed a trial: neither can take the whole budget
    # before the other is up, however fast either starts.
    hold = Held(tmp_path / "go", epoch=1)
    worker = start(["worker", str(spec), *common], tmp_path / "worker.log", {**env, **hold.env})
    hold.wait(worker)
    study = start(["study", str(spec), *common, "--storage", url], tmp_path / "study.log", env)

    def study_claimed() -> bool:
        assert study.proc.poll() is None, study.output()
        return any(
            str(t.user_attrs.get("worker", "")).endswith(f":{study.pid}")
            for t in trials(url, "tiny")
        )

    wait_for("the study process to claim a trial", study_claimed)
    hold.release()
    assert wait_exit([worker, study]) == [0, 0], worker.output() + study.output()
    ts = trials(url, "tiny")
    check_study(ts, budget=8)
    by = {str(t.user_attrs["worker"]).rsplit(":", 1)[1] for t in ts}
    assert str(study.pid) in by, "the study process ran trials too"
    assert "validation macro-F1" in study.output()  # and printed its summary


def test_sigterm_once_finishes_the_trial_twice_stops_it_now(
    tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """Two workers on two studies at once (one process start-up for both scenarios), each
    trial held at epoch 2 while the signals arrive, so a fast CPU cannot finish it first."""
    once, twice = (f"sqlite:///{tmp_path / f'{n}.db'}" for n in ("once", "twice"))
    # A budget never reached: both workers are stopped by signals long before.
    spec = spec_file(tmp_path, epochs=EPOCHS, n_trials=50)
    hold1, hold2 = Held(tmp_path / "go1"), Held(tmp_path / "go2")
    args = worker_args(spec, tiny_fish, fish_cache)
    w1 = start(args, tmp_path / "w1.log", env_for(once, **hold1.env))
    w2 = start(args, tmp_path / "w2.log", env_for(twice, **hold2.env))
    held1, held2 = hold1.wait(w1), hold2.wait(w2)
    w1.proc.send_signal(signal.SIGTERM)
    w2.proc.send_signal(signal.SIGTERM)
    # Two signals sent back to back can merge into one; send the second once the first landed.
    wait_for("the first SIGTERM", lambda: "finishing the current trial" in w2.output())
    w2.proc.send_signal(signal.SIGTERM)
    wait_for("the second SIGTERM", lambda: "SIGTERM again: stopping now" in w2.output())
    wait_for("the first SIGTERM", lambda: "finishing the current trial" in w1.output())
    hold1.release()
    hold2.release()
    assert wait_exit([w1, w2]) == [0, 128 + signal.SIGTERM], (w1.output(), w2.output())

    # Once: the held trial ran to its end and was stored; no new trial was started.
    ts = trials(once, "tiny")
    assert [t.state for t in ts] == [TrialState.COMPLETE] * len(ts), w1.output()
    last = max(ts, key=lambda t: t.number)
    assert last.number == held1
    assert last.user_attrs["epochs_run"] == EPOCHS or last.user_attrs["diverged"]

    # Twice: stopped at the epoch boundary it was held at (epoch 2 is not recorded), FAIL
    # (interrupted), its parameters queued for the next worker.
    ts2 = {t.number: t for t in trials(twice, "tiny")}
    stopped = ts2[held2]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["interrupted"]
    assert stopped.user_attrs["epochs_run"] == hold2.epoch - 1
    assert sorted(stopped.intermediate_values) == list(range(1, hold2.epoch))
    queued = [t for t in ts2.values() if t.state == TrialState.WAITING]
    assert len(queued) == 1
    assert queued[0].system_attrs["fixed_params"] == stopped.params  # enqueue_trial's record
    assert TrialState.RUNNING not in {t.state for t in ts2.values()}
    # Whoever runs it next uses the interrupted trial's seed (study.origin_number).
    assert queued[0].user_attrs["retry_of"] == stopped.number


@pytest.mark.slow(seconds=14)
def test_sigkill_all_workers_then_one_retries_stale_trials_first(
    tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    # A budget nobody can finish before both workers are training; cut down at the restart.
    spec = spec_file(tmp_path, epochs=EPOCHS, n_trials=50)
    env = env_for(url)
    holds = [Held(tmp_path / f"go{i}") for i in range(2)]
    ws = [
        start(worker_args(spec, tiny_fish, fish_cache), tmp_path / f"w{i}.log", {**env, **h.env})
        for i, h in enumerate(holds)
    ]
    held = [h.wait(w) for h, w in zip(holds, ws, strict=True)]  # both held in training
    kill_all(ws)
    # The victims: the trials they held when they died (no live worker can change that now).
    victims = [t for t in trials(url, "tiny") if t.state == TrialState.RUNNING]
    assert sorted(t.number for t in victims) == sorted(held)
    finished = sum(t.state == TrialState.COMPLETE for t in trials(url, "tiny"))
    budget = finished + len(victims) + 1  # the retries, then one new trial
    # Restart once their heartbeats are stale (before that, nobody can tell they are dead).
    # With no live worker left to misjudge, the survivor and this check judge by a short grace
    # period (GRACE is for live workers whose heartbeat a loaded machine may starve).
    grace = 3
    checker = open_storage(url, heartbeat=config.Heartbeat(1, grace, 2))
    study_id = checker.get_study_id_from_name("tiny")
    wait_for(
        "the victims to go stale",
        lambda: len(checker._get_stale_trial_ids(study_id)) == len(victims),
    )
    extra = ["--n-trials", str(budget), "--grace-period", str(grace)]  # the last one counts
    survivor = start(worker_args(spec, tiny_fish, fish_cache, *extra), tmp_path / "w3.log", env)
    assert wait_exit([survivor]) == [0], survivor.output()

    ts = trials(url, "tiny")
    check_study(ts, budget=budget, failed=len(victims))
    by_number = {t.number: t for t in ts}
    retries = [t for t in ts if retried_from(t) is not None]
    assert sorted(retried_from(t) for t in retries) == sorted(v.number for v in victims)
    for r in retries:
        original = by_number[retried_from(r)]
        assert original.state == TrialState.FAIL
        assert r.state == TrialState.COMPLETE and r.params == original.params
        assert r.user_attrs["seed"] == original.user_attrs["seed"]
    # Retries ran before any trial the restarted worker created itself.
    fresh = [
        t
        for t in ts
        if t.user_attrs["worker"].endswith(f":{survivor.pid}") and retried_from(t) is None
    ]
    assert fresh, "the restarted worker should also have run new trials"
    assert max(r.datetime_start for r in retries) <= min(t.datetime_start for t in fresh)


# ----------------------------------------------------------------------------- in-process


def test_heartbeat_settings_flag_env_default_and_refusals() -> None:
    assert config.resolve_heartbeat(env={}) == config.Heartbeat(10, 30, 2)
    env = {config.ENV_HEARTBEAT_INTERVAL: "2", config.ENV_GRACE_PERIOD: "7"}
    assert config.resolve_heartbeat(env=env) == config.Heartbeat(2, 7, 2)
    assert config.resolve_heartbeat(1, 3, 0, env=env) == config.Heartbeat(1, 3, 0)
    with pytest.raises(FishoptError, match="FISHOPT_GRACE_PERIOD"):
        config.resolve_heartbeat(env={config.ENV_GRACE_PERIOD: "soon"})
    with pytest.raises(FishoptError, match="longer than the heartbeat interval"):
        config.resolve_heartbeat(5, 5, env={})


def test_open_storage_uses_the_heartbeat_settings(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat=config.Heartbeat(1, 4, 1))
    assert storage.get_heartbeat_interval() == 1 and storage.grace_period == 4
    assert storage.get_heartbeat_stale_trial_callback() is not None
    # WAL: the dashboard's reads never block the workers' writes.
    with storage.engine.connect() as conn:
        mode = conn.execute(sqlalchemy.text("PRAGMA journal_mode")).scalar()
    assert mode == "wal"


def test_sqlite_warnings_name_postgresql(tmp_path: Path) -> None:
    mounts = f"server:/export {tmp_path} nfs4 rw 0 0\n/dev/sda1 / ext4 rw 0 0\n"
    url = f"sqlite:///{tmp_path / 'x.db'}"
    (network,) = sqlite_warnings(config.parse_storage(url, mounts), 1)
    assert "network filesystem (nfs4)" in network and "PostgreSQL" in network
    local = config.parse_storage(url, "/dev/sda1 / ext4 rw 0 0\n")
    assert sqlite_warnings(local, 4) == []
    (many,) = sqlite_warnings(local, 8)
    assert "8 workers" in many and "postgresql+psycopg://" in many
    assert sqlite_warnings(config.parse_storage("postgresql+psycopg://u@h/db"), 50) == []


def test_budget_is_recorded_in_the_study_for_later_workers(tmp_path: Path) -> None:
    st = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'b.db'}"))
    assert claim.stored_budget(st) is None
    claim.set_budget(st, 12)
    again = optuna.load_study(study_name=st.study_name, storage=f"sqlite:///{tmp_path / 'b.db'}")
    assert claim.stored_budget(again) == 12


def test_claim_lock_is_exclusive_across_open_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    storage = open_storage(url, heartbeat=False)
    a, b = locks.open_lock(storage, storage.url, "s"), locks.open_lock(storage, storage.url, "s")
    a.acquire()
    import fcntl

    fd = __import__("os").open(tmp_path / "l.db.fishopt-lock", __import__("os").O_RDWR)
    with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    a.release()
    b.acquire()  # free again
    b.release()


def test_study_and_worker_take_the_same_run_options() -> None:
    """Declared once: `study` has every option `worker` has, and only --jobs besides."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    opts = {
        name: {o for p in commands[name].params for o in p.opts if o.startswith("--")}
        for name in ("study", "worker")
    }
    assert opts["study"] - opts["worker"] == {"--jobs"}
    assert opts["worker"] <= opts["study"]
    assert {"--storage", "--n-trials", "--heartbeat-interval", "--data"} <= opts["worker"]


def test_options_reach_each_jobs_child_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--jobs 2 starts two real children; each receives the options object itself (pickled,
    not re-encoded as flags: nothing of it on the command line `ps` shows), with the storage
    resolved and the cores divided between them."""
    import os
    import pickle
    from dataclasses import replace

    import probes

    from fishopt.search import jobs
    from fishopt.search.session import Options

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv(config.ENV_STORAGE, url)  # resolved once, in the parent
    opts = Options(study="optimizers", data="synthetic:12:118x89", n_trials=5, cache_dir=tmp_path)
    monkeypatch.setattr(jobs, "_child", probes.record_jobs_child)
    assert jobs.run_jobs(opts, 2, lambda _m: None, keep_model=probes.keep_nothing) == 0
    seen = [pickle.loads((tmp_path / f"w{i}.pickle").read_bytes()) for i in (1, 2)]
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert [s["opts"] for s in seen] == [replace(opts, storage=url, threads=threads)] * 2
    assert all(s["keep_model"] is probes.keep_nothing for s in seen)
    assert seen[0]["pid"] != seen[1]["pid"] != os.getpid()
    for s in seen:
        assert str(tmp_path) not in s["cmdline"] and "synthetic" not in s["cmdline"]


def _stale_study(tmp_path: Path) -> tuple[str, optuna.Study, int]:
    url = f"sqlite:///{tmp_path / 'doc.db'}"
    storage = open_storage(url, heartbeat=config.Heartbeat(1, 3, 2))
    st = optuna.create_study(study_name="doc", storage=storage)
    st.enqueue_trial({"x": 0.5})
    with pytest.warns(UserWarning):
        trial = st.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("worker", "gone-host:123")
    storage.record_heartbeat(trial._trial_id)
    with storage.engine.begin() as conn:  # as if its worker died a minute ago
        conn.execute(
            sqlalchemy.text(
                "UPDATE trial_heartbeats SET heartbeat = datetime('now', '-60 seconds')"
            )
        )
    return url, st, trial.number


def test_doctor_reports_and_fixes_stale_trials(tmp_path: Path) -> None:
    url, st, number = _stale_study(tmp_path)
    runner = CliRunner()
    args = ["doctor", "doc", "--storage", url, "--heartbeat-interval", "1", "--grace-period", "3"]
    report = runner.invoke(app, args)
    assert report.exit_code == 1, report.output
    assert f"trial {number} on gone-host:123 is stale" in report.output
    assert "heartbeat every 1s, stale after 3s" in report.output
    fixed = runner.invoke(app, [*args, "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert "fixed: trial 0 marked FAIL" in fixed.output
    states = {t.number: t.state for t in st.get_trials(deepcopy=False)}
    assert states == {0: TrialState.FAIL, 1: TrialState.WAITING}
    assert st.get_trials(deepcopy=False)[1].params == {"x": 0.5}
    assert runner.invoke(app, args).exit_code == 0  # healthy now


def test_doctor_finds_duplicate_trial_numbers(tmp_path: Path) -> None:
    url, st, _ = _stale_study(tmp_path)
    st.add_trial(optuna.create_trial(value=1.0))
    storage = open_storage(url, heartbeat=False)
    with storage.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE trials SET number = 0"))
    result = CliRunner().invoke(app, ["doctor", "--storage", url])
    assert result.exit_code == 1
    assert "duplicate trial numbers [0]" in result.output


def test_a_trial_that_never_beat_is_failed_and_retried(tmp_path: Path) -> None:
    """A worker killed between creating a trial and its first heartbeat: Optuna never fails
    such a trial, so the workers' claim step (liveness.fail_dead) does, once it is old."""
    from fishopt.storage import heartbeats as liveness

    url = f"sqlite:///{tmp_path / 'silent.db'}"
    hb = config.Heartbeat(1, 3, 2)
    storage = open_storage(url, heartbeat=hb)
    st = optuna.create_study(study_name="silent", storage=storage)
    with pytest.warns(UserWarning):
        trial = st.ask()
    trial.suggest_float("x", 0, 1)
    liveness.fail_dead(st, storage, hb)  # just created: leave it alone
    assert [t.state for t in st.get_trials(deepcopy=False)] == [TrialState.RUNNING]
    with storage.engine.begin() as conn:  # as if created ten minutes ago
        conn.execute(
            sqlalchemy.text("UPDATE trials SET datetime_start = :t"),
            {"t": "2000-01-01 00:00:00.000000"},
        )
    liveness.fail_dead(st, storage, hb)
    after = st.get_trials(deepcopy=False)
    assert [t.state for t in after] == [TrialState.FAIL, TrialState.WAITING]
    assert after[1].params == after[0].params


# ------------------------------------------------------- README claims: flags and signals

SMALL = """description = "a tiny digits study for in-process worker runs"
kind = "custom"
epochs = 1
seed = 5
split = [0.7, 0.2, 0.1]
{budget}
[sampler]
name = "random"
[pruner]
name = "none"
[fixed]
hidden = [8]
batch_size = 64
[space]
lr = {{ low = 1e-3, high = 1e-1, log = true }}
"""


def _worker(tmp_path: Path, url: str, *args: str, budget: str = "") -> tuple[int, str]:
    """`fishopt worker` in this process on the tiny digits study: (exit code, output), a
    user mistake reported as the CLI reports it (exit 2, its message)."""
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL.format(budget=budget))
    common = ["--data", "digits", "--storage", url, "--threads", "1"]
    cache = ["--cache-dir", str(tmp_path / "cache"), "--artifacts-dir", str(tmp_path / "art")]
    result = CliRunner().invoke(app, ["worker", str(spec), *common, *cache, *args])
    if isinstance(result.exception, FishoptError):
        return result.exception.exit_code, f"{result.output}error: {result.exception}"
    return result.exit_code, result.output


def _add_stale_trial(url: str, name: str) -> int:
    """A RUNNING trial whose worker died a minute ago (its heartbeat is that old)."""
    storage = open_storage(url, heartbeat=config.Heartbeat(1, 3, 2))
    st = optuna.load_study(study_name=name, storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # ask() outside optimize(), on purpose
        trial = st.ask()
    storage.record_heartbeat(trial._trial_id)
    with storage.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "UPDATE trial_heartbeats SET heartbeat = datetime('now', '-60 seconds') "
                "WHERE trial_id = :t"
            ),
            {"t": trial._trial_id},
        )
    return trial.number


@pytest.mark.parametrize("max_retry", [0, 1])
def test_max_retry_says_how_often_a_dead_workers_trial_is_run_again(
    tmp_path: Path, max_retry: int
) -> None:
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    code, out = _worker(tmp_path, url, "--n-trials", "1")
    assert code == 0, out
    dead = _add_stale_trial(url, "small")
    beats = ["--heartbeat-interval", "1", "--grace-period", "3", "--max-retry", str(max_retry)]
    code, out = _worker(tmp_path, url, "--n-trials", "2", *beats)
    assert code == 0, out
    ts = trials(url, "small")
    assert ts[dead].state == TrialState.FAIL
    retries = [t for t in ts if retried_from(t) == dead]
    assert len(retries) == max_retry
    assert [t.state for t in ts].count(TrialState.COMPLETE) == 2


def test_timeout_ends_a_run_without_a_budget(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'timeout.db'}"
    code, out = _worker(tmp_path, url)  # no n_trials in the spec, no --n-trials, no --timeout
    assert code == 2 and "neither a trial budget nor a timeout" in out, out
    code, out = _worker(tmp_path, url, "--timeout", "1")
    assert code == 0, out
    assert "stopped: timeout" in out, out
    ts = trials(url, "small")
    assert ts and all(t.state == TrialState.COMPLETE for t in ts)


def test_storage_flag_wins_over_fishopt_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag, env = (f"sqlite:///{tmp_path / f'{n}.db'}" for n in ("flag", "env"))
    optuna.create_study(study_name="in-flag-db", storage=flag)
    optuna.create_study(study_name="in-env-db", storage=env)
    monkeypatch.setenv(config.ENV_STORAGE, env)
    runner = CliRunner()
    from_env = runner.invoke(app, ["studies"], env={"COLUMNS": "120"})
    assert from_env.exit_code == 0 and "in-env-db" in from_env.output
    assert "in-flag-db" not in from_env.output
    from_flag = runner.invoke(app, ["studies", "--storage", flag], env={"COLUMNS": "120"})
    assert from_flag.exit_code == 0 and "in-flag-db" in from_flag.output
    assert "in-env-db" not in from_flag.output


def test_doctor_finds_missing_trial_numbers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gaps.db'}"
    st = optuna.create_study(study_name="gaps", storage=url)
    for value in (0.1, 0.2, 0.3):
        st.add_trial(optuna.create_trial(value=value))
    storage = open_storage(url, heartbeat=False)
    with storage.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE trials SET number = 3 WHERE number = 1"))
    result = CliRunner().invoke(app, ["doctor", "gaps", "--storage", url])
    assert result.exit_code == 1, result.output
    assert "trial numbers not contiguous; missing [1]" in result.output


@pytest.mark.slow
def test_study_jobs_forwards_each_ctrl_c_once_and_divides_the_cores(
    tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """`fishopt study --jobs 2` with both children's trials held: the parent passes the first
    Ctrl-C on once to each child (each finishes, none stops), the second too (each stops)."""
    import os

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    spec = spec_file(tmp_path, epochs=EPOCHS, n_trials=50)
    hold = Held(tmp_path / "go")
    common = ["--data", str(tiny_fish), "--cache-dir", str(fish_cache), "--storage", url]
    env = env_for(url, **hold.env, FISHOPT_HEARTBEAT_INTERVAL="1")
    parent = start(["study", str(spec), *common, "--jobs", "2"], tmp_path / "p.log", env)

    def both_held() -> bool:
        assert parent.proc.poll() is None, parent.output()
        held = [t for t in trials(url, "tiny") if t.state == TrialState.RUNNING]
        return len(held) == 2 and all(t.last_step == hold.epoch - 1 for t in held)

    wait_for("both children's trials held", both_held)
    held = [t.number for t in trials(url, "tiny") if t.state == TrialState.RUNNING]
    parent.proc.send_signal(signal.SIGINT)
    wait_for("both children told", lambda: parent.output().count("SIGINT: finishing") == 2)
    parent.proc.send_signal(signal.SIGINT)
    wait_for("both told again", lambda: parent.output().count("SIGINT again: stopping") == 2)
    hold.release()
    out = parent.output()
    assert wait_exit([parent]) == [128 + signal.SIGINT], parent.output()
    assert out.count("SIGINT: finishing") == 2 and out.count("SIGINT again") == 2, out
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert f"starting 2 workers x {threads} torch thread(s)" in out
    assert out.count(f", {threads} torch threads") == 2, out  # each child's own line
    ts = {t.number: t for t in trials(url, "tiny")}
    assert all(ts[n].state == TrialState.FAIL and ts[n].user_attrs["interrupted"] for n in held)
    queued = [t for t in ts.values() if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in queued) == sorted(held)


@pytest.mark.slow
def test_worker_ctrl_c_finishes_the_trial_study_sigterm_stops_it(
    tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """A worker takes Ctrl-C as it takes SIGTERM (finish, exit 0); `fishopt study`, a person
    at a terminal, stops at the first SIGTERM as at the first Ctrl-C (exit 143)."""
    worker_db, study_db = (f"sqlite:///{tmp_path / f'{n}.db'}" for n in ("worker", "study"))
    spec = spec_file(tmp_path, epochs=EPOCHS, n_trials=50)
    hold_w, hold_s = Held(tmp_path / "go-w"), Held(tmp_path / "go-s")
    args = worker_args(spec, tiny_fish, fish_cache)
    w = start(args, tmp_path / "w.log", env_for(worker_db, **hold_w.env))
    study_args = ["study", *args[1:], "--storage", study_db]
    s = start(study_args, tmp_path / "s.log", env_for(study_db, **hold_s.env))
    held_w, held_s = hold_w.wait(w), hold_s.wait(s)
    w.proc.send_signal(signal.SIGINT)
    s.proc.send_signal(signal.SIGTERM)
    wait_for("the worker's Ctrl-C", lambda: "SIGINT: finishing the current trial" in w.output())
    wait_for("the study to take its SIGTERM", lambda: signal_taken(s, signal.SIGTERM))
    hold_w.release()
    hold_s.release()
    assert wait_exit([w, s]) == [0, 128 + signal.SIGTERM], (w.output(), s.output())
    ws = trials(worker_db, "tiny")
    assert max(t.number for t in ws) == held_w and ws[held_w].state == TrialState.COMPLETE
    ss = {t.number: t for t in trials(study_db, "tiny")}
    assert ss[held_s].state == TrialState.FAIL and ss[held_s].user_attrs["interrupted"]
    assert ss[held_s].user_attrs["epochs_run"] == hold_s.epoch - 1
    assert [t.user_attrs["retry_of"] for t in ss.values() if t.state == TrialState.WAITING] == [
        held_s
    ]


def test_an_interrupted_trial_is_queued_again_once(tmp_path: Path) -> None:
    """Each --jobs child, and the next run, queues interrupted trials again: only the first
    may, or a configuration would run twice."""
    from fishopt.search import requeue

    st = optuna.create_study(storage=f"sqlite:///{tmp_path / 'q.db'}")
    trial = st.ask()
    trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    trial.set_user_attr("interrupted", True)
    st.tell(trial, state=TrialState.FAIL)
    assert requeue.requeue_interrupted(st) == 1
    assert requeue.requeue_interrupted(st) == 0
    (queued,) = st.get_trials(states=(TrialState.WAITING,))
    assert queued.system_attrs["fixed_params"] == trial.params


@pytest.mark.slow
def test_a_worker_that_can_no_longer_write_its_sqlite_file_exits_75(
    tiny_fish: Path, fish_cache: Path, tmp_path: Path
) -> None:
    """The SQLite file's disk fills up mid-trial (the worker's file-size limit is lowered to
    what its database has now, so no write can grow it): the worker stops at the next epoch
    boundary and exits 75 with one line, not a traceback, instead of training on."""
    import resource

    db = tmp_path / "full.db"
    url = f"sqlite:///{db}"
    # Far more epochs than any machine trains while the test waits: training on never ends.
    spec = spec_file(tmp_path, epochs=1_000_000, n_trials=1)
    hold = Held(tmp_path / "go")
    w = start(
        worker_args(spec, tiny_fish, fish_cache), tmp_path / "w.log", env_for(url, **hold.env)
    )
    hold.wait(w)
    full = max(Path(f"{db}{s}").stat().st_size for s in ("", "-wal") if Path(f"{db}{s}").exists())
    assert len(w.output()) < full  # its log may still grow: only the database is full
    resource.prlimit(w.pid, resource.RLIMIT_FSIZE, (full, resource.RLIM_INFINITY))
    hold.release()
    assert wait_exit([w]) == [75], w.output()
    out = w.output()
    assert "lost the storage" in out and "Traceback" not in out, out
