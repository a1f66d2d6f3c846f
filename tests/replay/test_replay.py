"""Replay: a finished grid study as a table, and searches replayed on it (``fishopt.replay``)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from fishopt.errors import FishoptError
from fishopt.replay import budget, outlook, run
from fishopt.replay import table as tables
from fishopt.replay.arms import ARMS
from fishopt.search import spec as specs
from fishopt.search.session import recorded_spec
from tests.conftest import run_main

# 2 widths x 1 or 2 layers x 2 patterns: one hidden layer is "constant" and "decreasing" alike,
# so 8 grid points train 6 networks, each with 2 seeds.
TINY_GRID = """
kind = "custom"
epochs = 2
seed = 0
repeats = 2
split = [0.6, 0.4, 0.0]
[sampler]
name = "grid"
[pruner]
name = "none"
[fixed]
optimizer = "Adam"
batch_size = 64
width_ratio = 0.5
[space]
units = [8, 16]
n_layers = [1, 2]
width_pattern = ["constant", "decreasing"]
"""


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, optuna.Study]:
    """The tiny grid, really trained on digits by the trial loop that ships (a few seconds)."""
    from fishopt.search.loop import run_worker
    from fishopt.search.session import Options

    work = tmp_path_factory.mktemp("replay")
    path = work / "tiny-grid.toml"
    path.write_text(TINY_GRID)
    url = f"sqlite:///{work / 'fish.db'}"
    opts = Options(
        study=str(path),
        data="digits",
        storage=url,
        threads=1,
        cache_dir=work / "cache",
        artifacts_dir=work / "artifacts",
    )
    session, outcome = run_worker(opts, lambda _m: None, distributed=False)
    assert outcome.reason == "budget"
    return url, session.study


def noiseless(seeds: int = 3, epochs: int = 6) -> tables.Table:
    """A table whose every seed gives the same curve: configuration quality is all there is."""
    spec = specs.parse(
        {
            "epochs": epochs,
            "repeats": seeds,
            "sampler": {"name": "grid"},
            "pruner": {"name": "none"},
            "space": {
                "optimizer": ["Adam", "SGD", "RMSprop"],
                "lr": [1e-4, 1e-3, 1e-2, 1e-1],
                "units": [16, 64, 256],
            },
        },
        name="noiseless",
    )
    axes = tables._axes(spec)
    configs = list(itertools.product(*(a.values for a in axes)))
    quality = np.random.default_rng(0).permutation(len(configs)) / len(configs)
    rise = 1 - np.exp(-np.arange(1, epochs + 1) / 2)
    curves = np.repeat((quality[:, None] * rise)[:, None, :], seeds, axis=1)
    alias = {c: i for i, c in enumerate(configs)}
    return tables.Table("noiseless", axes, tuple(configs), curves, alias, spec.to_dict())


# ----------------------------------------------------------------------------------- table


def config_of(table: tables.Table, params: dict) -> int:
    """A trial's configuration; a one-layer trial asked no width pattern (any one will do)."""
    return table.alias[tuple(params.get(a.name, a.values[0]) for a in table.axes)]


def test_table_of_a_grid_study_holds_its_trials(tiny_grid) -> None:
    _url, st = tiny_grid
    spec = recorded_spec(st)
    table = tables.from_study(st, spec)
    assert (table.n_configs, table.n_seeds, table.epochs) == (6, 2, 2)
    assert table.grid_points() == 8 and len(table.alias) == 8
    trials = st.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 12
    seen = 0
    for t in trials:
        config = config_of(table, t.params)
        row = [list(c) for c in table.curves[config]]
        curve = [t.intermediate_values[e] for e in (1, 2)]
        assert any(np.allclose(curve, r) for r in row)
        assert any(math.isclose(t.value, max(r)) for r in row)
        seen += 1
    assert seen == 12
    # a configuration's truth is the mean of its trials' values
    by_config: dict[int, list[float]] = {}
    for t in trials:
        by_config.setdefault(config_of(table, t.params), []).append(t.value)
    for config, values in by_config.items():
        assert math.isclose(table.truth[config], np.mean(values))
    # one hidden layer: "constant" and "decreasing" are one configuration
    names = [a.name for a in table.axes]
    one = {p: i for p, i in table.alias.items() if p[names.index("n_layers")] == 1}
    assert len(one) == 4 and len(set(one.values())) == 2
    # the file keeps it whole
    again = tables.Table.from_json(table.to_json())
    assert again.alias == table.alias
    assert np.allclose(again.curves, table.curves, atol=1e-5, rtol=0)


def test_an_unfinished_or_search_study_is_refused(tiny_grid, tmp_path: Path) -> None:
    _url, st = tiny_grid
    spec = recorded_spec(st)
    with pytest.raises(FishoptError, match="not a grid with repeats"):
        tables.from_study(st, specs.load("full"))
    partial = optuna.create_study(study_name="partial", direction="maximize")
    for t in st.get_trials()[:7]:
        partial.add_trial(t)
    with pytest.raises(FishoptError, match=r"is not finished: .* fewer than 2 completed"):
        tables.from_study(partial, spec)


# ---------------------------------------------------------------------------------- replay


def test_a_grid_at_full_budget_always_finds_the_best_of_a_noiseless_table() -> None:
    table = noiseless()
    assert table.noise() == 0 and table.margin() == 0.01
    rs = run.replays(table, [ARMS["grid"]], 20, table.n_configs)["grid"]
    (full,) = budget.at_trials(table, rs, 0.0, [table.n_configs])
    assert full.success == 1.0 and full.regret == 0.0
    assert full.epochs == table.grid_epochs()
    # a fifth of the grid often misses the single best point
    (fifth,) = budget.at_trials(table, rs, 0.0, [table.n_configs // 5])
    assert fifth.success < 0.6


def test_pruned_replays_spend_fewer_epochs() -> None:
    table = noiseless()
    arms = [ARMS["random"], run.Arm("random+median", {"name": "random"}, ARMS["tpe+median"].pruner)]
    rs = run.replays(table, arms, 10, 30)
    (plain,) = budget.at_trials(table, rs["random"], 0.01, [30])
    (pruned,) = budget.at_trials(table, rs["random+median"], 0.01, [30])
    assert plain.epochs == 30 * table.epochs
    assert pruned.epochs < 0.8 * plain.epochs
    assert sum(r.pruned for r in rs["random+median"]) > 0


def test_a_replay_reads_seeds_a_configuration_has_not_used() -> None:
    """With repeats, a configuration's re-runs read its other seeds, and once every seed of
    a configuration has been read its declared mean is its true mean."""
    table = noiseless(seeds=2)
    table.curves[:, 1, :] *= 0.5  # seed 1 scores half of seed 0
    arm = run.Arm("x2", {"name": "random"}, repeats=2)
    r = run.replay(table, arm, seed=3, max_trials=8)
    assert len(r.declared) == 8
    # every configuration was run twice (first run, then its queued re-run): both seeds read
    assert table.truth[r.declared[-1]] == max(
        table.truth[table.config_of(table.params_of(c))] for c in set(r.declared[1::2].tolist())
    )


def test_success_counts_an_undeclared_search_as_a_failure() -> None:
    table = noiseless()
    empty = run.Replay(np.array([3]), np.array([-1]), 1)
    (b,) = budget.at_trials(table, [empty], 1.0, [1])
    assert b.success == 0.0
    before = budget.at_epochs(table, [empty], 1.0, 2)
    assert before.success == 0.0 and before.trials == 0


# ------------------------------------------------------------------------------------- CLI


def test_cli_prints_the_budget_table(tiny_grid, monkeypatch, capsys) -> None:
    url, st = tiny_grid
    code, out, err = run_main(
        monkeypatch, capsys, "replay", st.study_name, "--storage", url, "--replays", "8"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{st.study_name}: 6 configurations x 2 seeds x 2 epochs")
    assert any(line.startswith("tpe+median") for line in lines)
    assert any(line.startswith("grid, one seed") and " 6 " in line for line in lines)
    assert "you would have come within" in out.replace("\n", " ")
    assert max(map(len, lines)) <= 80


def test_cli_refuses_a_search_study_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from tests import fake_studies

    url = f"sqlite:///{tmp_path / 'fake.db'}"
    fake_studies.build(url, kinds=("full",))
    code, _out, err = run_main(monkeypatch, capsys, "replay", "full", "--storage", url)
    assert code == 2
    assert err.count("\n") == 1 and "not a grid with repeats" in err, err
    code, _out, err = run_main(monkeypatch, capsys, "replay", "nope", "--storage", url)
    assert code == 2 and err.count("\n") == 1


# --------------------------------------------------------------------------------- outlook


def test_outlook_says_whether_more_trials_help() -> None:
    st = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    st.optimize(lambda t: t.suggest_float("x", 0, 1) * 0.1 + 0.8, n_trials=8)
    few = outlook.more_trials(st.get_trials(), noise=0.01)
    assert few.regret_bound is None and few.trials == 8
    assert "trials" in few.sentence and few.doubling_gain >= 0


def test_the_success_interval_covers_95_percent() -> None:
    """The exact interval of a success rate over 200 replays, checked by simulation: it
    covers at least 95% (up to the simulation's noise) without being needlessly wide."""
    from fishopt.claims.intervals import accuracy_interval

    intervals = np.array([(e.low, e.high) for k in range(201) if (e := accuracy_interval(k, 200))])
    rng = np.random.default_rng(1)
    for p in (0.5, 0.8, 0.95):
        low, high = intervals[rng.binomial(200, p, size=4000)].T
        coverage = np.mean((low <= p) & (p <= high))
        assert 0.94 <= coverage <= 0.99, (p, coverage)


def test_a_replay_is_a_function_of_its_seed() -> None:
    table = noiseless()
    arm = ARMS["tpe+hyperband"]
    a, b = (run.replay(table, arm, seed=5, max_trials=15) for _ in range(2))
    assert a.declared.tolist() == b.declared.tolist() and a.epochs.tolist() == b.epochs.tolist()
