"""The tuned optimizer protocol as plain data: defaults beside tuned, and the opening paragraphs.

Per optimizer: its defaults score (the study's own ``defaults`` runs, paired seed by seed with
the confirm runs; for a study made before that phase existed, an ``optimizers`` study's),
its tuned score (the confirm runs of its best search setting), what tuning bought (per seed,
``TunedRow.gains``, and its interval, ``TunedRow.gain_ci`` from ``gain_interval``), the
selection's optimism (best search score against the confirm mean) and how the ranking moved;
who wins and what the data can tell (``claims.decide``, through ``analyses.compare_to_best``),
the budget curves of the search phase, and the one-paragraph answers each optimizer page opens
with.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from fishopt import claims
from fishopt.report.analyses import (
    Comparison,
    OptimizerAnalysis,
    by_optimizer,
    compare_to_best,
)
from fishopt.search.tuned import best_search, edge_warnings, holds_out, tuning_stands
from fishopt.stats import Interval, budget_curve, expected_max, mean_ci

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


def gain_interval(diffs: Sequence[float]) -> Interval:
    """The mean paired gain (tuned minus defaults, seed by seed) with its calibrated 95%
    interval (``claims.paired_gain_interval``: paired t, shown from 3 pairs on and only when the
    gains differ; a constant gain, e.g. the search's best was the defaults, has none)."""
    xs = [float(d) for d in diffs if math.isfinite(d)]
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = statistics.fmean(xs) if min(xs) != max(xs) else xs[0]
    sd = statistics.stdev(xs) if n > 1 else math.nan
    est = claims.paired_gain_interval(xs, [0.0] * n)
    if est is None:
        return Interval(n, mean, sd, math.nan, math.nan)
    return Interval(n, mean, sd, est.low, est.high)


def defaults_first_curve(first: float, draws: Sequence[float]) -> list[tuple[int, float, float]]:
    """The budget curve of "torch's defaults first, then independent draws": (k, expected best
    of the first k trials, sd) for k = 1 .. 1 + len(draws). The best of the defaults and k - 1
    draws is the best of the k - 1 draws each floored at the defaults' score, so the exact
    without-replacement order statistic of ``stats.expected_max`` applies to the floored draws.
    """
    floored = [max(first, float(v)) for v in draws if math.isfinite(v)]
    return [(1, first, 0.0)] + [
        (k + 1, *expected_max(floored, k)) for k in range(1, len(floored) + 1)
    ]


@dataclass(frozen=True)
class TunedRow:
    optimizer: str
    search_done: int  # search trials complete or pruned
    search_values: tuple[float, ...]  # what each of them reached, in trial order
    best_trial: int | None  # the search trial the confirm runs re-run
    best_params: dict
    best_at_defaults: bool  # the search's best was torch's defaults (tuning bought nothing)
    confirm: dict[int, float]  # repeat -> F1 of the complete confirm runs
    tuned: Interval  # over the confirm runs
    defaults: Interval | None  # the defaults runs (paired), else a defaults study's repeats
    defaults_runs: dict[int, float]  # repeat -> F1 of the study's own complete defaults runs
    gains: dict[int, float]  # repeat -> confirm minus defaults, on the same seed
    gain_ci: Interval | None  # ``gain_interval`` over ``gains``; None without paired runs
    rank_default: int | None
    rank_tuned: int | None
    edges: tuple[str, ...]  # best params at the edge of their range
    budget: tuple[tuple[int, float, float], ...] = ()  # (k, expected best of k, sd)
    # The confirm runs did not beat the defaults runs on the selection half
    # (``search.tuned.tuning_stands``): the defaults stand, and ``confirm``/``tuned`` are theirs.
    defaults_kept: bool = False
    candidate: Interval | None = None  # with defaults_kept: the search's best's confirm runs

    @property
    def confirm_mean(self) -> float:
        """The mean of the runs that re-ran the search's best (not the defaults that stood)."""
        return (self.candidate or self.tuned).mean

    @property
    def paired(self) -> bool:
        return bool(self.gains)

    @property
    def gain(self) -> float:
        """Mean paired gain; for a study without defaults runs, the difference of means."""
        if self.gain_ci is not None and self.gain_ci.n:
            return self.gain_ci.mean
        return self.tuned.mean - self.defaults.mean if self.defaults else math.nan

    @property
    def best_search_value(self) -> float:
        return max(self.search_values) if self.search_values else math.nan

    @property
    def optimism(self) -> float:
        """Best search score minus the confirm mean: what picking the best of the search
        promised beyond what re-running it delivered (the selection's optimism)."""
        return self.best_search_value - self.confirm_mean if self.tuned.n else math.nan


@dataclass(frozen=True)
class TunedAnalysis:
    rows: list[TunedRow]  # best tuned mean first; optimizers without confirm runs last
    comparisons: list[Comparison]  # tuned best against each other one (claims.decide)
    budget: dict[str, list[tuple[int, float, float]]]  # optimizer -> (k, E[best of k], sd)
    missing: list[str]  # what the study has not finished, one sentence each
    trials_per_optimizer: int
    confirm_seeds: int
    sampler: str = "tpe"  # the search's sampler: random draws make the budget curve exact
    holds_out: bool = False  # confirm/defaults scored on a reporting half the search never saw
    precision: str = ""  # what the study's trials trained in

    @property
    def tuned_best(self) -> str | None:
        return self.rows[0].optimizer if self.rows and self.rows[0].tuned.n else None

    @property
    def default_best(self) -> str | None:
        ranked = [r for r in self.rows if r.rank_default == 1]
        return ranked[0].optimizer if ranked else None

    @property
    def paired(self) -> bool:
        return any(r.paired for r in self.rows)

    @property
    def budget_exact(self) -> bool:
        """Whether the budget curve describes the search that ran: independent draws."""
        return self.sampler == "random"


_UNFINISHED = {
    TrialState.RUNNING: "running",
    TrialState.FAIL: "failed",
    TrialState.WAITING: "queued",
}


def _ranks(means: dict[str, float]) -> dict[str, int]:
    """1 = the best mean; ties broken by name so the table is stable."""
    order = sorted((n for n, m in means.items() if math.isfinite(m)), key=lambda n: (-means[n], n))
    return {n: i for i, n in enumerate(order, start=1)}


def _runs(ts: Sequence[FrozenTrial], phase: str) -> dict[int, float]:
    """repeat -> value of the complete runs of one phase (the first, should one repeat twice)."""
    out: dict[int, float] = {}
    for t in sorted(ts, key=lambda t: t.number):
        if _phase(t) == phase and t.state == TrialState.COMPLETE and t.value is not None:
            out.setdefault(int(t.user_attrs.get("repeat", 0)), float(t.value))
    return dict(sorted(out.items()))


def _budget(search: Sequence[FrozenTrial], exact: bool) -> list[tuple[int, float, float]]:
    values = [(t, v) for t in search if (v := _reached(t)) is not None]
    first = [v for t, v in values if t.user_attrs.get("at_defaults")]
    if exact and first:
        return defaults_first_curve(
            first[0], [v for t, v in values if not t.user_attrs.get("at_defaults")]
        )
    return budget_curve([v for _, v in values])


def analyse_tuned(
    trials: Sequence[FrozenTrial],
    spec: dict,
    defaults: Sequence[FrozenTrial] | None = None,
    precision: str = "",
) -> TunedAnalysis:
    """Tuned optimizers (search + paired confirm and defaults runs) beside their defaults.

    ``trials``: every trial of the tuned study, in any state (what is unfinished is named in
    ``missing``, never an error); ``defaults``: the complete trials of an ``optimizers`` study,
    used only for optimizers the tuned study has no defaults runs of (studies made before the
    defaults phase).
    """
    tuned_spec = spec.get("tuned", {})
    k_plan = int(tuned_spec.get("trials_per_optimizer", 0))
    r_plan = int(tuned_spec.get("confirm_seeds", 0))
    spaces = tuned_spec.get("spaces", {})
    phased = holds_out(tuned_spec)  # protocol 2: defaults runs, reporting half
    sampler = str(spec.get("sampler", {}).get("name", "tpe"))
    names = list(tuned_spec.get("optimizers", []))
    by_opt = by_optimizer(trials, spec)
    names += [n for n in by_opt if n not in names and n != "?"]  # "?": queued, not yet sampled
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
        best = best_search(search, name)
        confirm = _runs(ts, "confirm")
        own_defaults = _runs(ts, "defaults")
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
        if phased and len(own_defaults) < r_plan:
            missing.append(f"{name}: {len(own_defaults)} of {r_plan} defaults runs finished")
        if own_defaults:
            defaults_iv: Interval | None = mean_ci(list(own_defaults.values()))
        elif defaults is not None:
            defaults_iv = mean_ci(default_groups[name]) if name in default_groups else None
            if name not in default_groups:
                missing.append(f"{name}: not in the defaults study")
        else:
            defaults_iv = None
        at_defaults = bool(best and best.user_attrs.get("at_defaults"))
        kept = phased and bool(own_defaults) and not at_defaults and not tuning_stands(ts, name)
        candidate = mean_ci(list(confirm.values())) if kept else None
        if kept:  # the defaults stand: what tuning delivers is their runs
            confirm = dict(own_defaults)
        gains = {r: confirm[r] - own_defaults[r] for r in confirm if r in own_defaults}
        partial.append(
            (name, done, best, confirm, own_defaults, defaults_iv, gains, (kept, candidate))
        )

    rank_d = _ranks({p[0]: p[5].mean for p in partial if p[5] is not None and p[5].n})
    rank_t = _ranks({p[0]: statistics.fmean(p[3].values()) for p in partial if p[3]})
    rows = []
    for name, done, best, confirm, own_defaults, defaults_iv, gains, (kept, cand) in partial:
        rows.append(
            TunedRow(
                optimizer=name,
                search_done=len(done),
                search_values=tuple(v for t in done if (v := _reached(t)) is not None),
                best_trial=best.number if best else None,
                best_params=(
                    {k: v for k, v in best.params.items() if k != "optimizer"} if best else {}
                ),
                best_at_defaults=bool(best and best.user_attrs.get("at_defaults")),
                confirm=confirm,
                tuned=mean_ci(list(confirm.values())),
                defaults=defaults_iv,
                defaults_runs=own_defaults,
                gains=gains,
                gain_ci=gain_interval(list(gains.values())) if gains else None,
                rank_default=rank_d.get(name),
                rank_tuned=rank_t.get(name),
                edges=tuple(edge_warnings(best.params, spaces.get(name, {}))) if best else (),
                budget=tuple(_budget(done, phased and sampler == "random")),
                defaults_kept=kept,
                candidate=cand,
            )
        )
    rows.sort(key=lambda r: (r.rank_tuned is None, r.rank_tuned or 0, r.optimizer))
    confirmed = [r for r in rows if r.tuned.n]
    comparisons = compare_to_best({r.optimizer: list(r.confirm.values()) for r in confirmed})
    if comparisons:  # the procedure's winner first
        rows.sort(key=lambda r: r.optimizer != comparisons[0].best)
    budget = {r.optimizer: list(r.budget) for r in rows if r.budget}
    return TunedAnalysis(
        rows,
        comparisons,
        budget,
        missing,
        k_plan,
        r_plan,
        sampler=sampler,
        holds_out=phased,
        precision=precision,
    )


def _ci_text(iv: Interval) -> str:
    if iv.n < 2 or math.isnan(iv.low):
        return f"{iv.mean:.3f}, {iv.n} run{'s' if iv.n != 1 else ''}"
    return f"{iv.mean:.3f}, 95% CI {iv.low:.3f}-{iv.high:.3f}"


def gain_detail(r: TunedRow) -> str:
    """How a gain was measured: ``95% interval -0.004 to +0.028, paired over 10 seeds``."""
    iv = r.gain_ci
    if iv is None or not iv.n:
        return "a difference of means of separate runs"
    if iv.n < 2 or math.isnan(iv.low):
        return f"{iv.n} paired seed{'s' if iv.n != 1 else ''}"
    return f"95% interval {iv.low:+.3f} to {iv.high:+.3f}, paired over {iv.n} seeds"


def _can_tell(c: Comparison, what: str) -> str:
    if not c.testable:
        return f"Too few runs to test {c.best} against {c.other} {what}."
    if c.significant:
        return (
            f"The data can tell {c.best} from {c.other} {what} "
            f"(all-pairs rank test, family-wise adjusted p = {c.p:.2g})."
        )
    return (
        f"The data cannot tell {c.best} from {c.other} {what} "
        f"(all-pairs rank test, adjusted p = {c.p:.2g}): more seeds, not a verdict of equality."
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
    if t.best_at_defaults and t.paired:
        parts.append(
            f"Tuning bought {best} nothing: no search trial beat torch's defaults, so its "
            "confirm runs are its defaults runs."
        )
    elif t.defaults_kept:
        parts.append(
            f"Tuning bought {best} nothing the data can show: its best search setting did not "
            "beat torch's defaults on the selection half, seed by seed, so its defaults stand."
        )
    elif math.isfinite(t.gain):
        notes = [] if a.default_best in (None, best) else [f"it ranked {t.rank_default} there"]
        notes.append(gain_detail(t))
        parts.append(
            f"Tuning bought {best} {t.gain:+.3f} F1 over its defaults ({'; '.join(notes)})."
        )
    if a.comparisons:
        parts.append(_can_tell(a.comparisons[0], "when tuned"))
    if a.missing:
        parts.append("The study is not finished: see what is missing below.")
    return " ".join(parts)
