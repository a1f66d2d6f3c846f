"""Tiny, fast fixtures shared by the tests: a small synthetic fish set and a temp cache."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from chromium import Browser
from needs import group_of, require, skipped_line

from fishopt import config
from fishopt.data import synthetic

TINY_SIZE = (118, 89)  # 1/5 of the Kaggle photo size: same aspect, fast to write
# Tests on the one PostgreSQL take this lock, shared; a test marked `stops_postgresql` takes it
# alone, so no other test (in any test process on this machine) meets the server stopped.
POSTGRESQL_LOCK = Path(tempfile.gettempdir()) / "fishopt-tests-postgresql.lock"


def pytest_configure(config: pytest.Config) -> None:
    # One torch thread per test process: `make test` runs a process per core (pytest-xdist),
    # and threads spinning for a core another process holds slow everyone down. Torch reads the
    # variable when it is imported, so it is not imported here: the xdist controller, which
    # runs no test, would pay 1.5 s for it before it starts the test processes.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:  # imported before this hook, too early to read the variable
        torch.set_num_threads(1)


SLOW_SECONDS = 10  # what a ``slow`` test without ``seconds=`` is taken to last


def _expected_seconds(item: pytest.Item) -> float:
    slow = item.get_closest_marker("slow")
    return 0.0 if slow is None else float(slow.kwargs.get("seconds", SLOW_SECONDS))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, longest first. With a test process per core, a long test collected
    last runs alone at the end while the other processes idle; started first, the short ones
    fill in around it (``make test`` lets an idle process take queued tests from a busy one:
    --dist worksteal). A process cannot take a busy one's last queued test, so that test
    should be short: ``slow(seconds=N)`` gives the order (rough seconds on 2 cores)."""
    items.sort(key=lambda item: -_expected_seconds(item))


def shared(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """A folder built once per test run and then only read, even with several xdist worker
    processes (they share the parent of their temporary folders; a lock makes the others wait
    for the first to finish building)."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / f"shared-{name}"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_fish(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9-species synthetic set in the Kaggle layout, 12 photos per species."""

    def build(out: Path) -> None:
        synthetic.generate(out, per_class=12, size=TINY_SIZE, seed=1, workers=1)

    return shared(tmp_path_factory, "fish", build) / "Fish_Dataset"


@pytest.fixture(scope="session")
def fish_cache(tiny_fish: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded cache of ``tiny_fish`` for every test, so worker processes start from it.

    It also holds the split of the multi-worker tests' spec (``worker_support.spec_file``):
    made here once, it is read back by each of their worker processes instead of importing
    scikit-learn to make it (about 1.5 s of CPU a process). The cold path, a split made and
    kept by a worker, is ``data/test_split_cache.py``'s."""
    from worker_support import spec_file

    from fishopt import data
    from fishopt.search import spec as specs
    from fishopt.search.context import split_for

    def build(out: Path) -> None:
        ds, _hit = data.load(data.parse_source(str(tiny_fish)), out)
        with tempfile.TemporaryDirectory() as folder:
            spec = specs.load(str(spec_file(Path(folder), epochs=1, n_trials=1)))
        split_for(spec, ds, spec.base_split_seed, out)

    return shared(tmp_path_factory, "fish-cache", build)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """One headless Chromium per test process."""
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture()
def browser(chromium: Browser) -> Browser:
    """A fresh tab in a fresh browser context of the shared Chromium."""
    return chromium.fresh()


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


@pytest.fixture(scope="session")
def exported(tiny_fish: Path, fish_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`fishopt study optimizers` on the tiny set, then `fishopt export-best --onnx`, for real
    (in this process: what they print and store is what a user gets), built once per run."""

    def build(work: Path) -> None:
        from typer.testing import CliRunner

        from fishopt.cli import app

        runner = CliRunner()
        env = {"FISHOPT_ARTIFACTS": None, "COLUMNS": "200"}
        study = runner.invoke(
            app,
            [
                "study", "optimizers", "--data", str(tiny_fish), "--storage",
                f"sqlite:///{work / 'fish.db'}", "--n-trials", "4", "--epochs", "6",
                "--cache-dir", str(fish_cache), "--threads", "1",
            ],
            env=env,
        )  # fmt: skip
        assert study.exit_code == 0, study.output
        export = runner.invoke(
            app,
            [
                "export-best", "optimizers", "--storage", f"sqlite:///{work / 'fish.db'}",
                "--out", str(work / "bundle"), "--onnx", "--cache-dir", str(fish_cache),
            ],
            env=env,
        )  # fmt: skip
        assert export.exit_code == 0, export.output
        (work / "export.out").write_text(export.stdout)

    work = shared(tmp_path_factory, "exported", build)
    return {
        "work": work,
        "storage": f"sqlite:///{work / 'fish.db'}",
        "cache": fish_cache,
        "artifacts": work / "fish-artifacts",
        "bundle": work / "bundle",
        "data": tiny_fish,
        "stdout": (work / "export.out").read_text(),
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


@pytest.fixture()
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The PostgreSQL of `.ci/run` (FISHOPT_TEST_PG): required in CI, skipped elsewhere.

    Held for the test under ``POSTGRESQL_LOCK``: shared, or alone for a test that stops the
    server. (pytest-xdist's ``xdist_group`` would keep such tests in one process, but with
    pytest 9 it groups nothing, and it would not keep the other PostgreSQL tests away.)"""
    alone = request.node.get_closest_marker("stops_postgresql") is not None
    with POSTGRESQL_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield postgres_url()


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


@pytest.fixture(scope="session")
def server_binaries() -> None:
    """Debian's PostgreSQL 15 and PgBouncer, for tests that start throwaway servers
    (``bench.pgserver``): required in CI (CI=true, `.ci/run` installs them), skipped elsewhere."""
    from bench import pgserver

    try:
        for name in ("initdb", "pg_ctl", "pgbouncer"):
            pgserver.binary(name)
    except pgserver.Missing as exc:
        require("pgbouncer", str(exc))


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


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300):
    """`fishopt ARGS` in a fresh process, importing this checkout."""
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
