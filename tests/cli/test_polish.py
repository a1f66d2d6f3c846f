"""Ready for daily use (issue 13): plain help, no third-party warnings, `data info` sizes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner
from worker_support import REPO

from fishopt.cli import app
from fishopt.cli import data as data_cli
from fishopt.data import survey

ROOT = REPO

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


@pytest.mark.slow(seconds=25)
def test_a_normal_run_prints_no_warnings(tmp_path: Path) -> None:
    """A TPE study in `--jobs 2` children (which inherit no filters), then export and report
    on the same storage: stderr has progress lines and nothing else."""
    storage = f"sqlite:///{tmp_path / 'fish.db'}"
    runs = [
        # TPE (`full`) in --jobs 2 children, which inherit no warning filters from this side.
        ("study", "full", "--data", "digits", "--n-trials", "2", "--epochs", "1", "--jobs", "2"),
        ("export-best", "full", "--out", str(tmp_path / "bundle")),
        ("report", "full", "--out", str(tmp_path / "report")),
    ]
    for args in runs:
        proc = _run(*args, "--storage", storage, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Warning" not in proc.stderr, (args, proc.stderr)
        assert "warnings.warn" not in proc.stderr, (args, proc.stderr)


# --------------------------------------------------------------- data info: native sizes


def _image_set(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    """A class-per-folder set: one PNG per listed (width, height) in each class folder."""
    rng = np.random.default_rng(0)
    for name, class_sizes in sizes.items():
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(class_sizes):
            pixels = rng.integers(0, 256, (h, w), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def _info(*args: str, cache: Path) -> list[str]:
    result = CliRunner().invoke(
        app, ["data", "info", *args, "--cache-dir", str(cache)], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    return lines


def test_aspect_change_is_symmetric_and_relative() -> None:
    assert survey.aspect_change((32, 32), (59, 45)) == pytest.approx(59 / 45 - 1)
    assert survey.aspect_change((32, 32), (45, 59)) == pytest.approx(59 / 45 - 1)
    assert survey.aspect_change((590, 445), (59, 45)) == pytest.approx((590 / 445) / (59 / 45) - 1)
    assert survey.aspect_change((64, 48), (32, 24)) == 0


def test_keep_aspect_keeps_small_images_and_shrinks_big_ones_to_the_pixel_budget() -> None:
    assert survey.keep_aspect((32, 32), (59, 45)) == (32, 32)
    w, h = survey.keep_aspect((1000, 500), (59, 45))
    assert abs(w / h - 2) < 0.05
    assert abs(w * h - 59 * 45) < 0.05 * 59 * 45


def test_survey_counts_sizes_samples_across_classes_and_counts_unreadable(
    tmp_path: Path,
) -> None:
    root = _image_set(tmp_path / "set", {"a": [(32, 32)] * 30, "b": [(40, 20)] * 10})
    files = sorted(root.glob("*/*.png"))
    whole = survey.survey_files(files)
    assert whole.sizes == (((32, 32), 30), ((40, 20), 10))
    assert (whole.examined, whole.total, whole.sampled) == (40, 40, False)
    sample = survey.survey_files(files, limit=8)
    assert (sample.examined, sample.total, sample.sampled) == (8, 40, True)
    assert dict(sample.sizes) == {(32, 32): 6, (40, 20): 2}  # both classes, in proportion
    (root / "b" / "broken.png").write_bytes(b"not a png")
    broken = survey.survey_files(sorted(root.glob("*/*.png")))
    assert broken.unreadable == 1 and sum(n for _s, n in broken.sizes) == 40


def test_data_info_says_the_native_size_and_warns_about_stretching(tmp_path: Path) -> None:
    root = _image_set(tmp_path / "icons", {"cat": [(32, 32)] * 6, "dog": [(32, 32)] * 6})
    lines = _info("--data", str(root), cache=tmp_path / "cache")
    assert "native size 32x32 (12 of 12 images)" in lines
    assert "resized to 59x45 (--image-size)" in lines
    stretch = f"{59 / 45 - 1:.0%}"
    assert f"warning: 32x32 -> 59x45 changes the aspect ratio by {stretch}" in lines
    assert "  pass --image-size 32x32 to keep it" in lines

    kept = _info("--data", str(root), "--image-size", "32x32", cache=tmp_path / "cache")
    assert "resized to 32x32 (--image-size)" in kept
    assert not any("warning" in line for line in kept)


def test_data_info_shows_a_histogram_of_mixed_sizes(tmp_path: Path) -> None:
    sizes = {"a": [(64, 48)] * 6 + [(32, 32)] * 2, "b": [(64, 48)] * 6 + [(100, 20)] * 2}
    lines = _info("--data", str(_image_set(tmp_path / "mixed", sizes)), cache=tmp_path / "c")
    at = lines.index("native sizes (16 of 16 images):")
    rows = [line.split() for line in lines[at + 1 : at + 4]]
    assert rows == [["64x48", "12", "75%"], ["32x32", "2", "12%"], ["100x20", "2", "12%"]]
    warned = [line for line in lines if line.startswith("warning:")]
    # 64x48 -> 59x45 changes the ratio by 1.7%: within tolerance, so only the other two.
    assert len(warned) == 2
    assert warned[0].startswith("warning: 32x32 -> 59x45") and warned[0].endswith("(12% of images)")
    assert warned[1].startswith("warning: 100x20 -> 59x45")
    assert not any("pass --image-size" in line for line in lines)  # the common size is fine


def test_data_info_says_when_it_sampled_and_that_digits_are_not_resized(tmp_path: Path) -> None:
    sampled = survey.Survey((((590, 445), 500),), examined=500, total=9000)
    assert data_cli._size_lines(sampled) == [
        "native size 590x445 (500 of 9000 images, a sample spread over the classes)"
    ]
    lines = _info("--data", "digits", cache=tmp_path / "cache")
    assert "native size 8x8 (1797 of 1797 images)" in lines
    assert any(line.startswith("not resized") for line in lines)
