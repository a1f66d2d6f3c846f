"""What a report says about a study, as plain data: tables, curves and verdicts per study kind.

Everything here is computed from stored trials (values, ``history``, ``n_params``,
``epoch_seconds``, ``test_f1``...), so a report can be rebuilt at any time without training.
Plots and HTML live elsewhere; this module decides the numbers.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial

from fishopt import claims
from fishopt.search import summary
from fishopt.search.studies import best_completed
from fishopt.stats import Interval, epochs_to_fraction, mean_ci


def _mean(xs: Sequence[float | None]) -> float:
    vals = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return statistics.fmean(vals) if vals else math.nan


def history(t: FrozenTrial) -> list[dict]:
    return list(t.user_attrs.get("history") or [])


def best_of(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The best completed trial (ties: the earliest), as everywhere in fishopt."""
    return best_completed(trials)


# ------------------------------------------------------------------------------- curves


@dataclass(frozen=True)
class Curve:
    """One metric per epoch averaged over a group's repeats, with the spread across them."""

    epochs: list[int]
    mean: list[float]
    sd: list[float]


def mean_curve(trials: Sequence[FrozenTrial], metric: str) -> Curve:
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for t in trials:
        for rec in history(t):
            v = rec.get(metric)
            if v is not None and math.isfinite(v):
                by_epoch[int(rec["epoch"])].append(float(v))
    epochs = sorted(by_epoch)
    return Curve(
        epochs,
        [statistics.fmean(by_epoch[e]) for e in epochs],
        [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs],
    )


def change_per_epoch(curve: Curve) -> Curve:
    """How much the mean curve moved from one epoch to the next (the seed's 'delta' chart)."""
    return Curve(
        curve.epochs[1:],
        [b - a for a, b in zip(curve.mean, curve.mean[1:], strict=False)],
        [0.0] * max(0, len(curve.mean) - 1),
    )


# --------------------------------------------------------------------------- optimizers


@dataclass(frozen=True)
class OptimizerRow:
    optimizer: str
    trials: int  # finished (complete) repeats
    best: float
    f1: Interval  # validation macro-F1 over repeats
    test_f1: float  # test F1 of this optimizer's best trial
    gap: float  # train - valid accuracy at the last epoch, mean over repeats
    epochs_to_90: float  # epochs to reach 90% of the trial's own best valid F1, mean
    epoch_seconds: float
    values: tuple[float, ...] = ()  # each repeat's validation F1


@dataclass(frozen=True)
class Comparison:
    """The winner against one other arm, as ``claims.decide`` judged the whole table."""

    best: str
    other: str
    diff: float  # mean F1 of best minus other
    n_best: int
    n_other: int
    p: float  # family-wise adjusted p-value of the pair; nan when untestable
    significant: bool  # the procedure claims "best beats other"

    @property
    def testable(self) -> bool:
        return not math.isnan(self.p)

    @property
    def verdict(self) -> str:
        if not self.testable:
            return (
                f"{self.best} vs {self.other}: not testable (needs at least 2 finished repeats "
                f"each; have {self.n_best} and {self.n_other})"
            )
        if self.significant:
            return (
                f"{self.best} beats {self.other} by {self.diff:.3f} F1 "
                f"(family-wise adjusted p = {self.p:.2g})"
            )
        return (
            f"the data cannot separate {self.best} from {self.other} (difference "
            f"{self.diff:+.3f} F1, adjusted p = {self.p:.2g}, "
            f"{self.n_best} vs {self.n_other} repeats)"
        )


@dataclass(frozen=True)
class OptimizerAnalysis:
    rows: list[OptimizerRow]  # best mean first
    comparisons: list[Comparison]
    curves: dict[str, dict[str, Curve]]  # optimizer -> metric -> curve

    @property
    def best(self) -> str | None:
        return self.rows[0].optimizer if self.rows else None


def by_optimizer(trials: Sequence[FrozenTrial], spec: dict) -> dict[str, list[FrozenTrial]]:
    """Trials per optimizer, grouped as the CLI's summary groups them."""
    return summary.groups(trials, True, str(spec.get("fixed", {}).get("optimizer", "?")))


def _gap(t: FrozenTrial) -> float | None:
    h = history(t)
    if not h:
        return None
    return float(h[-1]["train_acc"]) - float(h[-1]["valid_acc"])


def _to_90(t: FrozenTrial) -> int | None:
    return epochs_to_fraction([r.get("valid_f1") for r in history(t)], 0.9)


def compare_to_best(groups: dict[str, Sequence[float]]) -> list[Comparison]:
    """The report's one decision procedure (``claims.decide``, whose family-wise rate of false
    "beats" claims was measured at <= 6% for 2-11 arms and 3-10 seeds): the winner against
    every other arm. Every page, the summary and the CLI decide through this function."""
    if not groups:
        return []
    d = claims.decide(groups)
    if d.best is None:
        return []
    a = [v for v in groups[d.best] if v is not None]
    out = []
    for other in [*d.ranking[1:], *d.untested]:
        if other == d.best:
            continue
        b = [v for v in groups[other] if v is not None]
        p = d.p.get((d.best, other), d.p.get((other, d.best), math.nan))
        out.append(
            Comparison(
                d.best, other, _mean(a) - _mean(b), len(a), len(b), p, d.beats(d.best, other)
            )
        )
    return out


def analyse_optimizers(complete: Sequence[FrozenTrial], spec: dict) -> OptimizerAnalysis:
    groups = by_optimizer(complete, spec)
    rows = []
    for name, ts in groups.items():
        best = best_of(ts)
        rows.append(
            OptimizerRow(
                optimizer=name,
                trials=len(ts),
                best=max(t.value for t in ts),
                f1=mean_ci([t.value for t in ts]),
                test_f1=float(best.user_attrs.get("test_f1", math.nan)) if best else math.nan,
                gap=_mean([_gap(t) for t in ts]),
                epochs_to_90=_mean([_to_90(t) for t in ts]),
                epoch_seconds=_mean([t.user_attrs.get("epoch_seconds") for t in ts]),
                values=tuple(t.value for t in ts),
            )
        )
    comparisons = compare_to_best({r.optimizer: list(r.values) for r in rows})
    # The winner the procedure names first (it ranks by mean rank), then by mean F1.
    first = comparisons[0].best if comparisons else None
    rows.sort(key=lambda r: (r.optimizer != first, -r.f1.mean, r.optimizer))
    curves = {
        name: {m: mean_curve(ts, m) for m in ("train_acc", "valid_acc")}
        for name, ts in groups.items()
    }
    return OptimizerAnalysis(rows, comparisons, curves)


# ----------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class ConfigRow:
    """One architecture (all its repeats): the unit of the widths and depth studies."""

    label: str
    hidden: tuple[int, ...]
    pattern: str
    trials: int
    n_params: int
    f1: Interval
    test_f1: float
    epoch_seconds: float
    values: tuple[float, ...] = ()  # each repeat's validation F1
    best: FrozenTrial | None = None  # the repeat with the best validation F1

    @property
    def n_layers(self) -> int:
        return len(self.hidden)

    @property
    def first_width(self) -> int:
        return self.hidden[0] if self.hidden else 0


def pattern_of(hidden: Sequence[int]) -> str:
    if len(hidden) <= 1:
        return "single" if hidden else "linear"
    if all(h == hidden[0] for h in hidden):
        return "constant"
    return "decreasing" if all(a > b for a, b in itertools.pairwise(hidden)) else "free"


def config_rows(complete: Sequence[FrozenTrial]) -> list[ConfigRow]:
    """Trials grouped per configuration (params without the repeat index), as the CLI's
    summary groups them."""
    rows = []
    for ts in summary.groups(complete, by_optimizer=False).values():
        hidden = tuple(int(h) for h in ts[0].user_attrs.get("hidden", []))
        best = best_of(ts)
        rows.append(
            ConfigRow(
                label="-".join(map(str, hidden)) or "none (linear)",
                hidden=hidden,
                pattern=pattern_of(hidden),
                trials=len(ts),
                n_params=int(ts[0].user_attrs.get("n_params", 0)),
                f1=mean_ci([t.value for t in ts]),
                test_f1=float(best.user_attrs.get("test_f1", math.nan)) if best else math.nan,
                epoch_seconds=_mean([t.user_attrs.get("epoch_seconds") for t in ts]),
                values=tuple(float(t.value) for t in ts),
                best=best,
            )
        )
    rows.sort(key=lambda r: (r.n_layers, r.pattern, r.first_width, r.label))
    return rows


def series(
    rows: Sequence[ConfigRow], key: Callable[[ConfigRow], str]
) -> dict[str, list[ConfigRow]]:
    out: dict[str, list[ConfigRow]] = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return dict(out)
