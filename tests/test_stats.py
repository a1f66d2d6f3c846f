"""The report's descriptive statistics, and that its intervals are fishopt.claims' ones."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from fishopt import claims, stats
from fishopt.search import tuned

# ------------------------------------------------------------------------------ intervals


def test_mean_ci_is_claims_t_interval_within_0_1():
    xs = [0.97, 0.99, 0.995]
    iv = stats.mean_ci(xs)
    t = sps.ttest_1samp(xs, 0.0).confidence_interval(0.95)
    assert iv.mean == pytest.approx(np.mean(xs)) and iv.n == 3
    assert iv.low == pytest.approx(t.low) and iv.high == 1.0  # t's upper end clipped to 1


def test_mean_ci_shows_no_interval_where_none_is_calibrated():
    assert math.isnan(stats.mean_ci([]).mean)
    two = stats.mean_ci([0.5, 0.6])  # 2 seeds: the page shows the values
    assert two.n == 2 and math.isnan(two.low) and two.mean == pytest.approx(0.55)
    same = stats.mean_ci([0.7, 0.7, 0.7])  # no spread: nothing to say about it
    assert same.mean == 0.7 and same.sd == 0.0 and math.isnan(same.low)


# ---------------------------------------------------------------------------- budgets


def test_expected_max_is_the_mean_best_of_every_k_subset():
    values = [0.3, 0.9, 0.5, 0.5, 0.7]
    for k in range(1, 6):
        bests = [max(c) for c in itertools.combinations(values, k)]
        mean, sd = stats.expected_max(values, k)
        assert mean == pytest.approx(np.mean(bests)), k
        assert sd == pytest.approx(np.std(bests), abs=1e-9), k
    assert stats.expected_max(values, 5)[0] == 0.9  # k = n: the observed best
    assert math.isnan(stats.expected_max(values, 6)[0])
    curve = stats.budget_curve([*values, None])
    assert [k for k, _, _ in curve] == [1, 2, 3, 4, 5]
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(curve))  # never falls with budget


def test_edge_warnings_on_log_and_linear_ranges():
    space = {
        "lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "momentum": {"low": 0.0, "high": 0.99, "log": False},
        "beta1": {"low": 0.8, "high": 0.99, "log": False},
    }
    # 0.06 is 94% of the way on a log scale from 1e-5 to 0.1 (linearly it would be 60%).
    assert tuned.edge_warnings({"lr": 0.06, "momentum": 0.5, "beta1": 0.9}, space) == []
    warns = tuned.edge_warnings({"lr": 0.09, "momentum": 0.01, "optimizer": "SGD"}, space)
    assert warns == [
        "lr = 0.09 is at the high end of its range 1e-05..0.1 (log scale)",
        "momentum = 0.01 is at the low end of its range 0..0.99",
    ]
    assert tuned.edge_warnings({"lr": 1.2e-5}, space)[0].startswith("lr = 1.2e-05 is at the low")


# ------------------------------------------------------------------------- test figures


def test_held_out_figures_and_small_split_warning():
    cm = [[9, 0, 1], [0, 8, 0], [1, 0, 8]]
    fig = stats.held_out_figures(cm)
    est = claims.held_out_f1_interval(cm)
    assert (fig.macro_f1, fig.f1_low, fig.f1_high) == (est.value, est.low, est.high)
    assert fig.n == 27 and fig.accuracy == pytest.approx(25 / 27)
    assert fig.accuracy_low < fig.accuracy < fig.accuracy_high <= 1
    assert fig.f1_low < fig.macro_f1 < fig.f1_high <= 1
    assert fig.warning and "only 27 images" in fig.warning
    lines = fig.lines()
    assert lines[0].startswith("test accuracy 0.926 (95% CI 0.")
    assert "exact binomial, n = 27" in lines[0] and lines[2].startswith("warning:")
    assert all(len(line) <= 80 for line in lines[:2])
    assert fig.to_dict()["accuracy_ci95"] == [fig.accuracy_low, fig.accuracy_high]
    assert stats.small_test_warning(100) is None
    assert stats.with_interval(0.5, math.nan, math.nan) == "0.500"


# ---------------------------------------------------------------------------- unchanged


def test_epochs_to_fraction_of_own_best():
    assert stats.epochs_to_fraction([0.1, 0.5, 0.95, 1.0, 0.9]) == 3
    assert stats.epochs_to_fraction([]) is None


def test_pareto_front_minimises_cost_maximises_score():
    pts = [(10, 0.5), (20, 0.7), (15, 0.4), (30, 0.65), (40, 0.9)]
    assert stats.pareto_front(pts) == [0, 1, 4]
