"""Who wins among k arms, and which "X beats Y" claims the data supports (family-wise 5%)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fishopt.claims.base import ALPHA, METHOD, PERMUTATIONS, SEED, _finite, scipy_stats

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
    res = scipy_stats().permutation_test(
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
    ranks = scipy_stats().rankdata(flat, axis=1)
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
    ranks = scipy_stats().rankdata(np.concatenate([values[a] for a in arms]))
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
