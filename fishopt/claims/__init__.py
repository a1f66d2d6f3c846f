"""The statistics a referee signs: who wins (``wins``), intervals (``intervals``), and "as good as
the best" (``equivalence``).

Every function here is pure, works on plain numbers or arrays, and has been calibrated by
simulation (``python -m bench.calibration``, written to ``bench/CALIBRATION.md``): a claim "A
beats B" comes from a procedure whose family-wise false-claim rate was measured at <= 6% for 2,
5 and 11 arms x 3, 5 and 10 seeds under normal, heavy-tailed and diverged-run noise, and an
interval is labelled 95% only where its simulated coverage was >= 93%. Where no method reaches
that (2 seeds, repeats that all scored the same), a function returns None and the page shows the
values instead. A leaf module: numpy, scipy and statsmodels only, no fishopt imports.

What comes from a library and what is written here, and why:

- ``decide``: the ranks are ``scipy.stats.rankdata`` and the null distribution of the largest
  studentized gap is ``scipy.stats.permutation_test`` (exact enumeration where it is small);
  the statistic it permutes (Tukey-Kramer's studentized gap, on ranks) is a few lines here,
  because no library offers Tukey's statistic with a permutation critical value. Tukey HSD,
  Kruskal-Wallis + Nemenyi, Friedman + Nemenyi and Games-Howell were measured beside it and
  rejected (see ``decide``).
- ``mean_interval`` and ``paired_gain_interval``: ``scipy.stats.ttest_1samp`` / ``ttest_rel``
  and their ``confidence_interval``; clipping to [0, 1] is ours.
- ``accuracy_interval``: ``scipy.stats.binomtest(...).proportion_ci(method="exact")``.
- ``held_out_f1_interval``: the Clopper-Pearson interval of accuracy from scipy, scaled by a
  stratified bootstrap written here (each class's test images drawn with replacement within
  the class, counted from the confusion matrix). Written by hand because
  ``scipy.stats.bootstrap`` with one sample per class draws the same resamples but is too slow
  to calibrate over thousands of test splits, and the calibration must run the very function
  the report calls.
- ``within_margin`` / ``smallest_within_margin``: ``statsmodels`` ``ttost_ind`` /
  ``ttost_paired``; the fixed-sequence walk over configurations is ours.
"""

from fishopt.claims.base import ALPHA, LEVEL, MARGIN, METHOD, MIN_SEEDS, RESAMPLES, SEED
from fishopt.claims.equivalence import Equivalence, Within, smallest_within_margin, within_margin
from fishopt.claims.intervals import (
    Estimate,
    accuracy_interval,
    accuracy_intervals,
    held_out_f1_interval,
    held_out_f1_intervals,
    macro_f1,
    mean_interval,
    mean_intervals,
    paired_gain_interval,
    stratified_f1,
    stratified_replicates,
)
from fishopt.claims.wins import Claim, Decision, decide, pairwise_p

__all__ = [
    "ALPHA",
    "LEVEL",
    "MARGIN",
    "METHOD",
    "MIN_SEEDS",
    "RESAMPLES",
    "SEED",
    "Claim",
    "Decision",
    "Equivalence",
    "Estimate",
    "Within",
    "accuracy_interval",
    "accuracy_intervals",
    "decide",
    "held_out_f1_interval",
    "held_out_f1_intervals",
    "macro_f1",
    "mean_interval",
    "mean_intervals",
    "paired_gain_interval",
    "pairwise_p",
    "smallest_within_margin",
    "stratified_f1",
    "stratified_replicates",
    "within_margin",
]
