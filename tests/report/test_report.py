"""``fishopt report``: the numbers, the files, and the pages as a real browser renders them."""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

import optuna
import pytest
from chromium import Browser, file_url
from fake_studies import OPTIMIZER_VALUES, TUNED_CONFIRM
from fake_studies import build as build_fake
from optuna_dashboard import get_note
from typer.testing import CliRunner

from fishopt.cli import app
from fishopt.report import analyses
from fishopt.report import tuned as report_tuned
from fishopt.report.load import load_studies

STUDIES = ["optimizers", "widths", "depth", "full", "optimizers-tuned"]


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'fake.db'}"
    build_fake(url)
    build_fake(url, kinds=("optimizers-tuned", "optimizers-tuned-partial"))
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


def test_tuned_analysis_follows_the_data(storage: str):
    d, t = load_studies(storage, ["optimizers", "optimizers-tuned"])
    a = report_tuned.analyse_tuned(t.trials, t.spec, d.complete)
    assert (a.default_best, a.tuned_best) == ("Good", "Bad")
    by = {r.optimizer: r for r in a.rows}
    bad = by["Bad"]
    assert (bad.rank_default, bad.rank_tuned) == (3, 1)
    assert bad.tuned.mean == pytest.approx(sum(TUNED_CONFIRM["Bad"]) / 3)
    assert bad.gain == pytest.approx(bad.tuned.mean - sum(OPTIMIZER_VALUES["Bad"]) / 3)
    assert 0.95 <= bad.tuned.low < bad.tuned.high <= 0.96  # bootstrap stays within the runs
    assert bad.edges == ("lr = 0.098 is at the high end of its range 1e-05..0.1 (log scale)",)
    assert by["Same"].search_done == 4  # the pruned search trial counts: it spent budget
    assert len(a.budget["Same"]) == 4 and a.budget["Bad"][-1][1] == pytest.approx(0.95)
    assert all(c.significant for c in a.comparisons)
    assert [o for o, _ in a.probabilities] == ["Good", "Same"]
    assert a.probabilities[0][1].p == 1.0 and a.probabilities[0][1].paired
    assert a.friedman is not None and a.friedman.blocks == 3
    assert not a.friedman.significant  # 3 seeds: Friedman cannot reach p < 0.05 here
    assert a.missing == []
    text = report_tuned.tuned_opening(a)
    assert text.startswith("At defaults, Good wins")
    assert "Bad wins (0.955" in text and "Tuning bought Bad +0.445 F1" in text
    assert "(it ranked 3 there)" in text and "The data can tell Bad from Good" in text


def test_partial_tuned_study_says_what_is_missing(storage: str):
    (t,) = load_studies(storage, ["optimizers-tuned-partial"])
    a = report_tuned.analyse_tuned(t.trials, t.spec)
    assert a.missing == [
        "Same: 3 of 4 search trials finished (1 failed)",
        "Same: 2 of 3 confirm runs finished",
        "Friedman test: 2 seeds have a confirm run of every optimizer; "
        "the others are left out of it",
    ]
    assert {r.optimizer: len(r.confirm) for r in a.rows} == {"Bad": 3, "Good": 3, "Same": 2}
    assert a.friedman is not None and a.friedman.blocks == 2
    assert a.default_best is None and "At defaults" not in report_tuned.tuned_opening(a)


def test_report_writes_every_page_and_summary(report_dir: Path):
    names = {p.name for p in report_dir.iterdir()}
    assert {"index.html", "summary.md", "figures", *(f"{s}.html" for s in STUDIES)} <= names
    summary = (report_dir / "summary.md").read_text()
    page = summary.split("# Study optimizers (optimizers)")[1].split("# Study widths")[0]
    rows = [line for line in page.splitlines() if re.match(r"\| (Good|Same|Bad) \| 3 \|", line)]
    assert len(rows) == 3
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert re.fullmatch(r"\d\.\d{3} – \d\.\d{3}", cells[4]), line  # 95% CI
        assert cells[9] == "best" or re.fullmatch(r"<?\d\.\d{3}", cells[9]), line  # p-value
    assert "Good beats Bad" in summary
    assert "the data cannot separate Good from Same" in summary
    assert "Pareto front" in summary
    # issue 10: defaults beside tuned, on the comparison page and the tuned study's page
    assert summary.count("Tuning bought Bad +0.445 F1 over its defaults") == 2
    tuned = [line for line in summary.splitlines() if re.match(r"\| Bad \| 0\.510 \|", line)]
    assert len(tuned) == 2 and all("| +0.445 | 3 | 1 |" in line for line in tuned)
    assert "Bad: lr = 0.098 is at the high end of its range" in summary
    assert "Friedman chi-square = 4.67 over 3 seeds" in summary
    assert "At defaults, Good wins" in summary  # the optimizers page opens with it too
    assert "fewer than 100" in summary  # the fake split's test set is tiny
    assert re.search(r"test accuracy \(Wilson 95% CI\) \| 0\.\d{3} \(95% CI 0\.\d{3}-", summary)
    assert not list(report_dir.rglob("*.tmp"))


def test_unknown_study_is_one_line_and_writes_nothing(storage: str, tmp_path: Path):
    out = tmp_path / "r"
    result = CliRunner().invoke(
        app, ["report", "optimizers", "nope", "--storage", storage, "--out", str(out)]
    )
    assert result.exit_code != 0
    assert "nope" in str(result.exception) and "optimizers" in str(result.exception)
    assert not out.exists()


def test_chromium_renders_report_offline(report_dir: Path, browser: Browser):
    # page -> (at least so many tables, at least so many images)
    expected = {
        "index": (1, 1),
        "optimizers": (4, 6),
        "widths": (4, 5),
        "depth": (4, 5),
        "full": (3, 4),
        "optimizers-tuned": (6, 5),
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
        if page in ("index", "optimizers-tuned"):  # defaults beside tuned, both pages
            text = browser.eval("document.body.innerText")
            assert "Tuning bought Bad +0.445 F1" in text, page
            alts = browser.eval("[...document.images].map(i => i.alt).join('|')")
            assert "Critical-difference diagram" in alts and "Budget curve" in alts, page
            cells = browser.eval(
                "[...document.querySelectorAll('table.tuned td')].map(c => c.innerText)"
            )
            assert cells[:3] == ["Bad", "0.510", "0.500 – 0.520"], page
    text = browser.eval("document.body.innerText")  # last page: optimizers-tuned
    assert "Parameter importances" in text


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
    verdicts = [ln for ln in summary.splitlines() if ln.startswith("- ") and "Holm-corr" in ln]
    assert len(verdicts) == 2  # the best against each of the other two
    assert "At defaults, " in summary  # and the page opens with the paragraph
    html = (out / "opt3.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert not re.search(r"(src|href)=\"https?://", html)


def test_report_from_postgresql(pg_url: str, tmp_path: Path):
    """The same report from a real PostgreSQL storage (CI starts one; FISHOPT_TEST_PG)."""
    url = pg_url
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
