"""The statistics a referee signs: who wins, intervals, and "as good as the best".

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

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05  # family-wise rate of false "beats" claims, and 1 - LEVEL
LEVEL = 0.95  # the only level the intervals were calibrated at
MIN_SEEDS = 3  # below this no interval of a mean over seeds is shown (see mean_interval)
MARGIN = 0.01  # one F1 point: "as good as the best" means within this of it
PERMUTATIONS = 9999  # resamples of the rank test's null distribution (exact when fewer exist)
RESAMPLES = 1000  # stratified bootstrap resamples: they set the interval's scale (a ratio of sds)
SEED = 0  # every resample is seeded: the same study always gives the same report

METHOD = "Tukey's studentized range on the ranks of all runs, permutation critical value"


def _finite(values: Sequence[float | None]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return arr[np.isfinite(arr)]


# ------------------------------------------------------------------------------ who wins


@dataclass(frozen=True)
class Claim:
    """The claim that ``winner`` beats ``loser``, with its family-wise adjusted p-value."""

    winner: str
    loser: str
    p: float


@dataclass(frozen=True)
class Decision:
    """Which arm wins and what the data can tell; what every page, summary and CLI prints.

    ``ranking`` orders the arms by mean rank (the statistic the test uses; ties by mean score),
    best first. ``tied_with_best`` is the best and every arm the data cannot separate from it.
    ``claims`` are all the "X beats Y" statements the procedure makes, at family-wise rate
    ``alpha`` over the whole table. ``p[(a, b)]`` is the adjusted p-value of the pair (either
    order). Arms with fewer than 2 finite scores are in ``untested`` and nowhere else (a
    permutation test needs two runs per arm).
    """

    method: str
    alpha: float
    ranking: tuple[str, ...]
    means: Mapping[str, float]
    mean_ranks: Mapping[str, float]
    counts: Mapping[str, int]
    tied_with_best: tuple[str, ...]
    claims: tuple[Claim, ...]
    p: Mapping[tuple[str, str], float]
    untested: tuple[str, ...] = ()

    @property
    def best(self) -> str | None:
        return self.ranking[0] if self.ranking else None

    @property
    def separated(self) -> bool:
        """True when the best beats every other arm: the data can tell who wins."""
        return len(self.ranking) > 1 and len(self.tied_with_best) == 1

    def beats(self, a: str, b: str) -> bool:
        return any(c.winner == a and c.loser == b for c in self.claims)


def _gaps(means: np.ndarray, sse: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(..., k, k): Tukey-Kramer's studentized gap (R_i - R_j) / sqrt(MSE / 2 (1/n_i + 1/n_j))
    between arms' mean ranks, MSE the pooled within-arm variance of the ranks (``sse`` the
    within-arm sum of squares). Studentizing by the spread inside the arms, not by the spread
    of all ranks (Kruskal-Wallis, Nemenyi), is what lets two neighbouring arms whose runs do
    not overlap be told apart. No spread and no gap reads 0."""
    mse = sse / (sizes.sum() - len(sizes))
    scale = np.sqrt(mse[..., None, None] / 2 * (1.0 / sizes[:, None] + 1.0 / sizes[None, :]))
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = (means[..., :, None] - means[..., None, :]) / scale
    return np.nan_to_num(gaps, nan=0.0, posinf=np.inf, neginf=-np.inf)


def _max_gap(sizes: np.ndarray):
    def statistic(*groups: np.ndarray, axis: int = -1) -> np.ndarray:
        groups = tuple(np.moveaxis(g, axis, -1) for g in groups)
        means = np.stack([g.mean(-1) for g in groups], axis=-1)
        sse = sum(((g - g.mean(-1, keepdims=True)) ** 2).sum(-1) for g in groups)
        return _gaps(means, sse, sizes).max(axis=(-2, -1))

    return statistic


@functools.lru_cache(maxsize=256)
def _null(sizes: tuple[int, ...], pooled: tuple[float, ...]) -> tuple[np.ndarray, bool]:
    """Sorted permutation distribution of the largest studentized gap, and whether it is exact.

    Under "all arms equal" every assignment of the pooled ranks to arms of these sizes is
    equally likely, so the distribution depends only on the sizes and the ranks (ties
    included), not on which arm holds which: it is computed once per design from the sorted
    ranks, with a fixed seed, and cached (a pure function, memoised).
    """
    arr = np.asarray(pooled, dtype=float)
    cuts = np.cumsum(sizes)[:-1]
    groups = np.split(arr, cuts)
    res = sps.permutation_test(
        groups,
        _max_gap(np.asarray(sizes, dtype=float)),
        permutation_type="independent",
        vectorized=True,
        n_resamples=PERMUTATIONS,
        alternative="greater",
        rng=np.random.default_rng(SEED),
    )
    n_max = math.factorial(len(arr))
    for n in sizes:
        n_max //= math.factorial(n)
    return np.sort(np.asarray(res.null_distribution, dtype=float)), n_max <= PERMUTATIONS


def _adjusted_p(gaps: np.ndarray, null: np.ndarray, exact: bool) -> np.ndarray:
    """Single-step max-T adjusted p-values: P(largest gap under the null >= this gap), counted
    as scipy.stats.permutation_test counts (its float tolerance, +1 for a sampled null)."""
    tol = np.where(np.isfinite(gaps), np.abs(gaps) * np.finfo(float).eps * 100, 0.0)
    count = len(null) - np.searchsorted(null, gaps - tol, side="left")
    adj = 0 if exact else 1
    return (count + adj) / (len(null) + adj)


def pairwise_p(scores: np.ndarray) -> np.ndarray:
    """Adjusted p-values ``p[..., i, j]`` for "arm i beats arm j", for a stack of complete
    tables ``scores[..., arms, seeds]`` (no NaN, equal seeds per arm). ``decide`` is this on one
    table; the calibration runs it on thousands at once. p is 1 where arm i ranks below j."""
    scores = np.asarray(scores, dtype=float)
    *batch, k, n = scores.shape
    flat = scores.reshape(-1, k * n)
    ranks = sps.rankdata(flat, axis=1)
    sizes = np.full(k, n, dtype=float)
    grouped = ranks.reshape(-1, k, n)
    sse = ((grouped - grouped.mean(-1, keepdims=True)) ** 2).sum((-2, -1))
    gaps = _gaps(grouped.mean(-1), sse, sizes)
    out = np.ones_like(gaps)
    pooled = np.sort(ranks, axis=1)
    patterns, which = np.unique(pooled, axis=0, return_inverse=True)
    for u, pattern in enumerate(patterns):
        rows = which.reshape(-1) == u
        null, exact = _null((n,) * k, tuple(pattern.tolist()))
        out[rows] = _adjusted_p(gaps[rows], null, exact)
    out = np.where(gaps > 0, out, 1.0)
    return out.reshape(*batch, k, k)


def decide(table: Mapping[str, Sequence[float | None]], alpha: float = ALPHA) -> Decision:
    """Which arm wins, and which "X beats Y" claims the data supports, at family-wise ``alpha``.

    ``table``: arm -> its scores, one per seed. Seeds may be shared across arms (the r-th score
    of every arm from one seed), counts may differ, None/NaN are dropped; arms left with fewer
    than 2 scores are set aside as untested. The test ranks all runs together, computes
    Tukey's studentized gap between every two arms' mean ranks (the rank transform of Conover
    & Iman 1981), and claims "i beats j" when that gap exceeds what the largest gap among all
    pairs reaches in 95% of random relabellings of the runs: a permutation max-T, so the
    family-wise rate holds exactly for any noise, any number of arms and ties, with the winner
    picked from the data. The pairing of seeds is not used: where a seed lifts every arm alike,
    the test only grows conservative (simulated with seed effects 3x the run noise: 0.1% false
    claims instead of 5%) and loses power, never the other way.

    Why this test (bench/CALIBRATION.md: all arms equal, 2, 5, 11 arms x 3, 5, 10 seeds,
    normal, t(3) and 5%-diverged noise, 4,000 families each): today's pick-the-best-then-
    Welch+Holm claimed falsely in 13.2% of families at 11 x 10; Tukey HSD on the scores in
    6.3-6.9% with heavy tails at 11 arms, and one diverged run inflates its pooled variance
    until it claims almost nothing (power 0.03 at 11 x 10, against 0.70 here); Games-Howell in
    up to 11.6% (11 x 3); Friedman + Nemenyi in 6.5-6.8% at 2 x 5 (the sign test's
    discreteness), with the least power; Kruskal-Wallis + Nemenyi (ranks scaled by the spread
    of all ranks) in 9.3-10.4% at 2 x 3, and it cannot separate neighbouring arms whose runs
    do not overlap. This test: 0-5.7%, at 5% within sampling error. Its price: with 2 arms x 3
    seeds no rank test can claim anything (the most extreme split of 6 runs has probability
    1/10), where Tukey on the scores has power 0.28 at +1.5 sd.
    """
    names = list(table)
    values = {name: _finite(table[name]) for name in names}
    arms = [name for name in names if len(values[name]) >= 2]
    untested = tuple(name for name in names if len(values[name]) < 2)
    means = {a: float(values[a].mean()) for a in arms}
    counts = {a: len(values[a]) for a in arms}
    if len(arms) < 2:
        return Decision(
            METHOD, alpha, tuple(arms), means, {a: 1.0 for a in arms}, counts,
            tuple(arms), (), {}, untested,
        )  # fmt: skip
    sizes = np.array([counts[a] for a in arms], dtype=float)
    ranks = sps.rankdata(np.concatenate([values[a] for a in arms]))
    groups = np.split(ranks, np.cumsum(sizes)[:-1].astype(int))
    mean_ranks = np.array([g.mean() for g in groups])
    sse = np.array(sum(((g - g.mean()) ** 2).sum() for g in groups))
    gaps = _gaps(mean_ranks, sse, sizes)
    null, exact = _null(tuple(int(s) for s in sizes), tuple(np.sort(ranks).tolist()))
    p = np.where(gaps > 0, _adjusted_p(gaps, null, exact), 1.0)
    order = sorted(range(len(arms)), key=lambda i: (-mean_ranks[i], -means[arms[i]], arms[i]))
    ranking = tuple(arms[i] for i in order)
    pmap: dict[tuple[str, str], float] = {}
    for i, a in enumerate(arms):
        for j, b in enumerate(arms):
            if i != j:
                pmap[(a, b)] = float(min(p[i, j], p[j, i]))
    claims = tuple(
        Claim(arms[i], arms[j], float(p[i, j]))
        for i in order
        for j in order
        if i != j and p[i, j] <= alpha
    )
    top = order[0]
    tied = tuple(arms[j] for j in order if j == top or p[top, j] > alpha)
    return Decision(
        METHOD, alpha, ranking, means,
        {a: float(r) for a, r in zip(arms, mean_ranks, strict=True)}, counts,
        tied, claims, pmap, untested,
    )  # fmt: skip


# ----------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Estimate:
    """A value with its calibrated 95% interval (``method`` names how it was computed)."""

    value: float
    low: float
    high: float
    n: int
    method: str

    def text(self, digits: int = 3, signed: bool = False) -> str:
        """``0.926 (95% CI 0.771-0.984)``, or with ``signed`` (a gain)
        ``+0.012 (95% CI -0.004 to +0.028)``: what a page or a card prints."""
        if signed:
            f = f"+.{digits}f"
            return f"{self.value:{f}} (95% CI {self.low:{f}} to {self.high:{f}})"
        f = f".{digits}f"
        return f"{self.value:{f}} (95% CI {self.low:{f}}-{self.high:{f}})"


def mean_intervals(
    values: np.ndarray, bounds: tuple[float, float] | None = (0.0, 1.0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high, shown) along the last axis; ``mean_interval`` on many rows at once.

    ``shown`` is False where no interval is given: fewer than MIN_SEEDS values or no spread.
    """
    x = np.asarray(values, dtype=float)
    n = x.shape[-1]
    mean = x.mean(-1)
    if n < MIN_SEEDS:
        nan = np.full(mean.shape, np.nan)
        return mean, nan, nan, np.zeros(mean.shape, dtype=bool)
    spread = np.ptp(x, axis=-1) > 0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Nearly identical values make scipy warn about precision; they get an interval only
        # when they differ at all, and then the t interval is the right answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = sps.ttest_1samp(x, 0.0, axis=-1).confidence_interval(LEVEL)
    low, high = np.asarray(ci.low, dtype=float), np.asarray(ci.high, dtype=float)
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    return mean, np.where(spread, low, np.nan), np.where(spread, high, np.nan), spread


def mean_interval(
    values: Sequence[float | None], bounds: tuple[float, float] | None = (0.0, 1.0)
) -> Estimate | None:
    """Mean over seeds with a Student t 95% interval, clipped to ``bounds`` (an F1 is in
    [0, 1]); None with fewer than 3 finite values or when they are all equal.

    Why t: it is exact for normal noise and measured at >= 93% coverage at 3, 5 and 10 seeds
    for heavy-tailed noise and for validation F1 near 0.99 (a few wrong images out of 243 per
    run, the error rate varying by seed); the percentile bootstrap it replaces returns [min,
    max] at 3 seeds and covered 70-75%. With 2 seeds the t interval is 12.7 standard errors
    wide, and identical values say nothing about spread: then the page shows the values.

    Known limits (bench/CALIBRATION.md, "limit" rows): no interval from a few seeds covers a
    mean that rare diverged runs drag down when none of the seeds diverged (22-40%), nor one
    whose spread reaches the ceiling (mean 0.99, sd 0.01: 88-90%); with the error rate varying
    by half between seeds near 0.99, 5 seeds cover 92.8%. Real digits runs near the top varied
    less than that: 40 seeds of a 128-unit MLP at F1 0.96-0.97 spread 0.35-0.7 times as much
    as binomial sampling of the 243 validation images alone, with little skew.
    """
    x = _finite(values)
    mean, low, high, shown = mean_intervals(x, bounds)
    if not bool(shown):
        return None
    return Estimate(float(mean), float(low), float(high), len(x), "Student t")


def paired_gain_interval(
    tuned: Sequence[float | None], defaults: Sequence[float | None]
) -> Estimate | None:
    """Mean of tuned - defaults over the seeds both ran (the r-th values share a seed), with a
    paired t 95% interval (``scipy.stats.ttest_rel``); None below 3 pairs or when every pair
    differs by the same amount (e.g. tuning kept the defaults: all gains 0). Not clipped: a
    gain can be negative."""
    if len(tuned) != len(defaults):
        raise ValueError(
            f"paired gain needs one default per tuned run: {len(tuned)} vs {len(defaults)}"
        )
    t = np.array([np.nan if v is None else float(v) for v in tuned])
    d = np.array([np.nan if v is None else float(v) for v in defaults])
    keep = np.isfinite(t) & np.isfinite(d)
    diff = t[keep] - d[keep]
    mean, low, high, shown = mean_intervals(diff, bounds=None)
    if not bool(shown):
        return None
    return Estimate(float(mean), float(low), float(high), int(keep.sum()), "paired t")


def accuracy_intervals(correct: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson 95% bounds for each of the counts ``correct`` out of ``n`` (one scipy
    call per distinct count, so thousands of test splits cost at most n + 1 calls)."""
    k = np.asarray(correct, dtype=np.int64)
    low, high = np.empty(k.shape), np.empty(k.shape)
    for count in np.unique(k):
        ci = sps.binomtest(int(count), int(n)).proportion_ci(LEVEL, method="exact")
        low[k == count], high[k == count] = ci.low, ci.high
    return low, high


def accuracy_interval(correct: int, n: int) -> Estimate | None:
    """Test accuracy with its Clopper-Pearson (exact binomial) 95% interval; None when n = 0.

    Why not Wilson (the interval it replaces): Wilson covers 92% at 99 images and accuracy
    0.99, and 84% just below 1; the exact interval covers >= 95% at every accuracy by
    construction, at the price of a slightly wider interval.
    """
    if n <= 0:
        return None
    low, high = accuracy_intervals(np.array(correct), n)
    return Estimate(correct / n, float(low), float(high), int(n), "Clopper-Pearson")


def macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 of confusion matrices ``[..., true, predicted]``: per class 2TP / (row + column),
    averaged over the classes that occur (true or predicted), as scikit-learn's
    f1_score(average="macro") over the labels present."""
    c = np.asarray(confusion, dtype=float)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    denom = c.sum(-1) + c.sum(-2)
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    present = (denom > 0).sum(-1)
    return np.divide(f1.sum(-1), present, out=np.zeros(present.shape), where=present > 0)


def _stratified_draws(flat: np.ndarray, resamples: int, rng: np.random.Generator):
    """For each class, the resampled predicted labels of its images: (class, rows of ``flat``
    with that class size, labels[rows, resamples, size]). Each class's images (known from its
    row of the confusion matrix by what they were predicted as) are drawn with replacement, as
    many as the class holds: the stratified bootstrap."""
    k = flat.shape[-1]
    for cls in range(k):
        sizes = flat[:, cls].sum(-1)
        for m in np.unique(sizes[sizes > 0]):
            rows = np.nonzero(sizes == m)[0]
            cum = np.cumsum(flat[rows, cls], -1)
            labels = (cum[:, None, :] <= np.arange(m)[None, :, None]).sum(-1)  # per image
            pick = rng.integers(0, m, (len(rows), resamples, m))
            yield cls, rows, labels[np.arange(len(rows))[:, None, None], pick]


def _counts(drawn: np.ndarray, k: int) -> np.ndarray:
    """[rows, resamples, k]: how many of the drawn labels are each class."""
    r, b, _ = drawn.shape
    cell = np.arange(r * b).reshape(r, b, 1) * k + drawn
    return np.bincount(cell.ravel(), minlength=r * b * k).reshape(r, b, k)


def stratified_replicates(
    confusion: np.ndarray, resamples: int = RESAMPLES, rng: np.random.Generator | int = SEED
) -> np.ndarray:
    """Bootstrap confusion matrices ``[..., resamples, true, predicted]`` that resample the
    test images WITHIN each class, so every class keeps its image count (the same draws as
    ``stratified_f1`` for the same generator state)."""
    rng = np.random.default_rng(rng)
    c = np.asarray(confusion, dtype=np.int64)
    k = c.shape[-1]
    flat = c.reshape(-1, k, k)
    out = np.zeros((len(flat), resamples, k, k), dtype=np.int64)
    for cls, rows, drawn in _stratified_draws(flat, resamples, rng):
        out[rows, :, cls, :] = _counts(drawn, k)
    return out.reshape(*c.shape[:-2], resamples, k, k)


def stratified_f1(
    confusion: np.ndarray, resamples: int = RESAMPLES, rng: np.random.Generator | int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(macro-F1, accuracy) of each stratified bootstrap replicate, ``[..., resamples]``: the
    macro-F1 of ``stratified_replicates`` without building the matrices (per class only the
    true positives and the predicted count are needed), so thousands of splits fit in memory."""
    rng = np.random.default_rng(rng)
    c = np.asarray(confusion, dtype=np.int64)
    k = c.shape[-1]
    flat = c.reshape(-1, k, k)
    tp = np.zeros((len(flat), resamples, k))
    predicted = np.zeros((len(flat), resamples, k))
    for cls, rows, drawn in _stratified_draws(flat, resamples, rng):
        counts = _counts(drawn, k)
        tp[rows, :, cls] = counts[..., cls]
        predicted[rows] += counts
    true = flat.sum(-1)[:, None, :].astype(float)  # fixed by the stratification
    denom = true + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    present = (denom > 0).sum(-1)
    macro = np.divide(f1.sum(-1), present, out=np.zeros(present.shape), where=present > 0)
    acc = tp.sum(-1) / np.maximum(true.sum(-1), 1)
    lead = (*c.shape[:-2], resamples)
    return macro.reshape(lead), acc.reshape(lead)


def held_out_f1_intervals(
    confusion: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macro-F1, low, high) for confusion matrices ``[..., true, predicted]``; what
    ``held_out_f1_interval`` computes, for many test splits at once (resampled a few hundred
    at a time, so memory stays bounded)."""
    c = np.asarray(confusion, dtype=np.int64)
    lead = c.shape[:-2]
    flat = c.reshape(-1, *c.shape[-2:])
    rng = np.random.default_rng(seed)
    step = max(1, 4_000_000 // (resamples * flat.shape[-1]))
    scale = np.empty(len(flat))
    for i in range(0, len(flat), step):
        f1_b, acc_b = stratified_f1(flat[i : i + step], resamples, rng)
        sd_f1, sd_acc = f1_b.std(-1), acc_b.std(-1)
        ratio = np.divide(sd_f1, sd_acc, out=np.ones(sd_f1.shape), where=sd_acc > 1e-12)
        scale[i : i + step] = np.maximum(1.0, ratio)
    n = flat.sum((-2, -1))
    correct = np.trace(flat, axis1=-2, axis2=-1)
    f1, acc = macro_f1(flat), correct / np.maximum(n, 1)
    a_low, a_high = np.empty(len(flat)), np.empty(len(flat))
    for size in np.unique(n):
        sel = n == size
        a_low[sel], a_high[sel] = accuracy_intervals(correct[sel], int(size))
    low = np.clip(f1 - scale * (acc - a_low), 0.0, 1.0)
    high = np.clip(f1 + scale * (a_high - acc), 0.0, 1.0)
    return f1.reshape(lead), low.reshape(lead), high.reshape(lead)


def held_out_f1_interval(
    confusion: Sequence[Sequence[int]] | np.ndarray, resamples: int = RESAMPLES, seed: int = SEED
) -> Estimate | None:
    """Test macro-F1 with a 95% interval, from the test confusion matrix (rows true, columns
    predicted; from labels: ``sklearn.metrics.confusion_matrix(y_true, y_pred)``). None below 2
    test images.

    The interval is the exact (Clopper-Pearson) interval of test accuracy, placed around the
    observed macro-F1 and widened by how much more macro-F1 moves than accuracy when the test
    images are resampled within their classes (the ratio of their stratified-bootstrap spreads,
    at least 1): [F1 - s (acc - acc_low), F1 + s (acc_high - acc)], clipped to [0, 1].

    Why not a bootstrap percentile interval: it cannot see errors that did not happen (a split
    with no error gives [1, 1]), so at macro-F1 0.99 the stratified percentile interval covered
    22-26% at 27 test images and 58-65% at 99; at F1 0.73-0.9 it covered 71-90% at 27 images,
    resampling 3 images per class understating their spread by a third. The count of errors
    has an exact interval that does see them, and on a stratified split macro-recall is
    accuracy, so macro-F1 moves with it; the bootstrap supplies the scale. Calibrated >= 96%
    at 27 and 99 images, F1 0.73-0.99, errors spread or 70% of them in one confused pair of
    classes. Not in the calibration: unequal classes (a stratified split of an unbalanced
    set), where one error in a small class moves macro-F1 more than the scale may see; a
    trial with classes of 6-15 images and a small class confused covered 92%.
    """
    c = np.asarray(confusion, dtype=np.int64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {c.shape}")
    n = int(c.sum())
    if n < 2:
        return None
    f1, low, high = held_out_f1_intervals(c, resamples, seed)
    return Estimate(
        float(f1), float(low), float(high), n, "exact accuracy interval x stratified bootstrap"
    )


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
