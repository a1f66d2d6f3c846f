"""Tiny, fast fixtures shared by the tests: a small synthetic fish set and a temp cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy

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
    url = os.environ.get("FISHOPT_TEST_PG")
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not url:
        if in_ci:
            pytest.fail("FISHOPT_TEST_PG is not set in CI; .ci/run should start PostgreSQL")
        pytest.skip("FISHOPT_TEST_PG not set (see .ci/run to start a local PostgreSQL)")
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        message = f"PostgreSQL at {config.mask_url(url)} is unreachable: {type(exc).__name__}"
        if in_ci:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def server_binaries() -> None:
    """Debian's PostgreSQL 15 and PgBouncer, for tests that start throwaway servers
    (``bench.pgserver``): required in CI (CI=true, `.ci/run` installs them), skipped elsewhere."""
    from bench import pgserver

    try:
        for name in ("initdb", "pg_ctl", "pgbouncer"):
            pgserver.binary(name)
    except pgserver.Missing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{exc} (CI must run the throwaway-server tests)")
        pytest.skip(str(exc))
