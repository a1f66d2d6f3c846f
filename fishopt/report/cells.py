"""Table cells and names shared by the report's pages: intervals, test figures, params."""

from __future__ import annotations

import math
import re

from fishopt.report.doc import fmt
from fishopt.search import ranges
from fishopt.stats import HeldOutFigures, held_out_figures


def slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "study"
    return "index-study" if s == "index" else s  # index.html is the comparison page


def ci(iv) -> str:
    if iv.n < 2 or math.isnan(iv.low):
        return "-"
    return f"{iv.low:.3f} – {iv.high:.3f}"


def held_out(t) -> HeldOutFigures | None:
    """Test figures with intervals, from the trial's test confusion matrix (None without one:
    trials from before fishopt stored it carry only the bare numbers)."""
    cm = t.user_attrs.get("test_confusion")
    if not cm:
        return None
    return held_out_figures(cm)


def test_f1_cell(t) -> str:
    """A table cell: test macro-F1 of one trial with its 95% interval."""
    if t is None:
        return "-"
    fig = held_out(t)
    if fig is None:
        return fmt(t.user_attrs.get("test_f1", math.nan))
    return f"{fig.macro_f1:.3f} ({fig.f1_low:.3f}–{fig.f1_high:.3f})"


def params_text(params: dict) -> str:
    return ", ".join(
        f"{k}={ranges.show(v)}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(params.items())
    )


def acc_of(h: HeldOutFigures) -> tuple[float, float, float]:
    return h.accuracy, h.accuracy_low, h.accuracy_high


def f1_of(h: HeldOutFigures) -> tuple[float, float, float]:
    return h.macro_f1, h.f1_low, h.f1_high
