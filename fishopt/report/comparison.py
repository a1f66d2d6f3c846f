"""The page comparing several studies, and the one-sentence finding of each."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from optuna.trial import TrialState

from fishopt.report import plots
from fishopt.report.analyses import (
    best_of,
)
from fishopt.report.answers import answer
from fishopt.report.cells import slug, test_f1_cell
from fishopt.report.doc import Doc, fmt
from fishopt.report.load import StudyData
from fishopt.report.page_tuned import defaults_for, tuned_section
from fishopt.report.tuned import TUNED
from fishopt.stats import SMALL_TEST


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
    small = [
        f"{s.name} ({n} test images)"
        for s in studies
        if len(sizes := s.identity.get("split", {}).get("sizes", [])) == 3
        and (n := int(sizes[2])) < SMALL_TEST
    ]
    if small:
        doc.para(
            f"Warning: small test splits in {', '.join(small)}: one image moves a test figure "
            "by a point or more, so test F1 carries wide intervals and cannot rank these "
            "studies; compare validation F1 over seeds instead.",
            cls="nosig",
        )
    doc.heading("Answers", 2, "answers")
    doc.bullets([(f"{s.name}: {answer(s, studies)}", "answer") for s in studies])
    for tuned in (s for s in studies if s.kind == TUNED):
        tuned_section(doc, tuned, defaults_for(tuned, studies))
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
