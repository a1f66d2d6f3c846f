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

from optuna.trial import FrozenTrial, TrialState

from fishopt.report.stats import (
    ALPHA,
    Friedman,
    Interval,
    Probability,
    bootstrap_ci,
    budget_curve,
    edge_warnings,
    epochs_to_fraction,
    friedman,
    holm,
    prob_better,
    welch_p,
)
from fishopt.search import summary

METRICS = ("train_acc", "valid_acc", "train_f1", "valid_f1", "train_loss", "valid_loss")


def _mean(xs: Sequence[float | None]) -> float:
    vals = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return statistics.fmean(vals) if vals else math.nan


def history(t: FrozenTrial) -> list[dict]:
    return list(t.user_attrs.get("history") or [])


def best_of(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    done = [t for t in trials if t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


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
    best: str
    other: str
    diff: float  # mean F1 of best minus other
    n_best: int
    n_other: int
    p: float  # Welch t-test, two-sided
    p_holm: float  # Holm-corrected over all comparisons against the best

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p_holm) and self.p_holm < ALPHA

    @property
    def verdict(self) -> str:
        if math.isnan(self.p_holm):
            return (
                f"{self.best} vs {self.other}: not testable (needs at least 2 finished repeats "
                f"each; have {self.n_best} and {self.n_other})"
            )
        if self.significant:
            return (
                f"{self.best} beats {self.other} by {self.diff:.3f} F1 "
                f"(Holm-corrected p = {self.p_holm:.2g})"
            )
        return (
            f"the data cannot separate {self.best} from {self.other} (difference "
            f"{self.diff:+.3f} F1, Holm-corrected p = {self.p_holm:.2g}, "
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
    """The report's significance call: the first group (the best mean) against each other one,
    Welch's t-test, Holm-corrected over the family. tests/test_aa.py checks its false-positive
    rate on identical arms, so every page must decide through this one function."""
    if not groups:
        return []
    top, *others = groups
    a = list(groups[top])
    raw = [(o, list(groups[o]), welch_p(a, list(groups[o]))) for o in others]
    adjusted = holm([p for _, _, p in raw])
    return [
        Comparison(top, o, _mean(a) - _mean(b), len(a), len(b), p, ph)
        for (o, b, p), ph in zip(raw, adjusted, strict=True)
    ]


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
                f1=bootstrap_ci([t.value for t in ts]),
                test_f1=float(best.user_attrs.get("test_f1", math.nan)) if best else math.nan,
                gap=_mean([_gap(t) for t in ts]),
                epochs_to_90=_mean([_to_90(t) for t in ts]),
                epoch_seconds=_mean([t.user_attrs.get("epoch_seconds") for t in ts]),
                values=tuple(t.value for t in ts),
            )
        )
    rows.sort(key=lambda r: (-r.f1.mean, r.optimizer))
    comparisons = compare_to_best({r.optimizer: list(r.values) for r in rows})
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
                f1=bootstrap_ci([t.value for t in ts]),
                test_f1=float(best.user_attrs.get("test_f1", math.nan)) if best else math.nan,
                epoch_seconds=_mean([t.user_attrs.get("epoch_seconds") for t in ts]),
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


# ------------------------------------------------------------ optimizers, tuned vs defaults

TUNED = "optimizers-tuned"


def _phase(t: FrozenTrial) -> str:
    return str(t.user_attrs.get("phase", "search"))


def _reached(t: FrozenTrial) -> float | None:
    """What a finished search trial reached: its value, or for a pruned trial the best
    validation F1 it reported before it was stopped (pruned trials spent budget too)."""
    if t.state == TrialState.COMPLETE and t.value is not None:
        return float(t.value)
    if t.state == TrialState.PRUNED:
        vals = [v for v in t.intermediate_values.values() if math.isfinite(v)]
        return max(vals) if vals else None
    return None


@dataclass(frozen=True)
class TunedRow:
    optimizer: str
    search_done: int  # search trials complete or pruned
    search_values: tuple[float, ...]  # what each of them reached, in trial order
    best_trial: int | None  # the search trial the confirm runs re-run
    best_params: dict
    confirm: dict[int, float]  # repeat -> validation F1 of the complete confirm runs
    tuned: Interval  # over the confirm runs
    defaults: Interval | None  # over the defaults study's repeats, if that study is given
    rank_default: int | None
    rank_tuned: int | None
    edges: tuple[str, ...]  # best params at the edge of their range

    @property
    def gain(self) -> float:
        return self.tuned.mean - self.defaults.mean if self.defaults else math.nan


@dataclass(frozen=True)
class TunedAnalysis:
    rows: list[TunedRow]  # best tuned mean first; optimizers without confirm runs last
    comparisons: list[Comparison]  # tuned best against each other one (Welch + Holm)
    probabilities: list[tuple[str, Probability]]  # other -> P(tuned best > other), paired
    friedman: Friedman | None  # over the repeats every optimizer has a confirm run for
    budget: dict[str, list[tuple[int, float, float]]]  # optimizer -> (k, E[best of k], sd)
    missing: list[str]  # what the study has not finished, one sentence each
    trials_per_optimizer: int
    confirm_seeds: int

    @property
    def tuned_best(self) -> str | None:
        return self.rows[0].optimizer if self.rows and self.rows[0].tuned.n else None

    @property
    def default_best(self) -> str | None:
        ranked = [r for r in self.rows if r.rank_default == 1]
        return ranked[0].optimizer if ranked else None


_UNFINISHED = {
    TrialState.RUNNING: "running",
    TrialState.FAIL: "failed",
    TrialState.WAITING: "queued",
}


def _ranks(means: dict[str, float]) -> dict[str, int]:
    """1 = the best mean; ties broken by name so the table is stable."""
    order = sorted((n for n, m in means.items() if math.isfinite(m)), key=lambda n: (-means[n], n))
    return {n: i for i, n in enumerate(order, start=1)}


def analyse_tuned(
    trials: Sequence[FrozenTrial], spec: dict, defaults: Sequence[FrozenTrial] | None = None
) -> TunedAnalysis:
    """Tuned optimizers (search + paired confirm runs) beside the same optimizers at defaults.

    ``trials``: every trial of the tuned study, in any state (what is unfinished is named in
    ``missing``, never an error); ``defaults``: the complete trials of an ``optimizers`` study.
    """
    tuned_spec = spec.get("tuned", {})
    k_plan = int(tuned_spec.get("trials_per_optimizer", 0))
    r_plan = int(tuned_spec.get("confirm_seeds", 0))
    spaces = tuned_spec.get("spaces", {})
    names = list(tuned_spec.get("optimizers", []))
    by_opt = by_optimizer(trials, spec)
    names += [n for n in by_opt if n not in names]
    default_groups = {
        name: [float(t.value) for t in ts]  # type: ignore[arg-type]
        for name, ts in by_optimizer(list(defaults or ()), {}).items()
    }

    missing: list[str] = []
    partial = []
    for name in names:
        ts = by_opt.get(name, [])
        search = [t for t in ts if _phase(t) == "search"]
        done = [t for t in search if _reached(t) is not None]
        best = best_of([t for t in search if t.state == TrialState.COMPLETE])
        confirm = {
            int(t.user_attrs.get("repeat", 0)): float(t.value)
            for t in ts
            if _phase(t) == "confirm" and t.state == TrialState.COMPLETE and t.value is not None
        }
        if len(done) < k_plan:
            states = ", ".join(
                f"{c} {label}"
                for state, label in _UNFINISHED.items()
                if (c := sum(t.state == state for t in search))
            )
            missing.append(
                f"{name}: {len(done)} of {k_plan} search trials finished"
                + (f" ({states})" if states else "")
            )
        if len(confirm) < r_plan:
            missing.append(f"{name}: {len(confirm)} of {r_plan} confirm runs finished")
        if defaults is not None and name not in default_groups:
            missing.append(f"{name}: not in the defaults study")
        partial.append((name, done, best, confirm, bootstrap_ci(list(confirm.values()))))

    default_iv = {n: bootstrap_ci(v) for n, v in default_groups.items()}
    rank_d = _ranks({n: iv.mean for n, iv in default_iv.items() if n in names})
    rank_t = _ranks({n: iv.mean for n, _, _, _, iv in partial if iv.n})
    rows = [
        TunedRow(
            optimizer=name,
            search_done=len(done),
            search_values=tuple(v for t in done if (v := _reached(t)) is not None),
            best_trial=best.number if best else None,
            best_params={k: v for k, v in best.params.items() if k != "optimizer"} if best else {},
            confirm=dict(sorted(confirm.items())),
            tuned=iv,
            defaults=default_iv.get(name) if defaults is not None else None,
            rank_default=rank_d.get(name),
            rank_tuned=rank_t.get(name),
            edges=tuple(edge_warnings(best.params, spaces.get(name, {}))) if best else (),
        )
        for name, done, best, confirm, iv in partial
    ]
    rows.sort(key=lambda r: (r.rank_tuned is None, r.rank_tuned or 0, r.optimizer))
    confirmed = [r for r in rows if r.tuned.n]
    comparisons = compare_to_best({r.optimizer: list(r.confirm.values()) for r in confirmed})
    probabilities = []
    if confirmed:
        top = confirmed[0]
        for r in confirmed[1:]:
            common = sorted(set(top.confirm) & set(r.confirm))
            a, b = [top.confirm[i] for i in common], [r.confirm[i] for i in common]
            probabilities.append((r.optimizer, prob_better(a, b, paired=True)))
    blocks = sorted(set.intersection(*(set(r.confirm) for r in confirmed))) if confirmed else []
    fried = friedman({r.optimizer: [r.confirm[i] for i in blocks] for r in confirmed})
    if fried is not None and len(blocks) < max(len(r.confirm) for r in confirmed):
        missing.append(
            f"Friedman test: {len(blocks)} seeds have a confirm run of every optimizer; "
            "the others are left out of it"
        )
    budget = {r.optimizer: budget_curve(r.search_values) for r in rows if r.search_values}
    return TunedAnalysis(rows, comparisons, probabilities, fried, budget, missing, k_plan, r_plan)


def _ci_text(iv: Interval) -> str:
    if iv.n < 2 or math.isnan(iv.low):
        return f"{iv.mean:.3f}, {iv.n} run{'s' if iv.n != 1 else ''}"
    return f"{iv.mean:.3f}, 95% CI {iv.low:.3f}-{iv.high:.3f}"


def _can_tell(c: Comparison, what: str) -> str:
    if math.isnan(c.p_holm):
        return f"Too few runs to test {c.best} against {c.other} {what}."
    if c.significant:
        return (
            f"The data can tell {c.best} from {c.other} {what} "
            f"(Welch, Holm-corrected p = {c.p_holm:.2g})."
        )
    return (
        f"The data cannot tell {c.best} from {c.other} {what} "
        f"(Welch, Holm-corrected p = {c.p_holm:.2g}): more seeds, not a verdict of equality."
    )


def defaults_opening(a: OptimizerAnalysis) -> str:
    """The paragraph an optimizers study page opens with (issue 10, item 7)."""
    if not a.rows:
        return "No finished trials yet."
    top = a.rows[0]
    text = f"At defaults, {top.optimizer} wins (mean validation F1 {_ci_text(top.f1)})"
    if not a.comparisons:
        return text + "; it is the only optimizer with finished trials."
    c = a.comparisons[0]
    return text + f", {c.diff:.3f} ahead of {c.other}. " + _can_tell(c, "at defaults")


def tuned_opening(a: TunedAnalysis) -> str:
    """The paragraph a tuned optimizers page opens with: defaults winner, tuned winner, by how
    much, and whether the data can tell (issue 10, item 7)."""
    parts = []
    by = {r.optimizer: r for r in a.rows}
    if a.default_best:
        d = by[a.default_best]
        assert d.defaults is not None
        parts.append(
            f"At defaults, {d.optimizer} wins (mean validation F1 {_ci_text(d.defaults)})."
        )
    best = a.tuned_best
    if best is None:
        return " ".join([*parts, "No optimizer has a finished confirm run yet."])
    t = by[best]
    sentence = (
        f"Tuned ({a.trials_per_optimizer} search trials each, best setting re-run with "
        f"{a.confirm_seeds} seeds), {best} wins ({_ci_text(t.tuned)})"
    )
    if a.comparisons:
        c = a.comparisons[0]
        sentence += f", {c.diff:.3f} ahead of {c.other}"
    parts.append(sentence + ".")
    if math.isfinite(t.gain):
        changed = "" if a.default_best in (None, best) else f" (it ranked {t.rank_default} there)"
        parts.append(f"Tuning bought {best} {t.gain:+.3f} F1 over its defaults{changed}.")
    if a.comparisons:
        parts.append(_can_tell(a.comparisons[0], "when tuned"))
    if a.missing:
        parts.append("The study is not finished: see what is missing below.")
    return " ".join(parts)
