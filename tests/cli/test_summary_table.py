"""The study summary table reads well at 80 columns in a log file."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from rich.console import Console

from fishopt.cli.study import summary_table
from fishopt.search import spec as specs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fake_studies


def _render(tmp_path: Path, kind: str, once: bool = False) -> list[str]:
    """The summary table of a fake study of ``kind``; ``once``: a widths study in which one
    configuration has run once so far and another twice."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if once:
        ident = fake_studies.identity("widths", "widths", {}, {"units": [16, 64]}, 2)
        st = fake_studies.create(url, kind, ident)
        dists = {"n_units_l0": CategoricalDistribution([16, 64])}
        for units, repeat, value in ((16, 0, 0.6), (16, 1, 0.62), (64, 0, 0.7)):
            fake_studies.add(st, {"n_units_l0": units}, dists, value, [units], repeat, "c")
    else:
        fake_studies.build(url, kinds=(kind,))
        st = optuna.load_study(study_name=kind, storage=url)
    console = Console(width=80, force_terminal=False, record=True)
    console.print(summary_table(specs.load(kind), st))
    return console.export_text().splitlines()


def test_a_search_table_gives_each_configuration_one_line(tmp_path: Path) -> None:
    lines = _render(tmp_path, "full")
    assert all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if "prun/fail" in line)
    assert "sd" not in header.replace("┃", " ").split() and "valid F1" in header
    rows = [line for line in lines if "Adam" in line or "SGD" in line]
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == len(rows)  # no configuration wraps onto a second line


def test_repeated_configurations_show_their_spread(tmp_path: Path) -> None:
    lines = _render(tmp_path, "widths", once=True)
    header = next(line for line in lines if "prun/fail" in line)
    assert "sd" in header.replace("┃", " ").split() and "mean F1" in header
    rows = [line for line in lines if line.startswith("│")]
    assert not any(" 0.000 " in line for line in rows)  # one run has no spread to show
    assert any(line.split("│")[5].strip() == "-" for line in rows)
