"""Ready for daily use (issue 13): plain help, no third-party warnings, `data info` sizes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fishopt.cli import app

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------- plain help


def _command_paths(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group below ``group``, as the words a user types."""
    paths = [prefix]
    for name, sub in getattr(group, "commands", {}).items():
        paths.extend(_command_paths(sub, (*prefix, name)))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))
# Typer's own type labels, e.g. `<str>`, `<int range>`, `<path>`, `<bool>`, `<list[path]>`.
TYPER_LABEL = re.compile(r"<(?:bool|str|int|float|path|list|tuple|datetime)\b[^>]*>")


def _help(words: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_found() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "study", "worker", "serve", "data", "data info", "export-best"} <= names


@pytest.mark.parametrize("words", COMMANDS, ids=lambda p: " ".join(p) or "fishopt")
def test_help_shows_conventional_metavars_within_80_columns(words: tuple[str, ...]) -> None:
    text = _help(words)
    assert not TYPER_LABEL.search(text), TYPER_LABEL.search(text)
    assert "--help" in text
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    assert "…" not in text, "a help cell was cut off"


def _row(text: str, option: str) -> str:
    """The first line of ``option``'s row in a help screen."""
    return next(line for line in text.splitlines() if re.search(rf"{option}\b(?!-)", line))


@pytest.mark.parametrize(
    ("words", "option", "metavar"),
    [
        (("study",), "--storage", "URL"),
        (("study",), "--cache-dir", "PATH"),
        (("study",), "--artifacts-dir", "PATH"),
        (("study",), "--epochs", "INT"),
        (("study",), "--image-size", "WxH"),
        (("worker",), "--storage", "URL"),
        (("worker",), "--heartbeat-interval", "SECONDS"),
        (("data", "info"), "--cache-dir", "PATH"),
        (("export-best",), "--out", "PATH"),
        (("serve",), "--port", "INT"),  # no metavar declared: the conventional fallback
        (("serve",), "--host", "TEXT"),
        (("dashboard",), "--port", "PORT"),
    ],
)
def test_options_show_their_metavar(words: tuple[str, ...], option: str, metavar: str) -> None:
    assert re.search(rf"{option}\s+{re.escape(metavar)}\b", _row(_help(words), option))


def test_flags_and_arguments_show_no_type() -> None:
    study = _help(("study",))
    assert re.search(r"--strict\s+refuse", _row(study, "--strict"))
    assert "--no-strict" not in study
    assert re.search(r"--help\s+Show this", _row(study, "--help"))
    # The argument keeps its declared metavar and help (run_options passes them through).
    assert "{NAME}" in study
    assert re.search(r"NAME\s+study spec", study)
    predict = _help(("predict",))
    assert re.search(r"BUNDLE\s+bundle folder", predict)


def test_help_text_in_brackets_is_not_swallowed_as_markup() -> None:
    """Rich markup ate `[env ...; default ...]`: the env var names must be on the screen."""
    worker = " ".join(_help(("worker",)).split())
    for name in ("FISHOPT_HEARTBEAT_INTERVAL", "FISHOPT_GRACE_PERIOD", "FISHOPT_MAX_RETRY"):
        assert name in worker


# ------------------------------------------------------------------ no third-party warnings


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`fishopt ARGS` as a user runs it: a fresh process, Python's default warning filters."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FISHOPT_")}
    env.pop("PYTHONWARNINGS", None)
    env.update(PYTHONPATH=str(ROOT), COLUMNS="80", FISHOPT_CACHE=str(cwd / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "fishopt.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_a_normal_run_prints_no_warnings(tmp_path: Path) -> None:
    """TPE (`full`) in this process, then `--jobs 2` children (which inherit no filters), then
    export and report on the same storage: stderr has progress lines and nothing else."""
    storage = f"sqlite:///{tmp_path / 'fish.db'}"
    runs = [
        ("study", "full", "--data", "digits", "--n-trials", "2", "--epochs", "1"),
        (
            "study",
            "optimizers",
            "--data",
            "digits",
            "--n-trials",
            "2",
            "--epochs",
            "1",
            "--jobs",
            "2",
        ),
        ("export-best", "optimizers", "--out", str(tmp_path / "bundle")),
        ("report", "optimizers", "full", "--out", str(tmp_path / "report")),
    ]
    for args in runs:
        proc = _run(*args, "--storage", storage, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Warning" not in proc.stderr, (args, proc.stderr)
        assert "warnings.warn" not in proc.stderr, (args, proc.stderr)
