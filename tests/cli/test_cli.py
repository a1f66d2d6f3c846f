"""The CLI end to end, as a user runs it: one real process for the run a user starts first
(its default storage in the current folder), one for Ctrl-C; everything else in this process
(`conftest.run_main` is `fishopt` itself, minus an interpreter start), on real SQLite storages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import run_main
from optuna.trial import TrialState
from typer.testing import CliRunner
from worker_support import (
    REPO,
    Held,
    env_for,
    signal_taken,
    start,
    trials,
    wait_exit,
    wait_for,
)

from fishopt.cli import app
from fishopt.storage import connect

TINY = "synthetic:12:118x89"


@pytest.fixture()
def env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> dict:
    """No FISHOPT_* from the shell running the tests, and a private cache, here and in
    processes the test starts."""
    for name in [k for k in os.environ if k.startswith("FISHOPT_")]:
        monkeypatch.delenv(name)
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FISHOPT_CACHE", str(cache))
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}


def load(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


@pytest.mark.slow
def test_optimizers_study_end_to_end_and_resume_rules(
    tmp_path: Path, env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "fishopt.db"
    out = subprocess.run(
        [sys.executable, "-m", "fishopt.cli", "study", "optimizers", "--data", TINY,
         "--epochs", "2", "--threads", "1"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert db.exists(), "the default storage is sqlite:///fishopt.db in the current folder"
    for name in ("SGD", "Adam", "AdamW", "Adadelta", "Rprop", "ASGD"):
        assert name in out.stdout
    study = load(db, "optimizers")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 33
    for t in complete:
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.value == max(t.intermediate_values.values())
        assert len(t.user_attrs["history"]) == 2 and "seed" in t.user_attrs
    per_optimizer = {
        o: sum(t.params["optimizer"] == o for t in complete)
        for o in {t.params["optimizer"] for t in complete}
    }
    assert len(per_optimizer) == 11 and set(per_optimizer.values()) == {3}

    # A plain Optuna storage reads it (what `optuna studies` and optuna-dashboard use).
    assert optuna.study.get_all_study_names(optuna.storages.RDBStorage(f"sqlite:///{db}")) == [
        "optimizers"
    ]

    # The resume rules, in this process, in the same folder.
    monkeypatch.chdir(tmp_path)

    def again(*extra: str) -> tuple[int, str]:
        code, _out, err = run_main(monkeypatch, capsys, "study", "optimizers", *extra)
        return code, err

    code, err = again("--data", TINY, "--epochs", "2")
    assert code == 0 and "already has 33 finished trials" in err, err
    assert len(load(db, "optimizers").trials) == 33
    code, err = again("--data", TINY, "--epochs", "3")
    assert code == 2 and "different spec" in err
    code, err = again("--data", TINY + ":7", "--epochs", "2")
    assert code == 2 and "other data" in err and "--name optimizers-2" in err

    storage = ["--storage", f"sqlite:///{db}"]
    listing = CliRunner().invoke(app, ["studies", *storage], env={"COLUMNS": "80"})
    assert listing.exit_code == 0 and "optimizers" in listing.stdout and "33" in listing.stdout
    shown = CliRunner().invoke(app, ["show", "optimizers", "--top", "3", *storage])
    assert shown.exit_code == 0 and "optimizer=" in shown.stdout


def _study(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> str:
    code, _out, err = run_main(monkeypatch, capsys, "study", *args, "--threads", "1")
    assert code == 0, err
    return err


@pytest.mark.slow
def test_full_study_prunes_and_widths_depth_run(
    tmp_path: Path, env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    _study(monkeypatch, capsys, "full", "--data", "digits", "--n-trials", "16", "--epochs", "6",
           "--storage", url)  # fmt: skip
    full = load(tmp_path / "s.db", "full")
    states = [t.state for t in full.trials]
    assert states.count(TrialState.PRUNED) >= 1
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 16
    for name in ("widths", "depth"):
        _study(monkeypatch, capsys, name, "--data", TINY, "--n-trials", "3", "--epochs", "1",
               "--storage", url)  # fmt: skip
        assert len(load(tmp_path / "s.db", name).get_trials(states=(TrialState.COMPLETE,))) == 3


def test_same_seed_gives_the_same_study(
    tmp_path: Path, env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    values = []
    for run in ("a", "b"):
        url = f"sqlite:///{tmp_path / run}.db"
        _study(monkeypatch, capsys, "depth", "--data", "digits", "--n-trials", "3",
               "--epochs", "2", "--storage", url)  # fmt: skip
        trials = load(tmp_path / f"{run}.db", "depth").trials
        values.append([(t.params, t.user_attrs["seed"], t.value) for t in trials])
    assert values[0] == values[1]


CTRL_C_SPEC = """
description = "a small grid; its trial is held at epoch 2 while the test presses Ctrl-C"
epochs = 4
[sampler]
name = "grid"
[pruner]
name = "none"
[fixed]
units = 64
[space]
n_layers = [1, 2]
"""


@pytest.mark.slow
def test_ctrl_c_leaves_no_running_trial_and_the_study_resumes(
    tmp_path: Path, env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "c.db"
    url = f"sqlite:///{db}"
    spec = tmp_path / "slow.toml"
    spec.write_text(CTRL_C_SPEC)
    common = ["--data", "digits", "--storage", url, "--threads", "1"]
    hold = Held(tmp_path / "go")
    proc = start(
        ["study", str(spec), *common, "--n-trials", "2"], tmp_path / "study.log",
        env_for(url, FISHOPT_CACHE=env["FISHOPT_CACHE"], COLUMNS="200", **hold.env),
    )  # fmt: skip
    hold.wait(proc)
    proc.proc.send_signal(signal.SIGINT)
    wait_for("the study to take its Ctrl-C", lambda: signal_taken(proc, signal.SIGINT))
    hold.release()
    assert wait_exit([proc]) == [130], proc.output()
    out = proc.output()
    assert "Traceback" not in out and "resume" in out, out
    ts = trials(url, "slow")
    assert not [t for t in ts if t.state == TrialState.RUNNING]
    failed = [t for t in ts if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs.get("interrupted")

    _study(monkeypatch, capsys, str(spec), *common[:-2], "--n-trials", "1")
    # The budget of 1 finished trial is met by re-running the interrupted configuration.
    ts = trials(url, "slow")
    done = [t for t in ts if t.state == TrialState.COMPLETE]
    assert len(done) == 1
    assert done[0].params == failed[0].params
    assert done[0].user_attrs["seed"] == failed[0].user_attrs["seed"]
    assert not [t for t in ts if t.state == TrialState.WAITING], "queued once, run once"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "optimizers", "--data", "/no/such/folder"], "no such file or folder"),
        (["study", "optimisers"], "unknown study 'optimisers'; known studies:"),
        (["study", "optimizers", "--data", "digits", "--image-size", "59by45"], "WIDTHxHEIGHT"),
        (["show", "nothing", "--storage", "sqlite:///:memory:"], "no study 'nothing'"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(
    args: list[str],
    message: str,
    env: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)  # the default storage, if one is made, goes here
    code, _out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3


def test_malformed_spec_and_empty_folder(
    tmp_path: Path, env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    code, _out, err = run_main(monkeypatch, capsys, "study", str(bad))
    assert code == 2 and "malformed TOML" in err
    (tmp_path / "empty").mkdir()
    code, _out, err = run_main(
        monkeypatch, capsys, "study", "optimizers", "--data", str(tmp_path / "empty")
    )
    assert code == 2 and "no class folders" in err


def test_storage_errors_mask_the_password(
    tmp_path: Path, env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url = "postgresql+psycopg://fish:hunter2secret@127.0.0.1:1/nowhere"
    monkeypatch.setattr(connect, "OPEN_PATIENCE", 0.0)  # one try: the message is the subject
    code, out, err = run_main(
        monkeypatch, capsys, "study", "optimizers", "--data", "digits", "--storage", url
    )
    assert code == 2
    assert "cannot open storage" in err
    assert "hunter2secret" not in err + out
    assert "fish:***@127.0.0.1" in err
    code, _out, err = run_main(
        monkeypatch, capsys, "studies", "--storage", f"sqlite:///{tmp_path}/no/such/dir/x.db"
    )
    assert code == 2 and "cannot open storage" in err


def test_summary_table_fits_80_columns_with_every_number_readable() -> None:
    """Long TPE configurations wrap in their own column; numbers never squeeze to nothing."""
    import io
    import random
    import re

    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from rich.console import Console

    from fishopt.cli.study import summary_table
    from fishopt.search.spec import StudySpec

    rng = random.Random(0)
    st = optuna.create_study(direction="maximize", study_name="a-rather-long-full-study-name")
    dists = {
        "dropout": FloatDistribution(0, 0.5),
        "lr": FloatDistribution(1e-4, 0.1, log=True),
        "optimizer": CategoricalDistribution(["AdamW", "SGD", "RMSprop"]),
        "batch_norm": CategoricalDistribution([True, False]),
    }
    for _ in range(30):
        params = {
            "dropout": rng.random() / 2,
            "lr": 10 ** rng.uniform(-4, -1),
            "optimizer": rng.choice(["AdamW", "SGD", "RMSprop"]),
            "batch_norm": rng.random() < 0.5,
        }
        attrs = {"hidden": [1024, 512, 256], "test_f1": rng.random()}
        st.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dists, value=rng.random(), user_attrs=attrs
            )
        )
    spec = StudySpec("full", "", "full", 2, 0, 1, None, None, space=dict.fromkeys(dists))
    out = io.StringIO()
    Console(file=out, width=80).print(summary_table(spec, st))
    text = out.getvalue()
    assert max(map(len, text.splitlines())) <= 80
    # A search (each configuration once): prun/fail, valid F1 and test F1, all whole.
    numbers = re.findall(r"│ +\d+/\d+ │ +(\d\.\d{3}) │ +\d\.\d{3} │", text)
    assert len(numbers) == 15, text  # the top 15, each with its numbers whole
    assert "15 more; see `fishopt show a-rather-long-full-study-name`" in text.replace("\n", " ")
    for value in re.findall(r"(?:lr|drop)=([0-9.e+-]+)", text):
        mantissa = value.split("e")[0].replace(".", "").lstrip("0")
        assert len(mantissa) <= 3, f"{value}: floats print with 3 significant digits"


def test_a_bad_storage_is_reported_before_any_data_is_read(
    tmp_path: Path, env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Opening the storage comes first: no images are generated or decoded for a study that
    cannot be stored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(connect, "OPEN_PATIENCE", 0.0)  # one try: the order is the subject
    cache = tmp_path / "fresh-cache"
    for command in ("study", "worker"):
        code, _out, err = run_main(
            monkeypatch, capsys, command, "optimizers",
            "--storage", "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "--data", "synthetic:300", "--cache-dir", str(cache),
        )  # fmt: skip
        assert code == 2, err
        assert "cannot open storage" in err and "Traceback" not in err
        assert not cache.exists() or not any(cache.rglob("*.png")), "data was made first"
