"""The report's statistics against scipy, scikit-learn and hand-checked cases."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import f1_score

from fishopt import stats
from fishopt.search import tuned

# ------------------------------------------------------------------------------ intervals


def test_bootstrap_ci_stays_within_the_values_where_student_t_does_not():
    xs = [0.05, 0.62, 0.71]  # a diverged seed: Student's t would reach below 0
    iv = stats.bootstrap_ci(xs)
    t_low, _ = sps.t.interval(0.95, 2, loc=np.mean(xs), scale=sps.sem(xs))
    assert t_low < 0
    assert min(xs) <= iv.low < iv.mean < iv.high <= max(xs)
    assert iv.n == 3 and iv.mean == pytest.approx(np.mean(xs))
    assert stats.bootstrap_ci(xs) == iv  # fixed resampling seed: the same report every time


def test_bootstrap_ci_covers_the_mean_about_as_often_as_it_says():
    # 200 samples of 30 from a known distribution: a 95% interval should miss ~5% of the time.
    rng = np.random.default_rng(1)
    misses = sum(
        not (iv.low <= 0.5 <= iv.high)
        for iv in (stats.bootstrap_ci(rng.beta(5, 5, 30).tolist(), seed=i) for i in range(200))
    )
    assert misses <= 22  # 5% of 200 is 10; binomial 99.9% quantile with some slack


def test_bootstrap_ci_degenerate_cases():
    assert math.isnan(stats.bootstrap_ci([]).mean)
    one = stats.bootstrap_ci([0.5, None, math.nan])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.low)
    same = stats.bootstrap_ci([0.7, 0.7, 0.7])
    assert (same.low, same.high, same.sd) == (0.7, 0.7, 0.0)


def test_iqm_drops_the_outer_quarters():
    assert stats.iqm([0.0, 0.8, 0.9, 1.0]) == pytest.approx(0.85)
    assert math.isnan(stats.iqm([]))


# ----------------------------------------------------------------------------- pairwise


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


def test_prob_better_unpaired_is_mann_whitney_u_over_nm():
    a, b = [0.9, 0.8, 0.85, 0.7], [0.75, 0.8, 0.6]
    pr = stats.prob_better(a, b, paired=False)
    u = sps.mannwhitneyu(a, b).statistic  # ties count one half, as here
    assert pr.p == pytest.approx(u / 12)
    assert 0 <= pr.low <= pr.p <= pr.high <= 1 and not pr.paired


def test_prob_better_paired_counts_pairs_won():
    a, b = [0.9, 0.8, 0.85, 0.7], [0.8, 0.8, 0.9, 0.6]
    pr = stats.prob_better(a, b, paired=True)
    assert pr.p == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert pr.n == 4 and 0 <= pr.low <= pr.p <= pr.high <= 1
    with pytest.raises(ValueError, match="equal counts"):
        stats.prob_better([0.1, 0.2], [0.1], paired=True)
    assert math.isnan(stats.prob_better([0.5], [0.4], paired=True).low)


# ------------------------------------------------------------------------------ friedman


def test_friedman_matches_scipy_and_ranks_best_first():
    table = {
        "A": [0.90, 0.91, 0.92, 0.90],
        "B": [0.80, 0.85, 0.84, 0.86],
        "C": [0.50, 0.52, 0.86, 0.40],
    }
    f = stats.friedman(table)
    assert f is not None
    assert f.p == pytest.approx(sps.friedmanchisquare(*table.values()).pvalue)
    assert f.ranks == pytest.approx({"A": 1.0, "B": 2.25, "C": 2.75})
    # Demsar (2006), Table 5(a): q_0.05 for 3 classifiers is 2.343.
    assert f.cd == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), abs=1e-3)
    assert len(f.nemenyi) == 3 and f.nemenyi[0][0] == pytest.approx(1.0)


def test_friedman_undefined_and_all_tied():
    assert stats.friedman({"A": [1, 2], "B": [1, 2]}) is None  # two names: use a pairwise test
    assert stats.friedman({"A": [1], "B": [2], "C": [3]}) is None  # one block
    tied = stats.friedman({"A": [0.5, 0.6], "B": [0.5, 0.6], "C": [0.5, 0.6]})
    assert tied is not None and tied.p == 1.0 and not tied.significant


# ------------------------------------------------------------------------------ budgets


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


def test_accuracy_interval_is_wilson_and_within_0_1():
    low, high = stats.accuracy_interval(27, 27)
    assert high == pytest.approx(1.0) and 0.85 < low < 0.9  # Wilson: 27/27 -> 0.875
    z = sps.norm.ppf(0.975)
    n, k = 40, 30
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert stats.accuracy_interval(k, n) == pytest.approx((centre - half, centre + half))
    assert all(math.isnan(x) for x in stats.accuracy_interval(0, 0))


def test_macro_f1_matches_scikit_learn_and_its_interval_brackets_it():
    rng = random.Random(3)
    true = [rng.randrange(4) for _ in range(60)]
    pred = [t if rng.random() < 0.7 else rng.randrange(5) for t in true]  # class 4: never true
    expected = f1_score(true, pred, labels=range(5), average="macro", zero_division=0)
    assert float(stats._macro_f1(np.array(true), np.array(pred), 5)) == pytest.approx(expected)
    low, high = stats.macro_f1_interval(true, pred, 5)
    assert 0 <= low < expected < high <= 1


def test_held_out_figures_and_small_split_warning():
    true, pred = stats.from_confusion([[9, 0, 1], [0, 8, 0], [1, 0, 8]])
    assert len(true) == 27 and sum(t == p for t, p in zip(true, pred, strict=True)) == 25
    fig = stats.held_out_figures(true, pred, 3)
    assert fig.n == 27 and fig.accuracy == pytest.approx(25 / 27)
    assert fig.accuracy_low < fig.accuracy < fig.accuracy_high <= 1
    assert fig.f1_low < fig.macro_f1 < fig.f1_high <= 1
    assert fig.warning and "only 27 images" in fig.warning
    lines = fig.lines()
    assert lines[0].startswith("test accuracy 0.926 (95% CI 0.")
    assert "Wilson, n = 27" in lines[0] and lines[2].startswith("warning:")
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
