"""The tuned optimizer protocol as plain data: defaults beside tuned, and the opening paragraphs.

Per optimizer: its defaults score (from an ``optimizers`` study), its tuned score (the confirm
runs of its best search setting), what tuning bought and how the ranking moved; P(best > other)
over paired seeds, a Friedman test over the seeds, the budget curves of the search phase, and
the one-paragraph answers each optimizer page opens with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from fishopt.report.analyses import (
    Comparison,
    OptimizerAnalysis,
    by_optimizer,
    compare_to_best,
)
from fishopt.search.tuned import best_search, edge_warnings
from fishopt.stats import (
    Friedman,
    Interval,
    Probability,
    bootstrap_ci,
    budget_curve,
    friedman,
    prob_better,
)

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
        best = best_search(search, name)
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
