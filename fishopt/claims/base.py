"""What every claim shares: its error rate, its level, its margin, and finite values only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALPHA = 0.05  # family-wise rate of false "beats" claims, and 1 - LEVEL
LEVEL = 0.95  # the only level the intervals were calibrated at
MIN_SEEDS = 3  # below this no interval of a mean over seeds is shown (see mean_interval)
MARGIN = 0.01  # one F1 point: "as good as the best" means within this of it
PERMUTATIONS = 9999  # resamples of the rank test's null distribution (exact when fewer exist)
RESAMPLES = 1000  # stratified bootstrap resamples: they set the interval's scale (a ratio of sds)
SEED = 0  # every resample is seeded: the same study always gives the same report

METHOD = "Tukey's studentized range on the ranks of all runs, permutation critical value"


def scipy_stats():
    """scipy.stats, imported on first use: it costs about 0.8 s of CPU, and every worker imports
    this package (the tuned protocol's rule lives here) without ever computing a claim."""
    from scipy import stats

    return stats


def _finite(values: Sequence[float | None]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return arr[np.isfinite(arr)]
