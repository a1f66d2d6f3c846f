"""As good as the best: two one-sided tests, walked down from the best configuration."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from fishopt.claims.base import ALPHA, MARGIN, _finite

# ------------------------------------------------------------------- as good as the best


@dataclass(frozen=True)
class Within:
    """One equivalence test: is ``label`` within ``margin`` of the best?"""

    label: Hashable
    n: int
    mean: float
    diff: float  # mean of this configuration minus the best's
    p: float  # TOST p-value (the larger of the two one-sided p-values); nan when untestable
    within: bool


def within_margin(
    values: Sequence[float | None],
    best: Sequence[float | None],
    margin: float = MARGIN,
    alpha: float = ALPHA,
    paired: bool = False,
    label: Hashable = None,
) -> Within:
    """Two one-sided tests (statsmodels ``ttost_ind``, Welch, or ``ttost_paired`` when the r-th
    values of both share a seed): ``values`` is shown within ``margin`` of ``best`` when both
    "worse by margin or more" and "better by margin or more" are rejected at ``alpha``, i.e.
    the (1 - 2 alpha) interval of the difference lies inside (-margin, +margin). Untestable
    (fewer than 2 values on a side) reads ``within=False`` with p nan."""
    from statsmodels.stats.weightstats import ttost_ind, ttost_paired

    if paired:
        if len(values) != len(best):
            raise ValueError(f"paired runs need equal counts, got {len(values)} and {len(best)}")
        a = np.array([np.nan if v is None else float(v) for v in values])
        b = np.array([np.nan if v is None else float(v) for v in best])
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
    else:
        a, b = _finite(values), _finite(best)
    mean = float(a.mean()) if len(a) else math.nan
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Within(label, len(a), mean, diff, math.nan, False)
    with np.errstate(all="ignore"):
        if paired and np.all(a - b == (a - b)[0]):  # no spread: the difference is known
            p = 0.0 if abs(diff) < margin else 1.0
        elif paired:
            p = float(ttost_paired(a, b, -margin, margin)[0])
        elif a.std() == 0 and b.std() == 0:
            p = 0.0 if abs(diff) < margin else 1.0
        else:
            p = float(ttost_ind(a, b, -margin, margin, usevar="unequal")[0])
    return Within(label, len(a), mean, diff, p, bool(p < alpha))


@dataclass(frozen=True)
class Equivalence:
    """The answer to "how wide / how deep": the smallest configuration shown within ``margin``
    of the best, walking down from the best one configuration at a time (fixed-sequence
    testing: each step is tested at ``alpha`` and the walk stops at the first that is not
    shown, which keeps the family-wise error at ``alpha`` without a correction)."""

    best: Hashable | None
    answer: Hashable | None  # the best itself when no smaller configuration is shown
    margin: float
    alpha: float
    method: str
    steps: tuple[Within, ...]  # the tests walked, best's neighbour first

    @property
    def stopped_at(self) -> Within | None:
        """The first configuration not shown within the margin, or None when none stopped."""
        return next((s for s in self.steps if not s.within), None)

    @property
    def limited_by_data(self) -> bool:
        """True when the walk stopped at a configuration whose mean is within the margin: the
        seeds cannot tell, rather than the configuration being shown worse."""
        s = self.stopped_at
        return s is not None and (math.isnan(s.p) or abs(s.diff) < self.margin)


def smallest_within_margin(
    configs: Sequence[tuple[Hashable, Sequence[float | None]]],
    margin: float = MARGIN,
    alpha: float = ALPHA,
    paired: bool = False,
) -> Equivalence:
    """``configs``: (label, scores over seeds), ordered from the smallest configuration (fewest
    units, fewest layers) to the largest. The best is the one with the highest mean; the
    answer is the smallest configuration below it such that it and every configuration between
    it and the best are shown within ``margin`` of the best by ``within_margin``.

    Why a walk rather than "the smallest that passes": a small configuration can pass by luck
    while larger ones fail, and testing every configuration at alpha would let false "as good"
    claims add up; walking down and stopping at the first failure cannot.
    """
    method = (
        f"two one-sided t-tests ({'paired' if paired else 'Welch'}), margin {margin:g}, "
        f"fixed sequence from the best down, alpha {alpha:g}"
    )
    scored = [(label, _finite(v)) for label, v in configs]
    means = [float(v.mean()) if len(v) else -math.inf for _, v in scored]
    if not scored or all(m == -math.inf for m in means):
        return Equivalence(None, None, margin, alpha, method, ())
    top = int(np.argmax(means))
    best_label, best_values = configs[top]
    answer = best_label
    steps: list[Within] = []
    for label, values in reversed(configs[:top]):
        step = within_margin(values, best_values, margin, alpha, paired, label)
        steps.append(step)
        if not step.within:
            break
        answer = label
    return Equivalence(best_label, answer, margin, alpha, method, tuple(steps))
