"""Every study's answer in one sentence a reader can quote.

Each sentence says what the study found and how sure the data is, through the procedures of
``fishopt.claims`` only: who wins comes from ``analyses.compare_to_best`` (one decision
procedure, family-wise 5%), "as good as the best" from two one-sided tests with a stated margin
walked down from the best, and every interval is one whose coverage was measured. Study pages
open with it, the comparison page lists them, and ``fishopt study`` prints it under its table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from fishopt import claims
from fishopt.report.analyses import (
    Comparison,
    ConfigRow,
    analyse_optimizers,
    best_of,
    config_rows,
    series,
)
from fishopt.report.load import StudyData
from fishopt.report.tuned import TUNED, analyse_tuned
from fishopt.stats import Interval, held_out_figures

DECIDED_BY = "all-pairs rank test, family-wise error 5%"
POINT = claims.MARGIN  # "as good as the best" means within one F1 point of it


def _mean_text(iv: Interval) -> str:
    """``0.912 (95% CI 0.897-0.927, 5 seeds)``, or the values' mean and count without one."""
    seeds = f"{iv.n} seed{'s' if iv.n != 1 else ''}"
    if math.isnan(iv.low):
        return f"{iv.mean:.3f} ({seeds}, too few for an interval)"
    return f"{iv.mean:.3f} (95% CI {iv.low:.3f}-{iv.high:.3f}, {seeds})"


def _names(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _verdict(comparisons: Sequence[Comparison], what: str) -> str:
    """Which arms the winner is shown better than, and which the data cannot separate."""
    beaten = [c.other for c in comparisons if c.significant]
    tied = [c.other for c in comparisons if c.testable and not c.significant]
    untested = [c.other for c in comparisons if not c.testable]
    if not comparisons:
        return f"it is the only {what} with finished runs"
    parts = []
    if beaten and not tied and not untested:
        parts.append(f"the data shows it better than every other {what}")
    elif beaten:
        parts.append(f"the data shows it better than {_names(beaten)}")
    if tied:
        parts.append(f"cannot separate it from {_names(tied)}")
    if untested:
        parts.append(f"has too few runs to test {_names(untested)}")
    text = " but ".join(parts[:2]) + ("; " + parts[2] if len(parts) > 2 else "")
    return (text if text.startswith("the data") else "the data " + text) + f" ({DECIDED_BY})"


def optimizers(s: StudyData) -> str:
    a = analyse_optimizers(s.complete, s.spec)
    if not a.rows:
        return "No finished trials yet."
    top = a.rows[0]
    return (
        f"At torch's defaults {top.optimizer} scores the highest validation macro-F1, "
        f"{_mean_text(top.f1)}; {_verdict(a.comparisons, 'optimizer')}."
    )


def tuned(s: StudyData, defaults: StudyData | None = None) -> str:
    a = analyse_tuned(s.trials, s.spec, defaults.complete if defaults else None)
    best = a.tuned_best
    if best is None:
        return "No optimizer has finished its confirm runs yet, so nothing can be said."
    row = next(r for r in a.rows if r.optimizer == best)
    text = (
        f"Tuned with {a.trials_per_optimizer} search trials each, {best} wins with validation "
        f"macro-F1 {_mean_text(row.tuned)}"
    )
    if a.default_best and a.default_best != best:
        text += f", where {a.default_best} led at defaults"
    gain = row.gain_ci
    if row.best_at_defaults:
        text += "; its best search setting was torch's defaults, so tuning bought it nothing"
    elif row.defaults_kept:
        text += (
            "; its best search setting did not beat torch's defaults on the selection half, "
            "so its defaults stand and tuning bought it nothing the data can show"
        )
    elif gain is not None and gain.n and not math.isnan(gain.low):
        text += (
            f"; tuning bought it {gain.mean:+.3f} F1 (95% CI {gain.low:+.3f} to "
            f"{gain.high:+.3f}, paired over {gain.n} seeds)"
        )
    elif math.isfinite(row.gain):
        text += f"; tuning bought it {row.gain:+.3f} F1 (too few paired seeds for an interval)"
    text += f"; {_verdict(a.comparisons, 'optimizer')}"
    return text + (". The study is not finished." if a.missing else ".")


def _within(group: Sequence[ConfigRow], what: Callable[[ConfigRow], int]) -> claims.Equivalence:
    return claims.smallest_within_margin([(what(r), r.values) for r in group], margin=POINT)


def _equivalence_text(eq: claims.Equivalence, unit: str, rows: dict) -> str:
    best = rows[eq.best]
    if eq.answer == eq.best:
        text = (
            f"{eq.best} {unit} score best ({best.f1.mean:.3f}) and no smaller one is shown "
            "within 1 F1 point of it"
        )
    else:
        text = (
            f"{eq.answer} {unit} is the smallest within 1 F1 point of the best "
            f"({eq.best}: {best.f1.mean:.3f})"
        )
    stop = eq.stopped_at
    if stop is not None and eq.limited_by_data:
        text += f"; the seeds cannot tell whether {stop.label} is too"
    return text


def widths(s: StudyData) -> str:
    rows = config_rows(s.complete)
    if not rows:
        return "No finished trials yet."
    groups = series(rows, lambda r: f"{r.n_layers}|{r.pattern}")
    parts = []
    for key, group in sorted(groups.items()):
        layers, pattern = key.split("|")
        group = sorted(group, key=lambda r: r.first_width)
        if len(group) < 2:
            continue
        eq = _within(group, lambda r: r.first_width)
        by = {r.first_width: r for r in group}
        where = f"{layers} hidden layer{'s' if layers != '1' else ''}"
        if layers != "1":
            where += f" ({pattern})"
        parts.append(f"with {where}, " + _equivalence_text(eq, "units", by))
    if not parts:
        return "Too few widths have finished runs to say how wide is enough."
    return (
        "How wide is enough: "
        + "; ".join(parts)
        + " (two one-sided t-tests at 5%, walking down from the best)."
    )


def depth(s: StudyData) -> str:
    rows = config_rows(s.complete)
    if len(rows) < 2:
        return "Too few depths have finished runs to say how deep is enough."
    by_depth = {r.n_layers: r for r in rows}
    ordered = [by_depth[d] for d in sorted(by_depth)]
    eq = _within(ordered, lambda r: r.n_layers)
    if eq.answer == eq.best:
        text = (
            f"How deep is enough: {eq.best} hidden layers score best "
            f"({by_depth[eq.best].f1.mean:.3f}) and no shallower network is shown within "
            "1 F1 point of them"
        )
    else:
        text = (
            f"How deep is enough: more layers stop helping after {eq.answer}: "
            f"{eq.answer} hidden layer{'s' if eq.answer != 1 else ''} "
            f"({by_depth[eq.answer].f1.mean:.3f}) are within 1 F1 point of the best, "
            f"{eq.best} ({by_depth[eq.best].f1.mean:.3f})"
        )
    stop = eq.stopped_at
    if stop is not None and eq.limited_by_data:
        text += f"; the seeds cannot tell whether {stop.label} is enough too"
    return text + " (two one-sided t-tests at 5%, walking down from the best)."


def full(s: StudyData) -> str:
    best = best_of(s.complete)
    if best is None:
        return "No finished trials yet."
    hidden = "-".join(map(str, best.user_attrs.get("hidden", []))) or "no hidden layer"
    optimizer = best.params.get("optimizer", s.spec.get("fixed", {}).get("optimizer", "?"))
    text = (
        f"The best configuration is trial {best.number} ({optimizer}, hidden {hidden}), "
        f"validation macro-F1 {best.value:.3f}"
    )
    cm = best.user_attrs.get("test_confusion")
    if cm:
        held = held_out_figures(cm)
        text += (
            f", test accuracy {held.accuracy:.3f} (95% CI {held.accuracy_low:.3f}-"
            f"{held.accuracy_high:.3f}) and macro-F1 {held.macro_f1:.3f} (95% CI "
            f"{held.f1_low:.3f}-{held.f1_high:.3f}) on {held.n} test images"
        )
    near = sum(1 for t in s.complete if t.value >= best.value - POINT)
    return (
        text + f"; {near} of {len(s.complete)} finished trials came within 1 F1 point of it "
        "(one run each: a single seed, so the ranking among them is not tested)."
    )


def answer(s: StudyData, studies: Sequence[StudyData] = ()) -> str:
    """The sentence a study's page opens with; ``studies``: the others in the same report."""
    if not s.complete and s.kind != TUNED:
        return "No finished trials yet."
    if s.kind == "optimizers" or (
        s.kind == "custom" and set(s.spec.get("space", {})) == {"optimizer"}
    ):
        return optimizers(s)
    if s.kind == TUNED:
        fp = s.identity.get("data_fingerprint")
        plain = [o for o in studies if o.kind == "optimizers"]
        same = [o for o in plain if o.identity.get("data_fingerprint") == fp]
        return tuned(s, (same or plain or [None])[0])
    if s.kind == "widths":
        return widths(s)
    if s.kind == "depth":
        return depth(s)
    return full(s)
