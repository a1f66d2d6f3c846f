"""Tiny, fast fixtures shared by the tests: a small synthetic fish set and a temp cache."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy
from needs import group_of, require, skipped_line

from fishopt import config
from fishopt.data import synthetic

TINY_SIZE = (118, 89)  # 1/5 of the Kaggle photo size: same aspect, fast to write


@pytest.fixture(scope="session")
def tiny_fish(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9-species synthetic set in the Kaggle layout, 12 photos per species."""
    out = tmp_path_factory.mktemp("fish")
    return synthetic.generate(out, per_class=12, size=TINY_SIZE, seed=1, workers=1)


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _stop_started_processes():
    """Processes a test started through ``worker_support.start`` never outlive it."""
    yield
    from worker_support import kill_leftovers

    kill_leftovers()


# ------------------------------------------------------------- export, predict, serve (issue 3)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300):
    """`fishopt ARGS` in a fresh process, importing this checkout."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"}
    env.pop("FISHOPT_ARTIFACTS", None)
    return subprocess.run(
        [sys.executable, "-m", "fishopt.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def exported(tiny_fish: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`fishopt study optimizers` on the tiny set, then `fishopt export-best --onnx`, for real."""
    work = tmp_path_factory.mktemp("exported")
    storage = f"sqlite:///{work / 'fish.db'}"
    cache = work / "cache"
    study = run_cli(
        "study", "optimizers", "--data", str(tiny_fish), "--storage", storage,
        "--n-trials", "4", "--epochs", "6", "--cache-dir", str(cache), "--threads", "1",
    )  # fmt: skip
    assert study.returncode == 0, study.stderr
    bundle = work / "bundle"
    export = run_cli(
        "export-best", "optimizers", "--storage", storage, "--out", str(bundle), "--onnx",
        "--cache-dir", str(cache),
    )  # fmt: skip
    assert export.returncode == 0, export.stderr + export.stdout
    return {
        "work": work,
        "storage": storage,
        "cache": cache,
        "artifacts": work / "fish-artifacts",
        "bundle": bundle,
        "data": tiny_fish,
        "stdout": export.stdout,
    }


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str):
    """`fishopt ARGS` in this process (fast; for error paths): (exit code, stdout, stderr)."""
    import sys

    from fishopt import cli

    monkeypatch.setattr(sys, "argv", ["fishopt", *args])
    monkeypatch.setenv("COLUMNS", "200")
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL of `.ci/run` (FISHOPT_TEST_PG): required in CI, skipped elsewhere."""
    return postgres_url()


def postgres_url() -> str:
    url = os.environ.get("FISHOPT_TEST_PG")
    if not url:
        require("postgresql", "FISHOPT_TEST_PG is not set (.ci/run starts PostgreSQL 15)")
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        where = config.mask_url(url)
        require("postgresql", f"PostgreSQL at {where} is unreachable: {type(exc).__name__}")
    return url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line at the end: which groups were skipped for want of what, and how to run them."""
    counts: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr or "")
        group = group_of(reason)
        if group is not None:
            counts[group] += 1
    if counts:
        terminalreporter.write_line(skipped_line(dict(counts)))
