"""fishopt.claims: a reduced calibration (the full one is ``python -m bench.calibration``), the
decision procedure against scipy, intervals that return None where they cannot hold, the
stratified resampling of test images, and the widths/depth equivalence answer.

Every simulation is seeded, so a test either always passes or always fails on a platform; the
bands below say how unlikely a failure would be for a correct procedure.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from fishopt import claims

NULL_FAMILIES = 500


def _null_band(families: int, rate: float = claims.ALPHA) -> tuple[int, int]:
    """The counts of false-claim families a procedure at exactly ``rate`` stays within with
    probability 0.999 (scipy.stats.binom quantiles): 500 families -> [11, 42], i.e. 2.2%-8.4%.
    A procedure that picks the best arm and then tests it (12.7% at 11 x 10) lands above it;
    one that never claims, below."""
    return int(sps.binom.ppf(0.0005, families, rate)), int(sps.binom.ppf(0.9995, families, rate))


@pytest.mark.parametrize(("arms", "seeds", "noise"), [(5, 5, "normal"), (11, 3, "t3")])
def test_false_claim_rate_stays_in_the_binomial_band_around_5_percent(arms, seeds, noise):
    rng = np.random.default_rng(arms * 100 + seeds)
    shape = (NULL_FAMILIES, arms, seeds)
    x = rng.standard_normal(shape) if noise == "normal" else rng.standard_t(3, shape)
    false = int((claims.pairwise_p(0.9 + 0.01 * x) <= claims.ALPHA).any((1, 2)).sum())
    low, high = _null_band(NULL_FAMILIES)
    assert low <= false <= high, f"{false} of {NULL_FAMILIES} null families made a claim"


def test_power_one_arm_better_by_one_and_a_half_sd():
    """The calibration measured 0.85-0.87 at 11 x 10 and 2 x 10 (normal noise): the better arm
    is claimed to beat at least one other in most families, and in none falsely reversed."""
    rng = np.random.default_rng(1)
    for arms in (2, 11):
        x = rng.standard_normal((300, arms, 10))
        x[:, 0] += 1.5
        beats = claims.pairwise_p(x) <= claims.ALPHA
        assert beats[:, 0, 1:].any(1).mean() > 0.75
        assert not beats[:, 1:, 0].any()


def test_decide_on_one_table_is_the_batch_and_matches_scipy_permutation_test():
    rng = np.random.default_rng(2)
    for _ in range(5):
        x = rng.standard_normal((3, 3))
        x[0] += 2.0
        d = claims.decide({name: list(row) for name, row in zip("abc", x, strict=True)})
        p = claims.pairwise_p(x)
        for i, a in enumerate("abc"):
            for j, b in enumerate("abc"):
                assert d.beats(a, b) == (p[i, j] <= claims.ALPHA)
        # 3 x 3 runs have 1680 labellings: scipy enumerates them all, so its p-value for the
        # largest studentized gap of mean ranks is exact and must be the smallest one here.
        ranks = sps.rankdata(x.ravel()).reshape(3, 3)
        res = sps.permutation_test(
            tuple(ranks), _studentized_range, permutation_type="independent",
            vectorized=True, alternative="greater",
        )  # fmt: skip
        assert min(d.p.values()) == pytest.approx(res.pvalue)


def _studentized_range(*groups, axis=-1):
    """Tukey's statistic with equal sizes: range of the means over sqrt(pooled variance / n)."""
    g = np.stack([np.moveaxis(v, axis, -1) for v in groups], -2)  # [..., arms, n]
    mse = g.var(-1, ddof=1).mean(-1)
    return np.ptp(g.mean(-1), -1) / np.sqrt(mse / g.shape[-1])


def test_decide_names_the_winner_and_what_the_data_cannot_separate():
    table = {
        "Adam": [0.95, 0.951, 0.949, 0.952, 0.95],
        "NAdam": [0.948, 0.952, 0.95, 0.951, None],  # a missing run
        "SGD": [0.80, 0.81, 0.79, 0.805, 0.80],
        "Rprop": [0.5, math.nan],  # one finite run: untested
        "Adadelta": [],
    }
    d = claims.decide(table)
    assert d.method == claims.METHOD
    assert d.untested == ("Rprop", "Adadelta")
    assert set(d.ranking) == {"Adam", "NAdam", "SGD"} and d.ranking[-1] == "SGD"
    assert set(d.tied_with_best) == {"Adam", "NAdam"}
    assert d.counts["NAdam"] == 4
    assert not d.separated
    assert {(c.winner, c.loser) for c in d.claims} == {("Adam", "SGD"), ("NAdam", "SGD")}
    assert all(c.p <= claims.ALPHA for c in d.claims)


def test_neighbours_that_do_not_overlap_are_told_apart():
    """Studentized by the spread inside the arms, three arms of 4 seeds that do not overlap
    are all separated (scaled by the spread of all ranks, as Nemenyi does, a-c would not)."""
    d = claims.decide(
        {"a": [1.0, 1.1, 1.2, 1.3], "b": [0.1, 0.2, 0.3, 0.4], "c": [0.5, 0.6, 0.7, 0.8]}
    )
    assert d.ranking == ("a", "c", "b") and d.separated and d.tied_with_best == ("a",)
    assert d.beats("a", "c") and d.beats("c", "b")
    alone = claims.decide({"a": [1.0, 2.0]})
    assert alone.best == "a" and alone.claims == () and not alone.separated


def test_two_arms_of_three_seeds_can_never_make_a_claim():
    """6 runs split 3/3 in 20 ways: even complete separation has probability 1/10 > 5%."""
    d = claims.decide({"a": [1, 2, 3], "b": [4, 5, 6]})
    assert d.claims == () and d.p[("b", "a")] == pytest.approx(0.1)


def test_ties_are_ranked_together_and_identical_arms_never_separate():
    d = claims.decide({"a": [0.9] * 5, "b": [0.9] * 5, "c": [0.9] * 5})
    assert d.claims == () and set(d.tied_with_best) == {"a", "b", "c"}


# ------------------------------------------------------------------------------ intervals


def _in_band(hits: np.ndarray, target: float = 0.93) -> bool:
    """Coverage not clearly below ``target``: at least the count a procedure covering exactly
    ``target`` reaches with probability 0.999."""
    return int(hits.sum()) >= sps.binom.ppf(0.001, hits.size, target)


def test_mean_interval_covers_at_3_seeds_and_near_the_top():
    rng = np.random.default_rng(3)
    x = 0.9 + 0.01 * rng.standard_normal((3000, 3))
    _, low, high, shown = claims.mean_intervals(x)
    assert shown.all() and _in_band((low <= 0.9) & (high >= 0.9))
    # F1 near 0.99 from a few wrong images out of 243 (the calibration's top-count model)
    rate = rng.gamma(16.0, 0.01 / 16, (3000, 5))
    x = 1 - rng.binomial(243, rate) / 243
    _, low, high, shown = claims.mean_intervals(x)
    assert (high[shown] <= 1).all()
    assert _in_band(((low <= 0.99) & (high >= 0.99))[shown])


def test_paired_gain_interval_covers():
    rng = np.random.default_rng(4)
    seed = 0.01 * rng.standard_normal((3000, 3))
    tuned = 0.91 + seed + 0.01 * rng.standard_normal((3000, 3))
    default = 0.90 + seed + 0.01 * rng.standard_normal((3000, 3))
    _, low, high, _ = claims.mean_intervals(tuned - default, bounds=None)
    assert _in_band((low <= 0.01) & (high >= 0.01))
    one = claims.paired_gain_interval([0.9, 0.92, 0.95, 0.97], [0.88, 0.9, 0.9, None])
    assert one is not None and one.n == 3 and one.method == "paired t"
    assert one.text(signed=True).startswith("+0.030 (95% CI ")


def test_intervals_are_none_where_no_method_holds():
    assert claims.mean_interval([0.91, 0.93]) is None  # 2 seeds: show the values
    assert claims.mean_interval([0.9, 0.9, 0.9]) is None  # no spread seen
    assert claims.mean_interval([0.9, None, math.nan, 0.91]) is None  # 2 finite
    assert claims.paired_gain_interval([0.9, 0.91], [0.88, 0.9]) is None
    assert claims.paired_gain_interval([0.9, 0.91, 0.92], [0.9, 0.91, 0.92]) is None
    assert claims.accuracy_interval(0, 0) is None
    assert claims.held_out_f1_interval([[1]]) is None
    iv = claims.mean_interval([0.97, 0.99, 0.999])
    assert iv is not None and iv.high == 1.0 and iv.low < 0.97  # clipped to [0, 1]


def test_accuracy_interval_is_clopper_pearson_and_covers_at_every_accuracy():
    from statsmodels.stats.proportion import proportion_confint

    iv = claims.accuracy_interval(25, 27)
    assert (iv.low, iv.high) == pytest.approx(proportion_confint(25, 27, method="beta"))
    counts = np.arange(100)
    low, high = claims.accuracy_intervals(counts, 99)
    for p in (0.6, 0.9, 0.97, 0.99, 0.999):
        covered = (low <= p) & (p <= high)
        assert sps.binom.pmf(counts, 99, p)[covered].sum() >= 0.95  # exact, not simulated


def _confusions(per_class: int, accuracy: float, samples: int, rng) -> np.ndarray:
    k = 9
    p = np.full((k, k), (1 - accuracy) / (k - 1))
    np.fill_diagonal(p, accuracy)
    return np.stack([rng.multinomial(per_class, p[c], size=samples) for c in range(k)], 1)


@pytest.mark.parametrize("accuracy", [0.9, 0.99])
def test_test_f1_interval_covers_with_27_images(accuracy):
    rng = np.random.default_rng(5)
    cm = _confusions(3, accuracy, 400, rng)
    _, low, high = claims.held_out_f1_intervals(cm, resamples=300)
    assert _in_band((low <= accuracy) & (accuracy <= high))  # errors spread: F1 = accuracy


def test_test_f1_resamples_within_each_class():
    """A classifier that answers class 0 for every image: resampled within classes, every
    replicate has the same confusion matrix, so macro-F1 never moves; resampled over all images
    (the unstratified bootstrap this replaces), the class counts and hence F1 vary."""
    cm = np.zeros((9, 9), dtype=int)
    cm[:, 0] = 3
    reps = claims.stratified_replicates(cm, 500, 0)
    assert (reps.sum(-1) == 3).all()  # every class keeps its 3 images
    assert np.ptp(claims.macro_f1(reps)) == 0
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(9), 3)
    draws = rng.integers(0, 27, (500, 27))
    flat = np.zeros((500, 9, 9), dtype=int)
    np.add.at(flat, (np.arange(500)[:, None], true[draws], 0), 1)
    assert np.ptp(claims.macro_f1(flat)) > 0  # what an unstratified resample would show
    one = claims.held_out_f1_interval(cm)
    assert one is not None and one.value == pytest.approx(claims.macro_f1(cm))


def test_test_f1_interval_at_a_perfect_split_reaches_down_like_accuracy():
    iv = claims.held_out_f1_interval(np.eye(9, dtype=int) * 3)
    acc = claims.accuracy_interval(27, 27)
    assert iv.value == 1.0 and iv.high == 1.0 and iv.low == pytest.approx(acc.low)


# ---------------------------------------------------------------------------- equivalence


PLATEAU = {16: 0.80, 32: 0.90, 64: 0.95, 128: 0.952, 256: 0.951, 512: 0.953, 1024: 0.95}


def _widths(seeds: int, sd: float = 0.002) -> list[tuple[int, list[float]]]:
    rng = np.random.default_rng(6)
    return [(w, list(m + sd * rng.standard_normal(seeds))) for w, m in PLATEAU.items()]


def test_smallest_width_within_a_point_of_the_best_is_where_f1_plateaus():
    e = claims.smallest_within_margin(_widths(5))
    assert e.best >= 64 and e.answer == 64 and e.margin == claims.MARGIN
    walked = [s.label for s in e.steps]  # down from the best, one width at a time
    assert walked == sorted(walked, reverse=True) and walked[-2:] == [64, 32]
    assert e.stopped_at.label == 32 and not e.limited_by_data  # 32 is shown worse
    assert "margin 0.01" in e.method


def test_equivalence_with_two_seeds_says_the_data_cannot_tell():
    e = claims.smallest_within_margin(_widths(2, sd=0.006))
    assert e.answer == e.best or e.limited_by_data
    one = claims.smallest_within_margin([(w, [m]) for w, m in PLATEAU.items()])
    assert one.best == 512 and one.answer == 512 and one.limited_by_data  # 1 seed: untestable
    assert math.isnan(one.steps[0].p)


def test_within_margin_paired_and_degenerate():
    w = claims.within_margin([0.95, 0.951, 0.952], [0.951, 0.952, 0.953], paired=True)
    assert w.within and w.diff == pytest.approx(-0.001)
    far = claims.within_margin([0.9] * 3, [0.95] * 3)
    assert not far.within and far.p == 1.0
    assert claims.smallest_within_margin([]).answer is None
