"""RESULTS.md: the figures, their targets, the machine, and the notes on what bounds each miss."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
from pathlib import Path

from bench.common import Figure

NOTES = Path(__file__).parent / "NOTES.md"


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def render(
    figs: list[Figure],
    machine: dict,
    sizes: dict,
    rounds: int,
    quick: bool,
    elapsed: float,
    note: str,
    argv: list[str],
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python -m bench" + ("".join(f" {a}" for a in argv))
    out = [
        "# fishopt benchmark results",
        "",
        f"Written by `{cmd}` on {now} in {elapsed:.0f} s"
        + (" (**--quick**: small sizes, a smoke run, not the figures of record)" if quick else "")
        + f". Every figure is A / B measured in this run, {rounds} interleaved rounds unless a "
        "figure says otherwise (A-B, then B-A, ...); the ratio shown is the median with its "
        "min-max. Benchmarks print figures; no test passes or fails on time.",
        "",
    ]
    if note:
        out += [f"**Machine state:** {note}", ""]
    out += ["## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in machine.items()]
    out += ["", "Data (synthetic fish, Kaggle layout): "]
    out += [f"- {k}: {n} per class x 9 classes, {w}x{h} PNG" for k, (n, (w, h)) in sizes.items()]
    out += [
        "",
        "## Figures",
        "",
        "| # | figure | A (median) | B (median) | A/B median | min - max | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figs:
        if not f.ratios:
            continue
        out.append(
            f"| {f.number} | {f.title} | {_fmt(statistics.median(f.a))} | "
            f"{_fmt(statistics.median(f.b))} | **{f.median:.3g}** | "
            f"{min(f.ratios):.3g} - {max(f.ratios):.3g} | {f.target_text} | "
            f"{'yes' if f.met else '**no**'} |"
        )
    out += ["", "## Details", ""]
    for f in figs:
        out += [f"### Figure {f.number}", "", f"- A: {f.a_label}", f"- B: {f.b_label}"]
        out.append(f"- unit of A and B: {f.unit}")
        out.append(
            "- rounds (A, B, A/B): "
            + "; ".join(
                f"{_fmt(a)}, {_fmt(b)}, {r:.3g}" for a, b, r in zip(f.a, f.b, f.ratios, strict=True)
            )
        )
        for k, v in f.extra.items():
            if isinstance(v, list):
                out.append(f"- {k}:")
                out += [f"  - {item}" for item in v]
            else:
                out.append(f"- {k}: {v}")
        if f.note:
            out.append(f"- note: {f.note}")
        out.append("")
    if NOTES.is_file():
        out += [NOTES.read_text().strip(), ""]
    return "\n".join(out)


def write(
    path: Path,
    figs: list[Figure],
    machine: dict,
    sizes: dict,
    rounds: int,
    quick: bool,
    elapsed: float,
    note: str,
    argv: list[str],
) -> None:
    """Atomic: a crash mid-write leaves the previous RESULTS.md in place."""
    text = render(figs, machine, sizes, rounds, quick, elapsed, note, argv)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
