"""The CLI end to end, as a user runs it: real processes, real SQLite storages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from fishopt.cli import app

TINY = "synthetic:12:118x89"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    e = {k: v for k, v in os.environ.items() if not k.startswith("FISHOPT_")}
    e.update(FISHOPT_CACHE=str(cache), COLUMNS="200", PYTHONWARNINGS="ignore")
    return e


def fishopt(
    *args: str, env: dict[str, str], cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "fishopt.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def load(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _running_with_progress(db: Path, name: str) -> bool:
    """True once a trial is RUNNING and has reported an epoch (the storage may not exist yet)."""
    if not db.exists():
        return False
    try:
        trials = load(db, name).trials
    except (KeyError, Exception):  # not created yet, or locked by the writer for a moment
        return False
    return any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials)


@pytest.mark.slow
def test_optimizers_study_end_to_end_and_resume_rules(tmp_path: Path, env) -> None:
    db = tmp_path / "fishopt.db"
    out = fishopt("study", "optimizers", "--data", TINY, "--epochs", "2", env=env, cwd=tmp_path)
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

    again = fishopt("study", "optimizers", "--data", TINY, "--epochs", "2", env=env, cwd=tmp_path)
    assert "already has 33 finished trials" in again.stderr
    assert len(load(db, "optimizers").trials) == 33

    other_spec = fishopt(
        "study", "optimizers", "--data", TINY, "--epochs", "3", env=env, cwd=tmp_path, check=False
    )
    assert other_spec.returncode == 2 and "different spec" in other_spec.stderr
    other_data = fishopt(
        "study",
        "optimizers",
        "--data",
        TINY + ":7",
        "--epochs",
        "2",
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert other_data.returncode == 2 and "other data" in other_data.stderr
    assert "--name optimizers-2" in other_data.stderr

    # The read-only commands in this process (a fresh interpreter per command costs seconds).
    storage = ["--storage", f"sqlite:///{db}"]
    listing = CliRunner().invoke(app, ["studies", *storage], env={"COLUMNS": "80"})
    assert listing.exit_code == 0 and "optimizers" in listing.stdout and "33" in listing.stdout
    shown = CliRunner().invoke(app, ["show", "optimizers", "--top", "3", *storage])
    assert shown.exit_code == 0 and "optimizer=" in shown.stdout


@pytest.mark.slow
def test_full_study_prunes_and_widths_depth_run(tmp_path: Path, env) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    fishopt(
        "study",
        "full",
        "--data",
        "digits",
        "--n-trials",
        "16",
        "--epochs",
        "6",
        "--storage",
        url,
        env=env,
    )
    full = load(tmp_path / "s.db", "full")
    states = [t.state for t in full.trials]
    assert states.count(TrialState.PRUNED) >= 1
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 16
    for name in ("widths", "depth"):
        fishopt(
            "study",
            name,
            "--data",
            TINY,
            "--n-trials",
            "3",
            "--epochs",
            "1",
            "--storage",
            url,
            env=env,
        )
        assert len(load(tmp_path / "s.db", name).get_trials(states=(TrialState.COMPLETE,))) == 3


def test_same_seed_gives_the_same_study(tmp_path: Path, env) -> None:
    values = []
    for run in ("a", "b"):
        url = f"sqlite:///{tmp_path / run}.db"
        fishopt(
            "study",
            "depth",
            "--data",
            "digits",
            "--n-trials",
            "3",
            "--epochs",
            "2",
            "--storage",
            url,
            env=env,
        )
        trials = load(tmp_path / f"{run}.db", "depth").trials
        values.append([(t.params, t.user_attrs["seed"], t.value) for t in trials])
    assert values[0] == values[1]


CTRL_C_SPEC = """
description = "a small grid whose trials last a few seconds: long enough to interrupt"
epochs = 200
[sampler]
name = "grid"
[pruner]
name = "none"
[fixed]
units = 64
[space]
n_layers = [1, 2]
"""


def test_ctrl_c_leaves_no_running_trial_and_the_study_resumes(tmp_path: Path, env) -> None:
    db = tmp_path / "c.db"
    spec = tmp_path / "slow.toml"
    spec.write_text(CTRL_C_SPEC)
    common = ["--data", "digits", "--storage", f"sqlite:///{db}"]
    args = [sys.executable, "-m", "fishopt.cli", "study", str(spec), *common, "--n-trials", "2"]
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if _running_with_progress(db, "slow"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("no trial started running")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "resume" in stderr
    trials = load(db, "slow").trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs.get("interrupted")

    fishopt("study", str(spec), *common, "--n-trials", "1", env=env, cwd=tmp_path)
    # The budget of 1 finished trial is met by re-running the interrupted configuration.
    trials = load(db, "slow").trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 1
    assert done[0].params == failed[0].params
    assert done[0].user_attrs["seed"] == failed[0].user_attrs["seed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "optimizers", "--data", "/no/such/folder"], "no such file or folder"),
        (["study", "optimisers"], "unknown study 'optimisers'; known studies:"),
        (["study", "optimizers", "--data", "digits", "--image-size", "59by45"], "WIDTHxHEIGHT"),
        (["show", "nothing", "--storage", "sqlite:///:memory:"], "no study 'nothing'"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(args: list[str], message: str, env) -> None:
    proc = fishopt(*args, env=env, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3


def test_malformed_spec_and_empty_folder(tmp_path: Path, env) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    proc = fishopt("study", str(bad), env=env, check=False)
    assert proc.returncode == 2 and "malformed TOML" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = fishopt("study", "optimizers", "--data", str(tmp_path / "empty"), env=env, check=False)
    assert proc.returncode == 2 and "no class folders" in proc.stderr


def test_storage_errors_mask_the_password(tmp_path: Path, env) -> None:
    url = "postgresql+psycopg://fish:hunter2secret@127.0.0.1:1/nowhere"
    proc = fishopt(
        "study", "optimizers", "--data", "digits", "--storage", url, env=env, check=False
    )
    assert proc.returncode == 2
    assert "cannot open storage" in proc.stderr
    assert "hunter2secret" not in proc.stderr + proc.stdout
    assert "fish:***@127.0.0.1" in proc.stderr
    proc = fishopt(
        "studies", "--storage", f"sqlite:///{tmp_path}/no/such/dir/x.db", env=env, check=False
    )
    assert proc.returncode == 2 and "cannot open storage" in proc.stderr


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
    numbers = re.findall(
        r"│ +\d+ │ +\d+/\d+ │ +(\d\.\d{3}) │ +\d\.\d{3} │ +\d\.\d{3} │ +\d\.\d{3} │", text
    )
    assert len(numbers) == 15, text  # the top 15, each with all six numbers whole
    assert "15 more; see `fishopt show a-rather-long-full-study-name`" in text.replace("\n", " ")
    for value in re.findall(r"(?:lr|drop)=([0-9.e+-]+)", text):
        mantissa = value.split("e")[0].replace(".", "").lstrip("0")
        assert len(mantissa) <= 3, f"{value}: floats print with 3 significant digits"


def test_a_bad_storage_is_reported_before_any_data_is_read(tmp_path: Path, env) -> None:
    """Opening the storage comes first: no images are generated or decoded for a study that
    cannot be stored."""
    cache = tmp_path / "fresh-cache"
    for command in ("study", "worker"):
        out = fishopt(
            command, "optimizers", "--storage", "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "--data", "synthetic:300", "--cache-dir", str(cache),
            env=env, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert "cannot open storage" in out.stderr and "Traceback" not in out.stderr
        assert not cache.exists() or not any(cache.rglob("*.png")), "data was made first"
