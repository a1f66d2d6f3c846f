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
from typer.testing import CliRunner

from fishopt import claims, config
from fishopt.cli import app
from fishopt.report import analyses, answers
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
    (s,) = load_studies(config.parse_storage(storage), ["optimizers"])
    a = analyses.analyse_optimizers(s.complete, s.spec)
    assert a.best == "Good"
    by = {c.other: c for c in a.comparisons}
    assert by["Bad"].significant and by["Bad"].p < 0.05
    assert not by["Same"].significant
    assert "cannot separate Good from Same" in by["Same"].verdict
    # The one procedure decides: the report's verdicts are claims.decide's.
    d = claims.decide(OPTIMIZER_VALUES)
    assert d.beats("Good", "Bad") and not d.beats("Good", "Same")
    assert by["Bad"].p == pytest.approx(d.p[("Good", "Bad")])
    row = {r.optimizer: r for r in a.rows}["Good"]
    assert row.f1.mean == pytest.approx(sum(OPTIMIZER_VALUES["Good"]) / 5)
    assert row.f1.low < row.f1.mean < row.f1.high  # a t interval over 5 seeds
    assert row.epochs_to_90 == 3  # fake curves reach 95% of their best at epoch 3
    assert row.gap == pytest.approx(0.05)


def test_tuned_analysis_follows_the_data(storage: str):
    d, t = load_studies(config.parse_storage(storage), ["optimizers", "optimizers-tuned"])
    a = report_tuned.analyse_tuned(t.trials, t.spec, d.complete)
    assert (a.default_best, a.tuned_best) == ("Good", "Bad")
    by = {r.optimizer: r for r in a.rows}
    bad = by["Bad"]
    assert (bad.rank_default, bad.rank_tuned) == (3, 1)
    assert bad.tuned.mean == pytest.approx(sum(TUNED_CONFIRM["Bad"]) / 3)
    assert bad.gain == pytest.approx(bad.tuned.mean - sum(OPTIMIZER_VALUES["Bad"]) / 5)
    assert bad.tuned.low < bad.tuned.mean < bad.tuned.high <= 1.0  # t interval, within [0, 1]
    assert bad.edges == ("lr = 0.098 is at the high end of its range 1e-05..0.1 (log scale)",)
    assert by["Same"].search_done == 4  # the pruned search trial counts: it spent budget
    assert len(a.budget["Same"]) == 4 and a.budget["Bad"][-1][1] == pytest.approx(0.95)
    # 3 confirm seeds: what the rank test can tell is what claims.decide says.
    verdict = claims.decide(TUNED_CONFIRM)
    assert {c.other: c.significant for c in a.comparisons} == {
        o: verdict.beats("Bad", o) for o in ("Good", "Same")
    }
    assert a.missing == []
    text = answers.tuned(t, d)
    assert text.startswith("Tuned with 4 search trials each, Bad wins with validation macro-F1")
    assert ", where Good led at defaults" in text and "tuning bought it +0.445 F1" in text
    assert "(all-pairs rank test, family-wise error 5%)" in text


def test_partial_tuned_study_says_what_is_missing(storage: str):
    (t,) = load_studies(config.parse_storage(storage), ["optimizers-tuned-partial"])
    a = report_tuned.analyse_tuned(t.trials, t.spec)
    assert a.missing == [
        "Same: 3 of 4 search trials finished (1 failed)",
        "Same: 2 of 3 confirm runs finished",
    ]
    assert {r.optimizer: len(r.confirm) for r in a.rows} == {"Bad": 3, "Good": 3, "Same": 2}
    assert a.default_best is None and "at defaults" not in answers.tuned(t)
    assert answers.tuned(t).endswith("The study is not finished.")


def test_report_writes_every_page_and_summary(report_dir: Path):
    names = {p.name for p in report_dir.iterdir()}
    assert {"index.html", "summary.md", "figures", *(f"{s}.html" for s in STUDIES)} <= names
    summary = (report_dir / "summary.md").read_text()
    page = summary.split("# Study optimizers (optimizers)")[1].split("# Study widths")[0]
    rows = [line for line in page.splitlines() if re.match(r"\| (Good|Same|Bad) \| 5 \|", line)]
    assert len(rows) == 3
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert re.fullmatch(r"\d\.\d{3} – \d\.\d{3}", cells[4]), line  # 95% CI
        assert cells[9] == "best" or re.fullmatch(r"<?\d\.\d{3}", cells[9]), line  # p-value
    assert "Good beats Bad" in summary
    assert "the data cannot separate Good from Same" in summary
    assert "Pareto front" in summary
    # Every study opens with its answer, listed again on the comparison page.
    for name, start in ANSWERS.items():
        assert summary.count(start) == 2, name
    # The tuned section appears once: in the comparison, not again on the study's page.
    assert summary.count("## Optimizers tuned (optimizers-tuned)") == 1
    tuned = [line for line in summary.splitlines() if re.match(r"\| Bad \| 0\.510 \|", line)]
    assert len(tuned) == 1 and "| +0.445 | - | 3 | 1 |" in tuned[0]
    assert "Bad: lr = 0.098 is at the high end of its range" in summary
    assert "Friedman" not in summary  # one decision procedure, nothing beside it
    assert summary.count("## Was it enough?") == 1  # the search study (full) says it
    assert "fewer than 100" in summary  # the fake split's test set is tiny
    assert "small test splits in" in summary  # said on the comparison page too
    assert re.search(
        r"test accuracy \(exact binomial 95% CI\) \| 0\.\d{3} \(95% CI 0\.\d{3}-", summary
    )
    assert not list(report_dir.rglob("*.tmp"))


def test_unknown_study_is_one_line_and_writes_nothing(storage: str, tmp_path: Path):
    out = tmp_path / "r"
    result = CliRunner().invoke(
        app, ["report", "optimizers", "nope", "--storage", storage, "--out", str(out)]
    )
    assert result.exit_code != 0
    assert "nope" in str(result.exception) and "optimizers" in str(result.exception)
    assert not out.exists()


# How each fake study's answer sentence begins (report/answers.py).
ANSWERS = {
    "optimizers": "At torch's defaults Good scores the highest validation macro-F1, 0.910 (95% CI",
    "widths": "How wide is enough: with 1 hidden layer, ",
    "depth": "How deep is enough: ",
    "full": "The best configuration is trial ",
    "optimizers-tuned": "Tuned with 4 search trials each, Bad wins with validation macro-F1 0.955",
}


def test_chromium_renders_report_offline(report_dir: Path, browser: Browser):
    # page -> (at least so many tables, at least so many images)
    expected = {
        "index": (1, 1),
        "optimizers": (4, 6),
        "widths": (4, 5),
        "depth": (4, 5),
        "full": (3, 4),
        "optimizers-tuned": (5, 4),  # no P(A>B) table or CD diagram: one procedure
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
        if page != "index":  # every study opens with its answer, first after its title
            first = browser.eval(
                "document.querySelector('h1').nextElementSibling.matches('p.answer') && "
                "document.querySelector('h1').nextElementSibling.innerText"
            )
            assert first and first.startswith(ANSWERS[page]), (page, first)
        if page in ("index", "optimizers-tuned"):  # defaults beside tuned, both pages
            text = browser.eval("document.body.innerText")
            assert "tuning bought it +0.445 F1" in text, page
            alts = browser.eval("[...document.images].map(i => i.alt).join('|')")
            assert "Budget curve" in alts, page
            cells = browser.eval(
                "[...document.querySelectorAll('table.tuned td')].map(c => c.innerText)"
            )
            assert cells[:3] == ["Bad", "0.510", "0.490 – 0.530"], page
    text = browser.eval("document.body.innerText")  # last page: optimizers-tuned
    assert "Parameter importances" in text
    assert "Was it enough?" not in text  # a tuned study has its budget curves instead


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
    from optuna_dashboard import get_note  # here: importing it costs a collecting process 2.7 s

    st = optuna.load_study(study_name="opt3", storage=url)
    assert "Which of SGD, Adam and RAdam wins here?" in get_note(st)  # written at creation
    assert all(len(t.intermediate_values) == 2 for t in st.trials)  # valid F1 per epoch
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "opt3", "--storage", url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = (out / "summary.md").read_text()
    for name in ("SGD", "Adam", "RAdam"):
        assert re.search(rf"^\| {name} \| 2 \|", summary, re.M), name
    verdicts = [ln for ln in summary.splitlines() if ln.startswith("- ") and "adjusted p" in ln]
    assert len(verdicts) == 2  # the best against each of the other two
    # 2 seeds: no interval is calibrated, so the answer gives the values' count instead.
    assert "(2 seeds, too few for an interval)" in summary
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
