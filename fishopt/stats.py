"""Descriptive statistics for the report and the model card, on top of ``fishopt.claims``.

Every interval and every "X beats Y" here comes from ``fishopt.claims``, whose error rates were
measured by simulation (``python -m bench.calibration``): the mean over seeds with a Student t
interval (shown from 3 seeds on), test accuracy with an exact binomial interval, test macro-F1
with an interval that resamples within each class. What is left here is description: the
expected best of k search trials (Dodge et al. 2019), epochs to a fraction of the best, the
Pareto front, and the wording of a value with its interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fishopt import claims

ALPHA = 0.05
LEVEL = 0.95
SMALL_TEST = 100  # below this many test images, a test figure is too coarse to rank models


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


# ------------------------------------------------------------------------------ intervals


@dataclass(frozen=True)
class Interval:
    """Mean with a two-sided confidence interval; ``low``/``high`` are nan when n < 2."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


def mean_ci(values: Sequence[float | None]) -> Interval:
    """Mean over seeds with its calibrated 95% interval (``claims.mean_interval``: Student t,
    within [0, 1]); ``low``/``high`` are nan below 3 seeds or without spread, where a page
    shows the values instead."""
    xs = _finite(values)
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = xs[0] if min(xs) == max(xs) else statistics.fmean(xs)
    sd = statistics.stdev(xs) if n > 1 else math.nan
    est = claims.mean_interval(xs)
    if est is None:
        return Interval(n, mean, sd, math.nan, math.nan)
    return Interval(n, mean, sd, est.low, est.high)


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
            f" (exact binomial, n = {self.n})",
            f"test macro-F1 {with_interval(self.macro_f1, self.f1_low, self.f1_high)}"
            f" (within-class resampling, n = {self.n})",
        ]
        return out + ([f"warning: {self.warning}"] if self.warning else [])


def held_out_figures(confusion: Sequence[Sequence[int]]) -> HeldOutFigures:
    """Everything a model card needs about the test split, from its confusion matrix (rows
    true, columns predicted): accuracy with its exact binomial interval, macro-F1 with the
    interval that resamples within each class (``fishopt.claims``)."""
    cm = np.asarray(confusion, dtype=np.int64)
    n = int(cm.sum())
    nan = (math.nan, math.nan)
    acc = claims.accuracy_interval(int(np.trace(cm)), n)
    f1 = claims.held_out_f1_interval(cm) if n >= 2 else None
    return HeldOutFigures(
        n,
        acc.value if acc else math.nan,
        *((acc.low, acc.high) if acc else nan),
        f1.value if f1 else (float(claims.macro_f1(cm)) if n else math.nan),
        *((f1.low, f1.high) if f1 else nan),
        small_test_warning(n),
    )


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
