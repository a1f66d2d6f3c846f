"""The page comparing several studies, and the one-sentence finding of each."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from optuna.trial import TrialState

from fishopt.report import plots
from fishopt.report.analyses import (
    analyse_optimizers,
    best_of,
    config_rows,
)
from fishopt.report.cells import params_text, slug, test_f1_cell
from fishopt.report.doc import Doc, fmt, fmt_p
from fishopt.report.load import StudyData
from fishopt.report.page_tuned import defaults_for, tuned_section
from fishopt.report.tuned import TUNED, analyse_tuned


def finding(s: StudyData) -> str:
    """One sentence per study for the comparison page and the summary."""
    if not s.complete:
        return "no finished trials yet"
    if s.kind == "optimizers":
        a = analyse_optimizers(s.complete, s.spec)
        sig = [c.other for c in a.comparisons if c.significant]
        same = [c.other for c in a.comparisons if not c.significant and not math.isnan(c.p_holm)]
        untested = [c.other for c in a.comparisons if math.isnan(c.p_holm)]
        text = f"best mean F1: {a.best} ({a.rows[0].f1.mean:.3f})"
        if sig:
            text += f"; significantly better than {', '.join(sig)}"
        if same:
            text += f"; the data cannot separate it from {', '.join(same)}"
        if untested:
            text += f"; too few repeats to test against {', '.join(untested)}"
        return text
    if s.kind == TUNED:
        a = analyse_tuned(s.trials, s.spec)
        best = a.tuned_best
        if best is None:
            return "no finished confirm runs yet"
        text = f"best tuned: {best} ({a.rows[0].tuned.mean:.3f} over {a.rows[0].tuned.n} seeds)"
        if a.comparisons:
            c = a.comparisons[0]
            text += "; " + ("separated from" if c.significant else "cannot be told from")
            text += f" {c.other} (Holm p = {fmt_p(c.p_holm)})"
        return text + (f"; {len(a.missing)} thing(s) unfinished" if a.missing else "")
    if s.kind in ("widths", "depth"):
        rows = config_rows(s.complete)
        top = max(rows, key=lambda r: r.f1.mean)
        return f"best mean F1: hidden {top.label} ({top.f1.mean:.3f}, {top.n_params:,} params)"
    best = best_of(s.complete)
    return f"best trial #{best.number}: F1 {best.value:.3f} ({params_text(best.params)})"


def comparison_page(studies: Sequence[StudyData]) -> Doc:
    doc = Doc("fishopt report", "index")
    doc.heading("fishopt report", 1)
    doc.para(
        f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}. Each has its own page with "
        "its tables and plots; this page compares them."
    )
    doc.raw_html(
        "<nav>" + "".join(f'<a href="{slug(s.name)}.html">{s.name}</a>' for s in studies) + "</nav>"
    )
    rows = []
    for s in studies:
        best = best_of(s.complete)
        secs = [t.user_attrs.get("epoch_seconds") for t in s.complete]
        secs = [x for x in secs if x is not None]
        rows.append(
            [
                s.name,
                s.kind,
                s.count(TrialState.COMPLETE),
                s.count(TrialState.PRUNED),
                s.count(TrialState.FAIL),
                best.value if best else math.nan,
                test_f1_cell(best),
                fmt(statistics.fmean(secs) * 1000, 1) if secs else "-",
                s.precision,
                s.identity.get("data_fingerprint", "-"),
            ]
        )
    doc.heading("Studies side by side", 2, "comparison")
    doc.table(
        [
            "study",
            "kind",
            "complete",
            "pruned",
            "failed",
            "best valid F1",
            "test F1 (best, 95% CI)",
            "ms / epoch",
            "precision",
            "data",
        ],
        rows,
        cls="comparison",
    )
    fingerprints = {s.identity.get("data_fingerprint") for s in studies}
    if len(fingerprints) > 1:
        doc.para(
            "Warning: these studies were run on different data (see the data column); "
            "their F1 values are not directly comparable.",
            cls="nosig",
        )
    if len({s.precision for s in studies}) > 1:
        doc.para(
            "Warning: these studies trained in different precisions (see the precision "
            "column); bf16 and fp32 runs of one setting can differ by more than seeds do.",
            cls="nosig",
        )
    for tuned in (s for s in studies if s.kind == TUNED):
        tuned_section(doc, tuned, defaults_for(tuned, studies))
    doc.heading("Findings", 2)
    doc.bullets([(f"{s.name}: {finding(s)}", None) for s in studies])
    for s in studies:
        if s.spec.get("question"):
            doc.para(f"{s.name} asks: {s.spec['question']}")
    doc.figure(
        "spread",
        plots.study_spread(
            [s.name for s in studies], [[t.value for t in s.complete] for s in studies]
        ),
        "Validation macro-F1 of every finished trial, per study",
    )
    return doc
