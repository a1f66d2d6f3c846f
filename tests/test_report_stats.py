"""The report's statistics against scipy and hand-checked cases."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from fishopt.report import stats


def test_mean_ci_matches_student_t_interval():
    xs = [0.81, 0.84, 0.79, 0.86]
    iv = stats.mean_ci(xs)
    low, high = sps.t.interval(0.95, len(xs) - 1, loc=sum(xs) / 4, scale=sps.sem(xs))
    assert iv.n == 4
    assert iv.low == pytest.approx(low)
    assert iv.high == pytest.approx(high)


def test_mean_ci_of_one_value_has_no_interval():
    iv = stats.mean_ci([0.5])
    assert iv.mean == 0.5 and math.isnan(iv.low) and math.isnan(iv.high)


def test_welch_matches_scipy_and_handles_no_spread():
    a, b = [0.9, 0.91, 0.93], [0.85, 0.9, 0.86]
    assert stats.welch_p(a, b) == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert stats.welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0
    assert stats.welch_p([0.5, 0.5], [0.7, 0.7]) == 0.0
    assert math.isnan(stats.welch_p([0.5], [0.4, 0.6]))


def test_holm_step_down_and_monotone():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.2, math.nan, 0.001])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.002)


def test_epochs_to_fraction_of_own_best():
    assert stats.epochs_to_fraction([0.1, 0.5, 0.95, 1.0, 0.9]) == 3
    assert stats.epochs_to_fraction([]) is None


def test_pareto_front_minimises_cost_maximises_score():
    pts = [(10, 0.5), (20, 0.7), (15, 0.4), (30, 0.65), (40, 0.9)]
    assert stats.pareto_front(pts) == [0, 1, 4]
