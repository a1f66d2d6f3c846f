"""``fishopt report``: the numbers, the files, and the pages as a real browser renders them."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

import optuna
import pytest
from chromium import Browser, file_url
from fake_studies import OPTIMIZER_VALUES
from fake_studies import build as build_fake
from optuna_dashboard import get_note
from typer.testing import CliRunner

from fishopt.cli import app
from fishopt.report import analyses
from fishopt.report.load import load_studies

STUDIES = ["optimizers", "widths", "depth", "full"]


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'fake.db'}"
    build_fake(url)
    return url


@pytest.fixture(scope="module")
def report_dir(storage: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(app, ["report", *STUDIES, "--storage", storage, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_optimizer_verdicts_follow_the_data(storage: str):
    (s,) = load_studies(storage, ["optimizers"])
    a = analyses.analyse_optimizers(s.complete, s.spec)
    assert a.best == "Good"
    by = {c.other: c for c in a.comparisons}
    assert by["Bad"].significant and by["Bad"].p_holm < 0.05
    assert not by["Same"].significant
    assert "cannot separate Good from Same" in by["Same"].verdict
    # Holm: the larger raw p is multiplied by 1, the smaller by 2 (two comparisons).
    assert by["Bad"].p_holm == pytest.approx(2 * by["Bad"].p)
    row = {r.optimizer: r for r in a.rows}["Good"]
    assert row.f1.mean == pytest.approx(sum(OPTIMIZER_VALUES["Good"]) / 3)
    assert row.epochs_to_90 == 3  # fake curves reach 95% of their best at epoch 3
    assert row.gap == pytest.approx(0.05)


def test_report_writes_every_page_and_summary(report_dir: Path):
    names = {p.name for p in report_dir.iterdir()}
    assert {"index.html", "summary.md", "figures", *(f"{s}.html" for s in STUDIES)} <= names
    summary = (report_dir / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if re.match(r"\| (Good|Same|Bad) \|", line)]
    assert len(rows) == 3
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert re.fullmatch(r"\d\.\d{3} – \d\.\d{3}", cells[4]), line  # 95% CI
        assert cells[9] == "best" or re.fullmatch(r"<?\d\.\d{3}", cells[9]), line  # p-value
    assert "Good beats Bad" in summary
    assert "the data cannot separate Good from Same" in summary
    assert "Pareto front" in summary
    assert not list(report_dir.rglob("*.tmp"))


def test_unknown_study_is_one_line_and_writes_nothing(storage: str, tmp_path: Path):
    out = tmp_path / "r"
    result = CliRunner().invoke(
        app, ["report", "optimizers", "nope", "--storage", storage, "--out", str(out)]
    )
    assert result.exit_code != 0
    assert "nope" in str(result.exception) and "optimizers" in str(result.exception)
    assert not out.exists()


def test_chromium_renders_report_offline(report_dir: Path):
    browser = Browser()
    try:
        # page -> (at least so many tables, at least so many images)
        expected = {
            "index": (1, 1),
            "optimizers": (4, 6),
            "widths": (4, 5),
            "depth": (4, 5),
            "full": (3, 4),
        }
        for page, (tables, images) in expected.items():
            browser.goto(file_url(report_dir / f"{page}.html"))
            n_images = browser.wait_for(
                "[...document.images].every(i => i.complete) && document.images.length"
            )
            broken = browser.eval(
                "[...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.alt)"
            )
            assert n_images >= images and broken == [], (page, broken)
            assert browser.eval("document.querySelectorAll('table').length") >= tables
            assert browser.eval("document.querySelectorAll('th').length") > 0
            urls = browser.requested_urls()
            assert urls, "the browser recorded no requests at all"
            outside = [u for u in urls if not u.startswith(("file://", "data:"))]
            assert outside == [], (page, outside)
            assert browser.failed_requests() == []
        text = browser.eval("document.body.innerText")  # last page: full
        assert "Parameter importances" in text
    finally:
        browser.close()


SMALL_OPTIMIZERS = """
description = "three optimizers, two seeds each, a small network: a fast real study"
question = "Which of SGD, Adam and RAdam wins here?"
kind = "optimizers"
epochs = 2
seed = 0
repeats = 2
[sampler]
name = "grid"
[pruner]
name = "none"
[fixed]
hidden = [32]
batch_size = 50
[space]
optimizer = ["SGD", "Adam", "RAdam"]
"""


@pytest.mark.slow
def test_report_of_a_real_study(tiny_fish: Path, tmp_path: Path):
    """A real (tiny) optimizers study, trained by fishopt, reported end to end."""
    spec = tmp_path / "opt3.toml"
    spec.write_text(SMALL_OPTIMIZERS)
    url = f"sqlite:///{tmp_path / 'real.db'}"
    runner = CliRunner()
    common = ["--storage", url, "--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
    result = runner.invoke(app, ["study", str(spec), "--data", str(tiny_fish), *common])
    assert result.exit_code == 0, result.output
    st = optuna.load_study(study_name="opt3", storage=url)
    assert "Which of SGD, Adam and RAdam wins here?" in get_note(st)  # written at creation
    assert all(len(t.intermediate_values) == 2 for t in st.trials)  # valid F1 per epoch
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "opt3", "--storage", url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = (out / "summary.md").read_text()
    for name in ("SGD", "Adam", "RAdam"):
        assert re.search(rf"^\| {name} \| 2 \|", summary, re.M), name
    assert summary.count("Holm-corrected p") == 2
    html = (out / "opt3.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert not re.search(r"(src|href)=\"https?://", html)


def test_report_from_postgresql(tmp_path: Path):
    """The same report from a real PostgreSQL storage (CI starts one; FISHOPT_TEST_PG)."""
    url = os.environ.get("FISHOPT_TEST_PG")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("FISHOPT_TEST_PG is not set (.ci/run starts PostgreSQL)")
        pytest.skip("no PostgreSQL here (set FISHOPT_TEST_PG)")
    prefix = f"report-{uuid.uuid4().hex[:8]}-"
    names = [prefix + "optimizers"]
    try:
        build_fake(url, prefix, kinds=("optimizers",))
        out = tmp_path / "pg-report"
        result = CliRunner().invoke(app, ["report", *names, "--storage", url, "--out", str(out)])
        assert result.exit_code == 0, result.output
        summary = (out / "summary.md").read_text()
        assert "Good beats Bad" in summary and "the data cannot separate Good from Same" in summary
        assert (out / f"{names[0]}.html").exists()
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=names[0], storage=url)
