"""Intervals labelled 95% only where their coverage was measured at 93% or more."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fishopt.claims.base import LEVEL, MIN_SEEDS, RESAMPLES, SEED, _finite, scipy_stats

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
        ci = scipy_stats().ttest_1samp(x, 0.0, axis=-1).confidence_interval(LEVEL)
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
        ci = scipy_stats().binomtest(int(count), int(n)).proportion_ci(LEVEL, method="exact")
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
