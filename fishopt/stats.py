"""Statistics for comparing optimizers over a few seeds, and for test figures.

Repeats are few (3-5 seeds), so every interval here is one that cannot leave the range an F1
can take: percentile bootstrap intervals of the mean (Agarwal et al. 2021) stay within the
observed values, Wilson intervals of an accuracy within [0, 1]. Pairwise comparisons stay
Welch's t-test (it does not assume equal spread and, unlike rank tests, can reach significance
with 3 vs 3 samples) with Holm's step-down correction, which controls the family-wise error
without assuming independence; tests/test_aa.py checks the resulting false-positive rate on
identical arms. P(A > B) (Bouthillier et al. 2021) says how often one optimizer beats another;
the Friedman test with a Nemenyi critical difference ranks several optimizers over paired seeds
(Demsar 2006); the expected best of k trials (Dodge et al. 2019) shows what a search budget buys.

Bootstrap resampling uses a fixed seed, so the same study always gives the same report.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
LEVEL = 0.95
RESAMPLES = 4000
SEED = 0
SMALL_TEST = 100  # below this many test images, a test figure is too coarse to rank models


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _percentile_ci(
    samples: tuple[np.ndarray, ...], stat, level: float, seed: int, paired: bool = False
) -> tuple[float, float]:
    """scipy's percentile bootstrap with fishopt's resample count and a fixed seed."""
    res = sps.bootstrap(
        samples,
        stat,
        paired=paired,
        vectorized=True,
        confidence_level=level,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------ intervals


@dataclass(frozen=True)
class Interval:
    """Mean with a two-sided confidence interval; ``low``/``high`` are nan when n < 2."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


def bootstrap_ci(
    values: Sequence[float | None], level: float = LEVEL, seed: int = SEED
) -> Interval:
    """Mean with a percentile bootstrap interval (``scipy.stats.bootstrap``).

    The percentile interval is made of resampled means, so it lies within the smallest and the
    largest value: an F1 interval stays within [0, 1]. With 3 seeds it is narrower than it
    should be (it cannot see variation the seeds did not show), so it describes the spread; the
    verdicts come from Welch + Holm.
    """
    xs = _finite(values)
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    if n == 1:
        return Interval(1, xs[0], math.nan, math.nan, math.nan)
    if min(xs) == max(xs):  # no spread; fmean would blur 0.7 into 0.6999999999999998
        return Interval(n, xs[0], 0.0, xs[0], xs[0])
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs)
    low, high = _percentile_ci((np.asarray(xs),), np.mean, level, seed)
    # A resampled mean lies within the values; clip the float rounding that can step past them.
    low, high = max(low, min(xs)), min(high, max(xs))
    return Interval(n, mean, sd, low, high)


# ----------------------------------------------------------------------------- pairwise


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value; nan when it is undefined (n < 2 or no spread at all)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        # Identical repeats on both sides: equal means cannot be told apart, different ones
        # are separated perfectly (t is infinite).
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    with warnings.catch_warnings():
        # Nearly identical repeats (a collapsed optimizer) make scipy warn about precision;
        # the p-value is still the right answer to report.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order as given); nan stays nan and is not counted."""
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclass(frozen=True)
class Probability:
    """P(A > B) with a percentile bootstrap interval; ties count one half."""

    p: float
    low: float
    high: float
    n: int  # pairs when paired, else runs of A
    paired: bool


def _p_paired(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean((a > b) + 0.5 * (a == b), axis=axis)


def _p_all_pairs(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    x, y = a[..., :, None], b[..., None, :]
    return np.mean((x > y) + 0.5 * (x == y), axis=(-2, -1))


def prob_better(
    a: Sequence[float], b: Sequence[float], paired: bool, level: float = LEVEL, seed: int = SEED
) -> Probability:
    """P(A > B): for paired runs (same seed), the share of pairs A wins (Bouthillier et al.);
    otherwise the share of all (a, b) pairs, Mann-Whitney's U / (n m) (Agarwal et al.'s
    probability of improvement). The interval resamples pairs, or each arm separately."""
    xa, xb = np.asarray(_finite(a)), np.asarray(_finite(b))
    if paired and len(xa) != len(xb):
        raise ValueError(f"paired runs need equal counts, got {len(xa)} and {len(xb)}")
    if len(xa) == 0 or len(xb) == 0:
        return Probability(math.nan, math.nan, math.nan, 0, paired)
    stat = _p_paired if paired else _p_all_pairs
    p = float(stat(xa, xb))
    if min(len(xa), len(xb)) < 2:
        return Probability(p, math.nan, math.nan, len(xa), paired)
    low, high = _percentile_ci((xa, xb), stat, level, seed, paired)
    return Probability(p, low, high, len(xa), paired)


# ------------------------------------------------------------------------- many at once


@dataclass(frozen=True)
class Friedman:
    """Friedman test over blocks (seeds), average ranks (1 = best) and the Nemenyi post-hoc."""

    names: list[str]
    blocks: int
    statistic: float
    p: float
    ranks: dict[str, float]
    cd: float  # Nemenyi critical difference of average ranks at ALPHA
    nemenyi: list[list[float]]  # pairwise p-values, in the order of ``names``

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p) and self.p < ALPHA


def friedman(table: Mapping[str, Sequence[float]], alpha: float = ALPHA) -> Friedman | None:
    """``table``: name -> one value per block, blocks aligned (the r-th value of every name
    shares a seed). None when the test is undefined (fewer than 3 names or 2 blocks)."""
    import scikit_posthocs as skp

    names = list(table)
    blocks = {len(v) for v in table.values()}
    if len(names) < 3 or len(blocks) != 1 or blocks.pop() < 2:
        return None
    data = np.array([list(table[n]) for n in names], dtype=float).T  # blocks x names
    n, k = data.shape
    ranks = sps.rankdata(-data, axis=1).mean(axis=0)  # higher F1 -> rank 1
    q = float(sps.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    cd = q * math.sqrt(k * (k + 1) / (6 * n))
    if np.all(data == data[:, :1]):  # every block ties every name: nothing to rank
        ones = [[1.0] * k for _ in range(k)]
        return Friedman(names, n, 0.0, 1.0, dict(zip(names, ranks.tolist(), strict=True)), cd, ones)
    stat, p = sps.friedmanchisquare(*data.T)
    nem = skp.posthoc_nemenyi_friedman(data)
    return Friedman(
        names,
        n,
        float(stat),
        float(p),
        dict(zip(names, ranks.tolist(), strict=True)),
        cd,
        nem.to_numpy().tolist(),
    )


# ---------------------------------------------------------------------------- budgets


def expected_max(values: Sequence[float | None], k: int) -> tuple[float, float]:
    """Expected best of ``k`` trials drawn without replacement from ``values``, and its sd.

    Dodge et al. (2019)'s expected validation performance, with the exact without-replacement
    order statistic: the i-th smallest of n values is the best of k draws with probability
    C(i-1, k-1) / C(n, k). At k = n it is the observed best.
    """
    xs = sorted(_finite(values))
    n = len(xs)
    if not 1 <= k <= n:
        return math.nan, math.nan
    total = math.comb(n, k)
    w = [math.comb(i - 1, k - 1) / total for i in range(1, n + 1)]
    mean = sum(wi * x for wi, x in zip(w, xs, strict=True))
    second = sum(wi * x * x for wi, x in zip(w, xs, strict=True))
    return mean, math.sqrt(max(0.0, second - mean * mean))


def budget_curve(values: Sequence[float | None]) -> list[tuple[int, float, float]]:
    """(k, expected best, sd) for k = 1 .. number of finite values."""
    n = len(_finite(values))
    return [(k, *expected_max(values, k)) for k in range(1, n + 1)]


# ------------------------------------------------------------------------- test figures


def accuracy_interval(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of an accuracy: within [0, 1] and close to nominal coverage even
    for a few dozen images, where the normal approximation is not."""
    if n <= 0:
        return math.nan, math.nan
    ci = sps.binomtest(int(correct), int(n)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)


def _macro_f1(true: np.ndarray, pred: np.ndarray, n_classes: int, axis: int = -1) -> np.ndarray:
    """Macro-F1 along ``axis``, as scikit-learn's f1_score(average="macro", zero_division=0)
    without ``labels``: the mean over the classes that occur (true or predicted), so a
    bootstrap resample that happens to miss a class is not scored 0 for it (which biased the
    interval of a small test split below its own point estimate). Vectorised: a bootstrap
    costs one array pass."""
    true, pred = np.moveaxis(true, axis, -1), np.moveaxis(pred, axis, -1)
    classes = np.arange(n_classes)
    t = true[..., None] == classes  # (..., n, C)
    p = pred[..., None] == classes
    tp = (t & p).sum(-2)
    denom = t.sum(-2) + p.sum(-2)
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    present = (denom > 0).sum(-1)
    return np.divide(f1.sum(-1), present, out=np.zeros(present.shape), where=present > 0)


def macro_f1_interval(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    n_classes: int,
    level: float = LEVEL,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of macro-F1 over test images (resampled with their
    predictions): an F1 from 27 images moves a lot when a few of them change."""
    t, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    if len(t) < 2:
        return math.nan, math.nan
    return _percentile_ci(
        (t, p), lambda a, b, axis=-1: _macro_f1(a, b, n_classes, axis), level, seed, paired=True
    )


def small_test_warning(n_test: int, threshold: int = SMALL_TEST) -> str | None:
    """The warning printed beside test figures from a small test split, or None."""
    if n_test >= threshold:
        return None
    return (
        f"The test split holds only {n_test} images (fewer than {threshold}): one image "
        f"moves accuracy by {1 / max(n_test, 1):.1%}, so test figures carry wide intervals "
        "and cannot rank models; compare validation F1 over seeds instead."
    )


@dataclass(frozen=True)
class HeldOutFigures:
    """Test accuracy and macro-F1 with 95% intervals, and the small-split warning."""

    n: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    macro_f1: float
    f1_low: float
    f1_high: float
    warning: str | None

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "accuracy_ci95": [self.accuracy_low, self.accuracy_high],
            "macro_f1": self.macro_f1,
            "macro_f1_ci95": [self.f1_low, self.f1_high],
            "warning": self.warning,
        }

    def lines(self) -> list[str]:
        """What a model card or a terminal prints (fits 80 columns)."""
        out = [
            f"test accuracy {with_interval(self.accuracy, self.accuracy_low, self.accuracy_high)}"
            f" (Wilson, n = {self.n})",
            f"test macro-F1 {with_interval(self.macro_f1, self.f1_low, self.f1_high)}"
            f" (bootstrap, n = {self.n})",
        ]
        return out + ([f"warning: {self.warning}"] if self.warning else [])


def held_out_figures(
    y_true: Sequence[int], y_pred: Sequence[int], n_classes: int
) -> HeldOutFigures:
    """Everything a model card needs about the test split, from the labels and predictions."""
    t, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    n = len(t)
    correct = int((t == p).sum())
    acc = correct / n if n else math.nan
    f1 = float(_macro_f1(t, p, n_classes)) if n else math.nan
    return HeldOutFigures(
        n, acc, *accuracy_interval(correct, n), f1, *macro_f1_interval(t, p, n_classes),
        small_test_warning(n),
    )  # fmt: skip


def from_confusion(confusion: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """(y_true, y_pred) with the counts of a confusion matrix (rows true, columns predicted):
    the matrix holds everything a bootstrap over test images needs."""
    cm = np.asarray(confusion, dtype=int)
    true, pred = np.nonzero(cm)
    counts = cm[true, pred]
    return np.repeat(true, counts).tolist(), np.repeat(pred, counts).tolist()


def with_interval(value: float, low: float, high: float, digits: int = 3) -> str:
    """``0.926 (95% CI 0.771-0.984)``, or the bare value when there is no interval."""
    if value is None or not math.isfinite(value):
        return "-"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} (95% CI {low:.{digits}f}-{high:.{digits}f})"


# ----------------------------------------------------------------------------- curves


def epochs_to_fraction(curve: Sequence[float], fraction: float = 0.9) -> int | None:
    """First epoch (1-based) whose value reaches ``fraction`` of the curve's own best."""
    finite = [v for v in curve if v is not None and math.isfinite(v)]
    if not finite:
        return None
    target = fraction * max(finite)
    for i, v in enumerate(curve, start=1):
        if v is not None and math.isfinite(v) and v >= target:
            return i
    return None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when minimising x (cost) and maximising y (score)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
