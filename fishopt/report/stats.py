"""Small statistics for comparing configurations over repeated seeds.

Repeats are few (2-5 seeds), so intervals use Student's t, comparisons use Welch's t-test (it
does not assume equal spread, and unlike rank tests it can reach significance with 3 vs 3
samples), and a family of comparisons is corrected with Holm's step-down method, which controls
the family-wise error without assuming independence.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """Mean with a two-sided confidence interval; ``low``/``high`` are nan when n < 2."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = statistics.fmean(xs)
    if n == 1:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    sd = statistics.stdev(xs)
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


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
