"""The tuned optimizer protocol's section: defaults beside tuned, tests, budget curves."""

from __future__ import annotations

import math
from collections.abc import Sequence

from fishopt.report import plots
from fishopt.report.cells import ci, params_text, slug
from fishopt.report.doc import Doc, fmt, fmt_p
from fishopt.report.load import StudyData
from fishopt.report.tuned import analyse_tuned


def defaults_for(tuned: StudyData, studies: Sequence[StudyData]) -> StudyData | None:
    """The optimizers-at-defaults study to set beside a tuned one: same data if there is one."""
    plain = [s for s in studies if s.kind == "optimizers"]
    fp = tuned.identity.get("data_fingerprint")
    same = [s for s in plain if s.identity.get("data_fingerprint") == fp]
    return (same or plain or [None])[0]


def tuned_section(doc: Doc, s: StudyData, d: StudyData | None) -> None:
    """Defaults beside tuned: the opening paragraph, the table, the tests and the figures."""
    a = analyse_tuned(s.trials, s.spec, d.complete if d else None, precision=s.precision)
    doc.heading(f"Optimizers tuned ({s.name})", 2, f"tuned-{slug(s.name)}")
    if a.paired:
        doc.para(
            f"Defaults are this study's own defaults runs: torch's defaults re-run with the "
            f"same {a.confirm_seeds} seeds as each optimizer's confirm runs, so the gain is a "
            "paired difference, seed by seed."
        )
    elif d is None:
        doc.para(
            "No optimizers study at defaults is in this report: give its name too "
            "(fishopt report optimizers " + s.name + ") to see what tuning bought."
        )
    elif d.identity.get("data_fingerprint") != s.identity.get("data_fingerprint"):
        doc.para(
            f"Warning: {d.name} and {s.name} ran on different data; gains are not comparable.",
            cls="nosig",
        )
    precisions = f"{s.name}: {s.precision}" + (
        f"; {d.name}: {d.precision}" if d is not None and not a.paired else ""
    )
    doc.para(f"Precision every trial trained in: {precisions}.")
    if a.missing:
        doc.heading("Not finished yet", 3)
        doc.bullets([(m, "nosig") for m in a.missing])
    scored = (
        "Search trials are scored on one half of the validation split (the selection half); "
        "confirm and defaults runs pick their epoch there too and are scored on the other half "
        "(the reporting half), which no choice saw. "
        if a.holds_out
        else "Search, confirm and defaults runs are all scored on the same validation split. "
    )
    doc.para(
        scored + "Tuned F1 is the mean over the confirm runs (the best search setting re-run "
        "with fresh seeds, the same seeds for every optimizer), so it is not inflated by "
        "picking the luckiest search trial. Intervals of the means are 95% Student t "
        "intervals over seeds (shown from 3 seeds on); gain = tuned minus defaults, "
        + (
            "the mean of the per-seed differences with a 95% paired t interval over them; "
            if a.paired
            else "the difference of the two means; "
        )
        + "rank 1 = best mean. p = the family-wise adjusted p-value of the tuned winner "
        "against each other optimizer (one all-pairs rank test over the confirm runs)."
    )
    cmp = {c.other: c for c in a.comparisons}
    doc.table(
        [
            "optimizer",
            "defaults F1",
            "95% CI",
            "tuned F1",
            "95% CI",
            "gain",
            "gain 95% CI",
            "rank at defaults",
            "rank tuned",
            "search trials",
            "confirm runs",
            "p vs tuned best (family-wise)",
        ],
        [
            [
                r.optimizer,
                r.defaults.mean if r.defaults else math.nan,
                ci(r.defaults) if r.defaults else "-",
                r.tuned.mean,
                ci(r.tuned),
                fmt(r.gain) if math.isnan(r.gain) else f"{r.gain:+.3f}",
                ci(r.gain_ci) if r.gain_ci else "-",
                r.rank_default or "-",
                r.rank_tuned or "-",
                f"{r.search_done} / {a.trials_per_optimizer}",
                f"{len(r.confirm)} / {a.confirm_seeds}",
                fmt_p(cmp[r.optimizer].p) if r.optimizer in cmp else "-",
            ]
            for r in a.rows
        ],
        cls="tuned",
    )
    doc.heading("Best settings found, and what re-running them gave", 3)
    doc.para(
        "Best search F1 is the best of an optimizer's search trials, the score that chose its "
        "setting; the confirm mean is what the same setting scored when re-run"
        + (" on the reporting half" if a.holds_out else "")
        + ". The gap between them is the selection's optimism: how much picking the best of "
        f"{a.trials_per_optimizer} noisy scores flattered it."
    )
    doc.table(
        ["optimizer", "search trial", "best search F1", "confirm mean", "gap", "parameters"],
        [
            [
                r.optimizer,
                r.best_trial if r.best_trial is not None else "-",
                r.best_search_value,
                r.confirm_mean,
                fmt(r.optimism) if math.isnan(r.optimism) else f"{r.optimism:+.3f}",
                ("torch's defaults: " if r.best_at_defaults else "")
                + ("defaults stand over: " if r.defaults_kept else "")
                + (params_text(r.best_params) or "-"),
            ]
            for r in a.rows
        ],
        cls="settings",
    )
    edges = [(f"{r.optimizer}: {e}; widen the range", "nosig") for r in a.rows for e in r.edges]
    if edges:
        doc.heading("Best values at the edge of their range", 3)
        doc.bullets(edges)
    if a.comparisons:
        doc.heading(f"Is {a.tuned_best} really better once tuned?", 3)
        doc.bullets([(c.verdict, "sig" if c.significant else "nosig") for c in a.comparisons])
    doc.figure(
        f"budget-{slug(s.name)}",
        plots.budget_curves(a.budget) if a.budget else None,
        "Budget curve: expected best search F1 after k search trials, per optimizer "
        "(Dodge et al. 2019; ± sd). "
        + (
            "The search drew its trials independently after a first trial at torch's "
            "defaults, so the curve is that procedure's: the defaults' score at k = 1, then the "
            "expected best of the defaults and k - 1 of the draws (without replacement)."
            if a.budget_exact and a.holds_out
            else "The search drew its trials independently, so the curve is the expected best "
            "of k of them (without replacement)."
            if a.budget_exact
            else f"Indicative only: the search ran {a.sampler}, whose trials depend on earlier "
            "ones, while the curve treats them as independent draws."
        ),
    )


# ------------------------------------------------------------------- widths and depth
